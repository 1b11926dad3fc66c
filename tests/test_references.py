"""Reference configurations: trained once beside the search, stored apart from it, shown flagged."""
from __future__ import annotations

import json

import optuna

from autopeft.cli import main
from autopeft.references import REFERENCES


def test_references_trained_once_and_listed(write_study, tmp_path, capsys):
    study = write_study(references="true")
    assert main(["run", str(study), "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "references (same fidelity" in out and "full fine-tuning" in out
    storage = f"sqlite:///{tmp_path}/tiny.db"
    refs = optuna.load_study(study_name="tiny.references", storage=storage).trials
    assert sorted(t.user_attrs["reference"] for t in refs) == sorted(r.name for r in REFERENCES)
    full = next(t for t in refs if t.user_attrs["reference"] == "full fine-tuning")
    assert full.values[1] == full.user_attrs["measured"]["params"] > 100_000  # every body weight
    # the search study holds only searched trials; a resume does not retrain references
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == 1
    assert main(["run", str(study), "--trials", "2"]) == 0
    assert len(optuna.load_study(study_name="tiny.references", storage=storage).trials) == len(REFERENCES)
    capsys.readouterr()
    assert main(["pareto", str(study), "--format", "json"]) == 0
    assert all("reference" not in p for p in json.loads(capsys.readouterr().out))
    assert main(["pareto", str(study), "--format", "json", "--with-references"]) == 0
    assert sum("reference" in p for p in json.loads(capsys.readouterr().out)) == len(REFERENCES)


def _reference_trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="tiny.references", storage=storage).trials


def test_workers_starting_together_train_each_reference_once(write_study, tmp_path):
    """Two workers on an empty reference study: every reference is trained by exactly one of them."""
    import threading

    from autopeft.config import load_study_config
    from autopeft.study import Study

    path = write_study(references="true")
    studies = [Study(load_study_config(path)) for _ in range(2)]
    for s in studies:
        s.trainer  # load the model before the race, so both claim at the same moment
    errors: list[BaseException] = []

    def work(s: Study) -> None:
        try:
            s.run_references(settle=0.3)
        except BaseException as exc:  # surfaced below: a thread's exception would vanish
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in studies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    trials = _reference_trials(f"sqlite:///{tmp_path}/tiny.db")
    done = [t.user_attrs["reference"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(done) == sorted(r.name for r in REFERENCES)  # each exactly once
    withdrawn = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert all("runs this reference" in t.user_attrs["withdrawn"] for t in withdrawn)


def test_reference_of_a_lost_worker_is_trained_again(write_study, tmp_path):
    """A claim left RUNNING by a killed worker is failed once stale and the reference trained by the next run."""
    from autopeft.config import load_study_config
    from autopeft.study import Study

    path = write_study(references="true", recovery="{heartbeat: 1, grace: 2}")
    storage = f"sqlite:///{tmp_path}/tiny.db"
    cfg = load_study_config(path)
    study = optuna.create_study(study_name="tiny.references", storage=storage,
                                directions=["maximize", "minimize", "minimize"])
    dead = study.ask()
    dead.set_user_attr("reference", REFERENCES[0].name)  # claimed, never beaten: its worker died at once
    Study(cfg).run_references()  # the first look gives it a heartbeat; it is not stale yet
    import time

    time.sleep(2.5)
    Study(cfg).run_references()
    trials = _reference_trials(storage)
    first = [t for t in trials if t.user_attrs.get("reference") == REFERENCES[0].name]
    assert [t.state.name for t in first] == ["FAIL", "COMPLETE"]
    assert first[0].user_attrs["fail_reason"].startswith("worker lost")
