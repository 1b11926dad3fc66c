"""MO-ASHA promotion and early-stopped trials."""
from __future__ import annotations

import numpy as np
import optuna
import pytest

from autopeft.cli import main
from autopeft.rungs import nondominated_ranks, promote

MAX_MIN = ["maximize", "minimize"]


def test_nondominated_ranks_peel_fronts():
    values = np.array([[0.9, 10], [0.8, 5], [0.7, 20], [0.6, 30], [0.9, 10]])
    assert nondominated_ranks(values, MAX_MIN).tolist() == [0, 0, 1, 2, 0]


@pytest.mark.parametrize("candidate,peers,expected", [
    ([0.5, 10], [], True),                                  # first at the rung always continues
    ([0.5, 10], [[0.9, 5]], False),                         # ceil(2/3) = 1 slot, taken by the dominating peer
    ([0.5, 10], [[0.9, 5], [0.8, 6]], False),               # dominated by both: not in the top third
    ([0.95, 50], [[0.9, 5], [0.8, 6], [0.7, 7]], True),     # best score: non-dominated and first by score
    ([0.6, 1], [[0.9, 5], [0.8, 6], [0.7, 7], [0.85, 8], [0.75, 9]], True),   # smallest: on the first front
    ([0.6, 5.5], [[0.9, 5], [0.8, 6], [0.7, 7], [0.85, 8], [0.75, 9]], False),  # second front: not in top 2 of 6
])
def test_promote(candidate, peers, expected):
    assert promote(candidate, peers, MAX_MIN, eta=3) is expected


def test_promote_score_not_first():
    assert promote([10, 0.95], [[5, 0.9], [6, 0.8]], ["minimize", "maximize"], eta=3, score_index=1)


def test_dominated_trials_stop_at_a_rung(write_study, tmp_path):
    study = write_study()
    text = study.read_text().replace("proxy: {train_examples: 64,", "proxy: {rungs: [16, 32], reduction_factor: 2, train_examples: 64,")
    study.write_text(text)
    assert main(["run", str(study), "--trials", "6"]) == 0
    trials = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db").trials
    assert len(trials) == 6
    assert all("16" in t.user_attrs.get("rungs", {}) for t in trials if t.state.name != "FAIL")
    stopped = [t for t in trials if t.state.name == "PRUNED"]
    assert stopped, "with eta=2, some of 6 trials must stop early"
    for t in stopped:
        assert t.user_attrs["rung"] in (16, 32) and "stopped at rung" in t.user_attrs["fail_reason"]
        assert t.user_attrs["measured"]["stopped_at"] == t.user_attrs["rung"]


def test_refine_pareto_points_with_seeds(write_study, capsys):
    study = write_study()
    study.write_text(study.read_text() + "train: {train_examples: 64, epochs: 2}\nrefine: {seeds: 2}\n")
    assert main(["run", str(study), "--trials", "3"]) == 0
    capsys.readouterr()
    assert main(["refine", str(study)]) == 0
    out = capsys.readouterr().out
    assert "mean±sd at full: 64 examples x 2 epoch(s), 2 seeds" in out
    from autopeft import Study

    front = Study.from_yaml(study).pareto_front()
    for r in front:
        refined = r.attrs["refined"]
        assert len(refined["scores"]) == 2 and refined["mean"] == pytest.approx(np.mean(refined["scores"]))
