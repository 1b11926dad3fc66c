"""Chaos: kill a running study with SIGKILL at random moments, resume each time; nothing finished is ever lost."""
from __future__ import annotations

import logging
import os
import random
import time

import optuna
import pytest
from clirunner import Command, run_cli, stored_trials
from test_workers import storage_of

from autopeft.workers import counted_trials, progress

logger = logging.getLogger(__name__)

KILLS = 10
#: rounds ask for more trials than they can run before their kill, whatever the machine's speed
UNREACHABLE = 10_000


@pytest.mark.chaos
def test_killed_ten_times_at_random_moments_loses_no_finished_trial(write_study):
    seed = int(os.environ.get("AUTOPEFT_CHAOS_SEED", "7"))
    rng = random.Random(seed)
    study = write_study(recovery="{heartbeat: 1, grace: 3, retries: 1}")
    url = storage_of(study)
    finished: dict[int, tuple] = {}  # trial number -> (state, values, params) once finished
    moments = []
    for kill in range(KILLS):
        cmd = Command(["run", str(study), "--trials", str(UNREACHABLE)])
        moment = rng.uniform(0.3, 4.0)  # from start-up (config, model, storage) to mid-trial and between trials
        time.sleep(moment)
        cmd.kill_group()
        assert cmd.wait().code == -9
        moments.append(round(moment, 2))
        now = {t.number: t for t in stored_trials(url)}
        logger.info("kill %d at %.2fs: %s", kill + 1, moment,
                    " ".join(f"{n}:{t.state.name[:4]}" for n, t in now.items()))
        for number, (state, values, params) in finished.items():
            t = now.get(number)
            assert t is not None and (t.state.name, t.values, t.params) == (state, values, params), \
                f"kill {kill + 1} (seed {seed}, moments {moments}): trial {number} changed or vanished"
        finished.update({n: (t.state.name, t.values, t.params) for n, t in now.items() if t.state.is_finished()})
    logger.info("chaos seed %d: killed at %s s; %d finished trials seen", seed, moments, len(finished))

    target = progress(optuna.load_study(study_name="tiny", storage=url)).finished + 3
    r = run_cli("run", str(study), "--trials", str(target), timeout=300)
    assert r.code == 0, r.err
    trials = stored_trials(url)
    counted = counted_trials(trials)
    assert len(counted) == target, f"seed {seed}, moments {moments}"
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in counted)
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    for number, (state, values, _) in finished.items():
        t = trials[number]
        assert (t.state.name, t.values) == (state, values)
    for t in trials:
        if t.state.name == "FAIL":
            assert t.user_attrs.get("fail_reason"), f"trial {t.number} failed without a reason"
    assert run_cli("status", str(study)).code == 0
