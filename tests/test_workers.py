"""Workers, crashes and interrupts on SQLite: exact trial counts, heartbeats and retries, Ctrl-C, failed trials."""
from __future__ import annotations

import shutil
import signal

import optuna
import pytest
import torch
from clirunner import Command, run_cli, stored_trials, training_trial, wait_until

from autopeft.cli import main
from autopeft.storage import mask_url, redact
from autopeft.workers import counted_trials, is_surplus, progress

SLOW = {"proxy": "{train_examples: 64, epochs: 30, max_length: 32, batch_size: 16, threads: 1}"}
FAST_RECOVERY = "{heartbeat: 1, grace: 3, retries: 1}"


def slow_study(write_study, **overrides):
    """A study whose trials take ~1-2 s (so a signal lands mid-trial) and whose dead trials go stale in 3 s."""
    text = write_study().read_text().replace("proxy: {train_examples: 64, epochs: 1,", "proxy: {train_examples: 64, "
                                                                                        "epochs: 30,")
    text += "".join(f"{k}: {v}\n" for k, v in {"recovery": FAST_RECOVERY, **overrides}.items())
    return write_study(text, name="slow.yaml")


def storage_of(path) -> str:
    return next(line.split(": ", 1)[1] for line in path.read_text().splitlines() if line.startswith("storage:"))


def params_key(t) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in t.params.items()))


def test_local_workers_stop_on_ctrl_c_and_resume_to_exactly_n(write_study):
    study = slow_study(write_study)
    url = storage_of(study)
    cmd = Command(["run", str(study), "--trials", "8", "--workers", "2"])
    wait_until(lambda: training_trial(url), what="a trial in training")
    cmd.send(signal.SIGINT)  # to the parent only, as from `kill -INT`; a terminal would signal all of them
    r = cmd.wait(120)
    assert r.code == 130, r.err
    assert "again to resume" in r.err and "Traceback" not in r.err
    assert not [t for t in stored_trials(url) if t.state.name == "RUNNING"], "every worker marked its trial"

    r = run_cli("run", str(study), "--trials", "8", "--workers", "2")
    assert r.code == 0, r.err
    assert "Pareto front" in r.out
    trials = stored_trials(url)
    counted = counted_trials(trials)
    assert len(counted) == 8 and all(t.state.name in ("COMPLETE", "FAIL") for t in counted)
    assert len({t.user_attrs["worker"] for t in counted}) >= 2, "both workers should have run trials"
    assert len({params_key(t) for t in counted}) == 8
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]


def test_sigterm_to_the_process_group_of_local_workers_marks_every_trial_and_exits_143(write_study):
    """A scheduler that stops a job sends SIGTERM to all its processes: each worker marks its own trial."""
    study = slow_study(write_study)
    url = storage_of(study)
    cmd = Command(["run", str(study), "--trials", "8", "--workers", "2"])
    wait_until(lambda: training_trial(url), what="a trial in training")
    cmd.kill_group(signal.SIGTERM)
    r = cmd.wait(120)
    assert r.code == 143, r.err
    assert "again to resume" in r.err_lines[-1] and "Traceback" not in r.err
    trials = stored_trials(url)
    assert not [t for t in trials if t.state.name == "RUNNING"], "every worker marked its trial"
    assert [t for t in trials if t.user_attrs.get("interrupted")]


def test_killed_run_leaves_a_failed_trial_that_is_retried_on_resume(write_study):
    study = slow_study(write_study)
    url = storage_of(study)
    cmd = Command(["run", str(study), "--trials", "3"])
    victim = wait_until(lambda: training_trial(url), what="a trial in training")
    cmd.send(signal.SIGKILL)
    assert cmd.wait().code == -signal.SIGKILL

    r = run_cli("run", str(study), "--trials", "3")
    assert r.code == 0, r.err
    trials = {t.number: t for t in stored_trials(url)}
    dead = trials[victim.number]
    assert dead.state.name == "FAIL" and "no heartbeat" in dead.user_attrs["fail_reason"]
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == dead.params, "the retry runs the same configuration"
    assert progress_of(url).finished == 3

    r = run_cli("status", str(study))
    assert "retried 1" in r.out and "failed x1: worker lost: no heartbeat" in r.out, r.out


def test_stale_trial_without_retries_counts_as_failed(write_study):
    study = slow_study(write_study, recovery="{heartbeat: 1, grace: 3, retries: 0}")
    url = storage_of(study)
    cmd = Command(["run", str(study), "--trials", "2"])
    victim = wait_until(lambda: training_trial(url), what="a trial in training")
    cmd.send(signal.SIGKILL)
    cmd.wait()
    assert run_cli("run", str(study), "--trials", "2").code == 0
    trials = stored_trials(url)
    assert not [t for t in trials if t.system_attrs.get("failed_trial") is not None]
    assert trials[victim.number].state.name == "FAIL"
    assert len(counted_trials(trials)) == 2


def test_trial_whose_worker_died_before_its_first_heartbeat_is_retried(write_study):
    """A worker killed between creating a trial and its first beat leaves a trial optuna never calls stale."""
    study = write_study(recovery=FAST_RECOVERY)
    url = storage_of(study)
    assert run_cli("run", str(study), "--trials", "1").code == 0
    orphan = optuna.load_study(study_name="tiny", storage=url).ask()  # RUNNING, no heartbeat ever
    r = run_cli("run", str(study), "--trials", "3", timeout=120)
    assert r.code == 0, r.err
    trials = stored_trials(url)
    assert trials[orphan.number].state.name == "FAIL"
    assert "no heartbeat" in trials[orphan.number].user_attrs["fail_reason"]
    assert len(counted_trials(trials)) == 3 and not [t for t in trials if t.state.name == "RUNNING"]


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_marks_the_trial_prints_the_resume_hint_and_exits_128_plus_signal(sig, code, write_study):
    """Ctrl-C (exit 130), or a scheduler's SIGTERM (exit 143): the running trial is marked, runs again on resume."""
    study = slow_study(write_study)
    url = storage_of(study)
    cmd = Command(["run", str(study), "--trials", "3"])
    victim = wait_until(lambda: training_trial(url), what="a trial in training")
    cmd.send(sig)
    r = cmd.wait()
    assert r.code == code, r.err
    assert f"run 'autopeft run {study}' again to resume" in r.err_lines[-1] and "Traceback" not in r.err
    trials = {t.number: t for t in stored_trials(url)}
    assert trials[victim.number].state.name == "FAIL"
    assert trials[victim.number].user_attrs["fail_reason"].startswith("interrupted")
    assert not [t for t in trials.values() if t.state.name == "RUNNING"]

    assert run_cli("run", str(study), "--trials", "3").code == 0
    trials = stored_trials(url)
    rerun = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(rerun) == 1 and rerun[0].state.name == "COMPLETE" and rerun[0].params == victim.params
    assert len(counted_trials(trials)) == 3


@pytest.mark.parametrize("how,workers", [("folder removed", 1), ("file replaced", 1), ("folder removed", 2)],
                         ids=["folder removed", "file replaced", "folder removed, 2 workers"])
def test_storage_lost_mid_run_ends_in_one_line_and_exit_2(how, workers, write_study, tmp_path):
    """The SQLite file vanishes (or turns into something else) while the study runs: one line naming the storage
    and what to do, exit code 2, no traceback from the main thread or the heartbeat thread."""
    folder = tmp_path / "db"
    study = slow_study(write_study, storage=f"sqlite:///{folder}/tiny.db")
    text = study.read_text().replace(f"storage: sqlite:///{tmp_path}/tiny.db\n", "")
    study.write_text(text)
    url = storage_of(study)
    assert url == f"sqlite:///{folder}/tiny.db"
    cmd = Command(["run", str(study), "--trials", "50", "--workers", str(workers)])
    wait_until(lambda: training_trial(url), what="a trial in training")
    shutil.rmtree(folder)
    if how == "file replaced":
        folder.mkdir()
        (folder / "tiny.db").write_bytes(b"not a database" * 1000)
    r = cmd.wait(300)
    assert r.code == 2, r.err
    assert "Traceback" not in r.err and "Exception in thread" not in r.err, r.err
    errors = [line for line in r.err_lines if line.startswith("error:")]
    assert errors == r.err_lines[-1:], r.err
    assert f"storage '{url}'" in errors[0] and "rerun" in errors[0], errors[0]


def progress_of(url: str):
    return progress(optuna.load_study(study_name="tiny", storage=url))


def test_a_worker_that_starts_after_the_storage_vanished_reports_it_lost_and_recreates_nothing(write_study, tmp_path):
    """A local worker starts (forkserver, imports) after the parent made the storage; if the SQLite folder is gone by
    then it must not make a fresh empty database (its trials would land beside the real ones) but say the storage
    was lost, as the workers already running do."""
    from autopeft.errors import StorageError
    from autopeft.study import Study

    folder = tmp_path / "db"
    url = f"sqlite:///{folder}/tiny.db"
    Study.from_yaml(write_study(), url)._create_or_load()
    shutil.rmtree(folder)
    worker = Study(Study.from_yaml(write_study(), url).cfg, url, joined=True)
    with pytest.raises(StorageError) as err:
        worker._create_or_load()
    assert f"lost the storage '{url}'" in str(err.value) and "rerun" in str(err.value)
    assert not folder.exists()


def test_racing_workers_give_up_the_surplus_trial(tmp_path):
    """Two workers see 1 trial missing and both ask: the later one gives its trial up, so the count stays exact."""
    url = f"sqlite:///{tmp_path}/race.db"
    first = optuna.create_study(storage=url, study_name="race")
    second = optuna.load_study(storage=url, study_name="race")
    a, b = first.ask(), second.ask()
    assert not is_surplus(first, a.number, target=1)
    assert is_surplus(second, b.number, target=1)
    assert progress(first).running == 2 and is_surplus(second, b.number, target=2) is False


# ---------------------------------------------------------------------------------------------- failed trials
def _oom(loss, step):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def _bug(loss, step):
    raise ValueError("a bug in one trial")


FAILURES = [
    # (what, the training loss of the broken trial at a step -> what it becomes, words of the recorded reason)
    ("NaN loss", lambda loss, step: loss * float("nan"), "loss is nan at step 1"),
    ("inf loss", lambda loss, step: loss * float("inf"), "loss is inf at step 1"),
    ("divergence", lambda loss, step: loss * 100.0 ** step, "diverged: loss"),
    ("out of memory", _oom, "out of memory"),  # in the memory-measuring step, before training
    ("any exception", _bug, "ValueError: a bug in one trial"),
]


@pytest.mark.parametrize("what,failure,words", FAILURES, ids=[f[0] for f in FAILURES])
def test_a_failing_trial_is_recorded_and_the_study_goes_on(what, failure, words, write_study, monkeypatch, capsys):
    """The second of three trials breaks inside its training run; the other two complete."""
    import autopeft.proxy as proxy

    state = {"trial": 0, "step": 0}
    fit, cross_entropy = proxy.ProxyTrainer.fit, torch.nn.functional.cross_entropy

    def counting_fit(self, *args, **kwargs):
        state["trial"] += 1
        state["step"] = 0
        return fit(self, *args, **kwargs)

    def broken_cross_entropy(*args, **kwargs):
        loss = cross_entropy(*args, **kwargs)
        if state["trial"] != 2:
            return loss
        state["step"] += 1
        return failure(loss, state["step"])

    monkeypatch.setattr(proxy.ProxyTrainer, "fit", counting_fit)
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", broken_cross_entropy)
    study = write_study()
    assert main(["run", str(study), "--trials", "3"]) == 0
    # trials that ran; a proposal with the configuration of an earlier one is closed unrun (e.g. two head-only
    # trials that differ only in a learning rate that has no adapter to act on)
    trials = [t for t in stored_trials(storage_of(study)) if not t.user_attrs.get("duplicate")]
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    reason = trials[1].user_attrs["fail_reason"]
    assert words in reason
    capsys.readouterr()
    assert main(["status", str(study)]) == 0
    out = capsys.readouterr().out
    assert "3 counted" in out and "complete 2" in out and "fail 1" in out and f"failed x1: {reason}" in out


# ---------------------------------------------------------------------------------------------- secrets
MASKS = [
    ("postgresql://bob:secret@db.example:5432/studies", "postgresql://bob:***@db.example:5432/studies"),
    ("postgresql+psycopg://bob:p%40ss@db/s", "postgresql+psycopg://bob:***@db/s"),
    ("postgresql://bob:p@ss@db/s", "postgresql://bob:***@db/s"),  # unescaped '@': still masked
    ("postgresql://db/s?user=bob&password=secret", "postgresql://db/s?user=bob&password=***"),
    ("postgresql://bob@db/s", "postgresql://bob@db/s"),
    ("sqlite:///runs/a:b@c.db", "sqlite:///runs/a:b@c.db"),
]


@pytest.mark.parametrize("url,masked", MASKS)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_redact_removes_the_password_from_any_text():
    url = "postgresql://bob:p%40ss@db/s"
    text = 'connection to db failed: password "p@ss" rejected for postgresql://bob:p%40ss@db/s'
    assert "p@ss" not in redact(text, url) and "p%40ss" not in redact(text, url)


def test_storage_lost_tells_a_lost_database_from_a_bug():
    import sqlalchemy.exc

    from autopeft.storage import lost_storage_error, storage_lost

    def wrapped(cause):  # as optuna raises them from a failed commit
        try:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from cause
        except optuna.exceptions.StorageInternalError as exc:
            return exc

    gone = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    bug = sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
    assert storage_lost(gone) and storage_lost(wrapped(gone))
    assert not storage_lost(bug) and not storage_lost(wrapped(bug)) and not storage_lost(ValueError("x"))
    err = str(lost_storage_error("postgresql://bob:secret@db/s", wrapped(gone)))
    assert "secret" not in err and "postgresql://bob:***@db/s" in err and "server closed the connection" in err
    assert "\n" not in err and "rerun the same command" in err
