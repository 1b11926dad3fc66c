"""MO-ASHA promotion and early-stopped trials."""
from __future__ import annotations

import numpy as np
import optuna
import pytest

from autopeft.cli import main
from autopeft.rungs import promote

MAX_MIN = ["maximize", "minimize"]


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


def test_a_trial_only_noise_below_a_smaller_one_continues_with_a_margin():
    """Near-chance rung scores: head-only (0 params, 0.325) must not stop a small adapter at 0.321 (TREC, session 6)."""
    peers = [[0.325, 0], [0.34, 60_000], [0.33, 55_000]]
    small = [0.321, 40_000]
    assert not promote(small, peers, MAX_MIN, eta=3)  # top 1/eta only: the second front is out
    assert promote(small, peers, MAX_MIN, eta=3, score_margin=0.02)  # nobody no larger is better by > 0.02
    assert not promote(small, [*peers, [0.40, 30_000]], MAX_MIN, eta=3, score_margin=0.02)  # this one is
    assert not promote(small, peers, MAX_MIN, eta=3, score_margin=0.0)  # head-only is better, if only just
    # a clearly better but larger trial does not stop it: it could still be on the front
    assert promote([0.5, 10], [[0.9, 50], [0.95, 60], [0.92, 70]], MAX_MIN, eta=4, score_margin=0.0)


def test_sampling_sd_of_accuracy_is_binomial_and_other_metrics_get_the_correlation_bound():
    from autopeft.metrics import sampling_sd

    assert sampling_sd("accuracy", 0.8, 1000) == pytest.approx(np.sqrt(0.8 * 0.2 / 1000))
    assert sampling_sd("accuracy", 1.0, 100) > 0  # a perfect score still has a margin
    assert sampling_sd("mcc", 0.3, 400) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        sampling_sd("accuracy", 0.5, 0)


def test_promote_score_not_first():
    assert promote([10, 0.95], [[5, 0.9], [6, 0.8]], ["minimize", "maximize"], eta=3, score_index=1)


def test_dominated_trials_stop_at_a_rung(write_study, tmp_path, monkeypatch):
    """The plumbing of a stop: rung, reason and the noise margin the rule got. The tiny model's rung scores all
    sit at chance, within noise of each other, so the rule itself (tested above) would stop none: a stand-in
    stops every trial once two others reached the rung."""
    import autopeft.loop as loop_module

    margins = []

    def stop_once_two_reached(candidate, peers, directions, eta, score_index, score_margin):
        margins.append(score_margin)
        return len(peers) < 2

    monkeypatch.setattr(loop_module, "promote", stop_once_two_reached)
    study = write_study()
    text = study.read_text().replace("proxy: {train_examples: 64,", "proxy: {rungs: [16, 32], reduction_factor: 2, train_examples: 64,")
    study.write_text(text)
    assert main(["run", str(study), "--trials", "6"]) == 0
    trials = [t for t in optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db").trials
              if not t.user_attrs.get("duplicate")]  # a proposal of a held configuration is closed unrun
    assert len(trials) == 6
    assert all("16" in t.user_attrs.get("rungs", {}) for t in trials if t.state.name != "FAIL")
    stopped = [t for t in trials if t.state.name == "PRUNED"]
    assert len(stopped) >= 3, "every trial after the first two at rung 16 stops there"
    for t in stopped:
        assert t.user_attrs["rung"] in (16, 32) and "stopped at rung" in t.user_attrs["fail_reason"]
        assert "beaten by more than" in t.user_attrs["fail_reason"]
        assert t.user_attrs["measured"]["stopped_at"] == t.user_attrs["rung"]
    # the default margin: twice the sd of a difference of two accuracies on the validation rows
    assert margins and all(0 < m < 1 for m in margins)


def test_a_fixed_rung_margin_replaces_the_sampling_noise(write_study, tmp_path, monkeypatch):
    import autopeft.loop as loop_module

    margins = []
    real = loop_module.promote
    monkeypatch.setattr(loop_module, "promote", lambda *a: margins.append(a[-1]) or real(*a))
    study = write_study()
    study.write_text(study.read_text().replace("proxy: {train_examples: 64,",
                                               "proxy: {rungs: [16], rung_margin: 0.125, train_examples: 64,"))
    assert main(["run", str(study), "--trials", "3"]) == 0
    assert margins and set(margins) == {0.125}


def test_refine_pareto_points_with_seeds(write_study, capsys):
    study = write_study()
    study.write_text(study.read_text() + "train: {train_examples: 64, epochs: 2}\nrefine: {seeds: 2}\n")
    assert main(["run", str(study), "--trials", "3"]) == 0
    capsys.readouterr()
    assert main(["refine", str(study)]) == 0
    out = capsys.readouterr().out
    assert "mean±sd on the validation split at full: 64 examples x 2 epoch(s), 2 seeds" in out
    from autopeft import Study

    front = Study.from_yaml(study).pareto_front()
    for r in front:
        refined = r.attrs["refined"]
        assert len(refined["scores"]) == 2 and refined["mean"] == pytest.approx(np.mean(refined["scores"]))
