"""Multi-fidelity promotion: a multi-objective, asynchronous successive halving (MO-ASHA).

A trial's proxy run is scored at each rung (a number of training examples seen). Reaching rung r,
it continues only if it ranks in the top 1/eta of every trial that reached r, where the ranking is
non-dominated sorting over (score at r, known objectives), then score, unless no other trial clearly dominates
it (by more than the rung score's sampling noise). Dominated configurations stop early and keep their rung and
reason; the first trials at a rung always continue.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .metrics import sampling_sd
from .pareto import nondominated_ranks, to_minimisation


def noise_margin(metric_name: str, score: float, rows: int) -> float:
    """The default rung margin (``proxy.rung_margin``): twice the sd of the difference of two scores measured on
    ``rows`` validation rows."""
    return 2 * math.sqrt(2) * sampling_sd(metric_name, score, rows)


def promote(candidate: Sequence[float], peers: Sequence[Sequence[float]], directions: Sequence[str],
            eta: float, score_index: int = 0, score_margin: float | None = None) -> bool:
    """Whether ``candidate`` (objective vector at this rung) continues past the rung.

    ``peers`` are the vectors of the other trials that reached the same rung. A candidate in the top 1/eta
    continues. With ``score_margin``, so does one that no peer clearly dominates: no peer is at least as good on
    every other objective and better on the score by more than the margin (the score's noise at the rung).
    Without it, a rung's sampling noise stops configurations the full front needs: near-chance rung scores let
    head-only or tiny configs "dominate" small adapters that end on the front (measured, benchmarks/RESULTS.md).
    """
    rows = np.array([list(candidate), *map(list, peers)], dtype=float)
    keep = math.ceil(len(rows) / eta)
    ranks = nondominated_ranks(rows, directions)
    score_sign = -1.0 if directions[score_index] == "maximize" else 1.0
    order = np.lexsort((score_sign * rows[:, score_index], ranks))  # by front, then by score
    if int(np.where(order == 0)[0][0]) < keep:
        return True
    if score_margin is None or len(rows) == 1:
        return False
    losses = to_minimisation(rows, directions)
    others = np.arange(rows.shape[1]) != score_index
    no_worse = (losses[1:, others] <= losses[0, others]).all(axis=1)
    clearly_better = losses[1:, score_index] < losses[0, score_index] - score_margin
    return not bool((no_worse & clearly_better).any())
