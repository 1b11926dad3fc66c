"""Tests for autopeft.metrics against sklearn and scipy on random data."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from autopeft.errors import ConfigError
from autopeft.metrics import METRICS, chance_level, get_metric

sk = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("k", [2, 3, 5])
def test_classification_matches_sklearn(seed: int, k: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    labels = rng.integers(0, k, n)
    preds = np.where(rng.random(n) < 0.6, labels, rng.integers(0, k, n))
    assert get_metric("accuracy")(preds, labels) == pytest.approx(sk.accuracy_score(labels, preds))
    assert get_metric("macro_f1")(preds, labels) == pytest.approx(
        sk.f1_score(labels, preds, average="macro", zero_division=0))
    expected_f1 = (sk.f1_score(labels, preds, zero_division=0) if max(labels.max(), preds.max()) <= 1
                   else sk.f1_score(labels, preds, average="macro", zero_division=0))
    assert get_metric("f1")(preds, labels) == pytest.approx(expected_f1)
    assert get_metric("mcc")(preds, labels) == pytest.approx(sk.matthews_corrcoef(labels, preds))


@pytest.mark.parametrize("seed", range(8))
def test_regression_matches_scipy(seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.uniform(0, 5, 200).round(1)  # rounding makes ties, which spearman must average
    preds = labels + rng.normal(0, 1.5, 200)
    p = stats.pearsonr(preds, labels)[0]
    s = stats.spearmanr(preds, labels)[0]
    assert get_metric("pearson")(preds, labels) == pytest.approx(p)
    assert get_metric("spearman")(preds, labels) == pytest.approx(s)
    assert get_metric("pearson_spearman")(preds, labels) == pytest.approx((p + s) / 2)
    assert get_metric("pearson")(preds.reshape(-1, 1), labels) == pytest.approx(p)  # (n, 1) head output


def test_degenerate_cases_are_zero_not_nan():
    labels = np.array([0, 1, 1, 0, 1])
    constant = np.ones(5, dtype=int)
    assert get_metric("mcc")(constant, labels) == 0.0
    assert get_metric("mcc")(labels, np.zeros(5, dtype=int)) == 0.0
    assert get_metric("f1")(np.zeros(5, dtype=int), np.zeros(5, dtype=int)) == 0.0
    assert get_metric("mcc")(labels, labels) == pytest.approx(1.0)
    y = np.array([1.0, 2.0, 3.0, 4.0])
    for name in ("pearson", "spearman", "pearson_spearman"):
        assert get_metric(name)(np.full(4, 2.5), y) == 0.0
        assert get_metric(name)(y, np.full(4, 1.0)) == 0.0
        assert get_metric(name)(y, y) == pytest.approx(1.0)
    for m in METRICS.values():
        value = m(np.zeros(3), np.zeros(3))
        assert not math.isnan(value)


def test_logits_are_argmaxed_and_shapes_checked():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert get_metric("accuracy")(logits, np.array([1, 0, 0])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        get_metric("accuracy")(np.array([1, 0]), np.array([1, 0, 1]))
    with pytest.raises(ValueError):
        get_metric("accuracy")(np.array([]), np.array([]))


def test_registry():
    assert {m.name for m in METRICS.values() if m.regression} == {"pearson", "spearman", "pearson_spearman"}
    assert get_metric("Macro-F1") is METRICS["macro_f1"]
    with pytest.raises(ConfigError) as err:
        get_metric("acuracy")
    assert "did you mean 'accuracy'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="known metrics"):
        get_metric("zzzz")


def test_chance_level():
    labels = np.array([1] * 7 + [0] * 3)
    assert chance_level("accuracy", labels) == pytest.approx(0.7)
    assert chance_level("f1", labels) == pytest.approx(2 * 0.7 / 1.7)
    assert chance_level("f1", 1 - labels) == 0.0  # majority is the negative class
    assert chance_level("mcc", labels) == 0.0
    assert chance_level("macro_f1", labels) == pytest.approx((2 * 0.7 / 1.7) / 2)
    assert chance_level("pearson_spearman", np.array([0.5, 2.0, 4.5])) == 0.0
    three = np.array([2, 2, 2, 0, 1])
    assert chance_level("accuracy", three) == pytest.approx(0.6)
