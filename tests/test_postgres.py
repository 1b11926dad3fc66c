"""Workers on a real PostgreSQL server (a throwaway cluster, see pgserver.py): exact counts, distinct configs,
a killed worker's trial retried by the others, and the password never shown."""
from __future__ import annotations

import logging
import signal
from collections import Counter
from urllib.parse import unquote

import optuna
import pytest
from clirunner import Command, run_cli, stored_trials, training_trial, wait_until
from test_workers import FAST_RECOVERY, params_key, slow_study

from autopeft.workers import counted_trials

pytestmark = pytest.mark.postgres
logger = logging.getLogger(__name__)


def secrets_of(url: str) -> list[str]:
    password = url.split("://", 1)[1].split("@")[0].split(":", 1)[1]
    return [password, unquote(password)]


def test_four_workers_ten_trials_each_give_exactly_forty_distinct_trials(write_study, postgres_db):
    study = write_study(optimizer="{name: random}")
    env = {"AUTOPEFT_STORAGE": postgres_db}
    workers = [Command(["worker", str(study), "--trials", "40"], env=env) for _ in range(4)]
    results = [w.wait(600) for w in workers]
    for r in results:
        assert r.code == 0, r.err
        assert "holds 40/40 trials" in r.out
    trials = stored_trials(postgres_db)
    counted = counted_trials(trials)
    assert len(counted) == 40 and all(t.state.name in ("COMPLETE", "FAIL") for t in counted)
    assert sorted(t.number for t in trials) == list(range(len(trials))), "trial numbers are unique and dense"
    assert len({params_key(t) for t in counted}) == 40, "no configuration was proposed twice"
    per_worker = Counter(t.user_attrs["worker"] for t in counted)
    assert len(per_worker) >= 2, per_worker
    logger.info("4 workers: %s trials each; %d trials stored in all (%d given up as surplus or duplicate)",
                sorted(per_worker.values()), len(trials), len(trials) - len(counted))
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    for r in results:
        assert not any(s in r.out + r.err for s in secrets_of(postgres_db))


def test_mobo_workers_never_propose_a_pending_configuration_twice(write_study, postgres_db, tmp_path):
    """3 mobo workers, 12 trials from 72 discrete points: random draws would repeat one with p~0.6; mobo treats the
    RUNNING trials of the other workers as pending, so none repeats. (Optuna's GPSampler does not promise this: in
    a trial run 3 GP workers proposed 7 distinct points in 9, the repeats at the learning-rate bound.)"""
    (tmp_path / "discrete.yaml").write_text(
        "adapters:\n  serial: {size: [0, 4, 8]}\n  prefix: {length: [0, 2]}\n"
        "  lora: {rank: [0, 2, 4], targets: [[query, value]]}\nlayers: per_layer\n")
    study = write_study(optimizer="{name: mobo, initial_trials: 6}")
    study.write_text(study.read_text().replace("search_space: space.yaml", "search_space: discrete.yaml"))
    workers = [Command(["worker", str(study), "--trials", "12", "--storage", postgres_db]) for _ in range(3)]
    for w in workers:
        r = w.wait(600)
        assert r.code == 0, r.err
    trials = stored_trials(postgres_db)
    counted = counted_trials(trials)
    assert len(counted) == 12 and len({params_key(t) for t in counted}) == 12
    logger.info("mobo workers: %d proposals given up as duplicates of a concurrent one",
                sum(1 for t in trials if t.user_attrs.get("duplicate")))
    assert len({t.user_attrs["worker"] for t in counted}) >= 2


def test_a_killed_worker_trial_is_failed_and_retried_by_the_others(write_study, postgres_db):
    study = slow_study(write_study, recovery=FAST_RECOVERY)
    env = {"AUTOPEFT_STORAGE": postgres_db}
    victim_cmd = Command(["worker", str(study), "--trials", "6"], env=env)
    victim = wait_until(lambda: training_trial(postgres_db), what="a trial in training")
    others = [Command(["worker", str(study), "--trials", "6"], env=env) for _ in range(2)]
    victim_cmd.send(signal.SIGKILL)
    assert victim_cmd.wait().code == -signal.SIGKILL
    for w in others:
        r = w.wait(600)
        assert r.code == 0, r.err
    trials = {t.number: t for t in stored_trials(postgres_db)}
    dead = trials[victim.number]
    assert dead.state.name == "FAIL" and "no heartbeat" in dead.user_attrs["fail_reason"]
    retry = [t for t in trials.values() if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == dead.params
    assert len(counted_trials(list(trials.values()))) == 6


def test_the_password_is_never_shown_logged_exported_or_stored(write_study, postgres_db, tmp_path):
    study = write_study()
    env = {"AUTOPEFT_STORAGE": postgres_db}
    outputs = []
    for args in (["validate", str(study)], ["run", str(study), "--trials", "2"], ["status", str(study)],
                 ["pareto", str(study), "--format", "json"], ["-v", "pareto", str(study)]):
        r = run_cli(*args, env=env)
        assert r.code == 0, r.err
        outputs.append(r.out + r.err)
    assert "autopeft:***@127.0.0.1" in outputs[0], "validate shows the masked URL"
    number = stored_trials(postgres_db)[0].number
    r = run_cli("export", str(study), "--trial", str(number), "-o", str(tmp_path / "out"), env=env)
    outputs.append(r.out + r.err)
    r = run_cli("report", str(study), "-o", str(tmp_path / "out" / "report.html"), env=env)
    assert r.code == 0, r.err
    outputs.append(r.out + r.err)
    wrong = postgres_db.replace(postgres_db.split(":")[2].split("@")[0], "not-the-password")
    r = run_cli("status", str(study), "--storage", wrong)
    assert r.code == 2 and len(r.err_lines) == 1 and "***" in r.err, r.err
    outputs.append(r.out + r.err)

    stored = optuna.load_study(study_name="tiny", storage=postgres_db)
    texts = outputs + [str(stored.user_attrs), str(stored._storage.get_study_system_attrs(stored._study_id))]
    texts += [str(t.user_attrs) + str(t.system_attrs) for t in stored.trials]
    texts += [p.read_text() for p in (tmp_path / "out").rglob("*") if p.is_file()]
    for secret in secrets_of(postgres_db):
        assert not [t for t in texts if secret in t], f"'{secret}' leaked"
