"""Evaluation metrics for classification and regression, looked up by name.

Every metric is ``metric(predictions, labels) -> float``. Classification metrics take class
ids (the caller does the argmax; 2-D logits are argmax-ed here as a convenience), regression
metrics take floats.

Degenerate inputs never give NaN, because a NaN objective would break the search:

* ``mcc`` is 0 when predictions or labels are constant (sklearn does the same);
* ``f1``/``macro_f1`` count a class with no true and no predicted positives as F1 = 0
  (sklearn's ``zero_division=0``);
* ``pearson``/``spearman`` are 0 when predictions or labels are constant (scipy would give NaN).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import ConfigError, suggest


@dataclass(frozen=True)
class Metric:
    """A named metric: call it as ``metric(predictions, labels)``."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    regression: bool
    description: str
    higher_is_better: bool = True

    def __call__(self, predictions: np.ndarray, labels: np.ndarray) -> float:
        preds, gold = _prepare(predictions, labels, self.regression)
        return float(self.fn(preds, gold))


def _prepare(predictions: np.ndarray, labels: np.ndarray, regression: bool) -> tuple[np.ndarray, np.ndarray]:
    preds = np.asarray(predictions)
    gold = np.asarray(labels)
    if regression:
        if preds.ndim == 2 and preds.shape[1] == 1:  # a regression head's (n, 1) output
            preds = preds[:, 0]
        preds = preds.astype(np.float64).reshape(-1)
        gold = gold.astype(np.float64).reshape(-1)
    else:
        if preds.ndim == 2:
            preds = preds.argmax(axis=-1)
        preds = preds.astype(np.int64).reshape(-1)
        gold = gold.astype(np.int64).reshape(-1)
    if preds.shape != gold.shape:
        raise ValueError(f"{preds.shape[0]} predictions for {gold.shape[0]} labels")
    if preds.size == 0:
        raise ValueError("cannot compute a metric on zero examples")
    return preds, gold


def _confusion(preds: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confusion matrix (rows = gold, columns = predicted) over the classes present in either."""
    classes, inverse = np.unique(np.concatenate([gold, preds]), return_inverse=True)
    g, p = inverse[: gold.size], inverse[gold.size :]
    k = classes.size
    matrix = np.bincount(g * k + p, minlength=k * k).reshape(k, k).astype(np.float64)
    return classes, matrix


def _per_class_f1(matrix: np.ndarray) -> np.ndarray:
    tp = np.diag(matrix)
    denom = matrix.sum(axis=0) + matrix.sum(axis=1)  # = 2tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def accuracy(preds: np.ndarray, gold: np.ndarray) -> float:
    """Share of exact matches."""
    return float(np.mean(preds == gold))


def macro_f1(preds: np.ndarray, gold: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in labels or predictions."""
    _, matrix = _confusion(preds, gold)
    return float(_per_class_f1(matrix).mean())


def f1(preds: np.ndarray, gold: np.ndarray) -> float:
    """F1 of class 1 when every id in labels and predictions is 0 or 1; macro-F1 otherwise.

    Binary-ness is judged from the arrays, so a 3-class task whose evaluation rows only
    hold classes 0 and 1 is scored as binary.
    """
    if preds.min() >= 0 and gold.min() >= 0 and max(preds.max(), gold.max()) <= 1:
        tp = float(np.sum((preds == 1) & (gold == 1)))
        denom = float(np.sum(preds == 1) + np.sum(gold == 1))
        return 2 * tp / denom if denom > 0 else 0.0
    return macro_f1(preds, gold)


def mcc(preds: np.ndarray, gold: np.ndarray) -> float:
    """Matthews correlation, multi-class (R_K) form; 0 when either side is constant."""
    _, c = _confusion(preds, gold)
    t = c.sum(axis=1)  # times each class truly occurred
    p = c.sum(axis=0)  # times each class was predicted
    n = c.sum()
    correct = np.trace(c)
    cov_ytyp = correct * n - t @ p
    cov_ypyp = n * n - p @ p
    cov_ytyt = n * n - t @ t
    denom = np.sqrt(cov_ytyt * cov_ypyp)
    return float(cov_ytyp / denom) if denom > 0 else 0.0


def pearson(preds: np.ndarray, gold: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant."""
    x = preds - preds.mean()
    y = gold - gold.mean()
    denom = np.sqrt((x @ x) * (y @ y))
    if not np.isfinite(denom) or denom <= 0:
        return 0.0
    return float(np.clip((x @ y) / denom, -1.0, 1.0))


def spearman(preds: np.ndarray, gold: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); 0 when either side is constant."""
    from scipy.stats import rankdata

    return pearson(rankdata(preds), rankdata(gold))


def pearson_spearman(preds: np.ndarray, gold: np.ndarray) -> float:
    """Mean of Pearson and Spearman correlation, as GLUE reports STS-B."""
    return (pearson(preds, gold) + spearman(preds, gold)) / 2


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", accuracy, False, "share of correct predictions"),
        Metric("f1", f1, False, "F1 of class 1 when binary, macro-F1 otherwise"),
        Metric("macro_f1", macro_f1, False, "unweighted mean of per-class F1"),
        Metric("mcc", mcc, False, "Matthews correlation coefficient (multi-class form)"),
        Metric("pearson", pearson, True, "Pearson correlation"),
        Metric("spearman", spearman, True, "Spearman rank correlation"),
        Metric("pearson_spearman", pearson_spearman, True, "mean of Pearson and Spearman (GLUE STS-B)"),
    )
}


def get_metric(name: str) -> Metric:
    """The metric called ``name`` (case, ``-`` and spaces are forgiven), or a ConfigError."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key in METRICS:
        return METRICS[key]
    raise ConfigError(f"unknown metric {name!r}", suggest(key, METRICS, "known metrics", always=True, cutoff=0.5))


def sampling_sd(metric_name: str, score: float, rows: int) -> float:
    """Approximate sd of ``score`` from the sampling of the ``rows`` validation rows it was measured on.

    Accuracy: the binomial sd. Other metrics (F1, MCC, correlations): 1/sqrt(rows), the leading-order sd of a
    correlation near 0 ((1 - r^2)/sqrt(rows) at most) and of F1 near 0.5. A noise margin, not a confidence interval.
    """
    if rows < 1:
        raise ValueError(f"a score needs at least one row, got {rows}")
    if get_metric(metric_name).name == "accuracy":
        return math.sqrt(max(score * (1.0 - score), 1.0 / rows) / rows)
    return 1.0 / math.sqrt(rows)


def chance_level(metric_name: str, labels: np.ndarray) -> float:
    """The score of a model that ignores its input, for warning when a trial is at chance.

    Classification: the metric of always predicting the majority class (so accuracy is the
    majority share, mcc is 0). Regression: the metric of always predicting the mean, i.e. 0.
    """
    metric = get_metric(metric_name)
    gold = np.asarray(labels)
    if gold.size == 0:
        raise ValueError("cannot compute a chance level on zero labels")
    if metric.regression:
        constant = np.full(gold.shape[0], float(np.mean(gold)))
    else:
        values, counts = np.unique(gold.astype(np.int64).reshape(-1), return_counts=True)
        constant = np.full(gold.size, values[np.argmax(counts)])
    return metric(constant, gold)
