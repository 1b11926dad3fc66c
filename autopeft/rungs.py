"""Multi-fidelity promotion: a multi-objective, asynchronous successive halving (MO-ASHA).

A trial's proxy run is scored at each rung (a number of training examples seen). Reaching rung r,
it continues only if it ranks in the top 1/eta of every trial that reached r, where the ranking is
non-dominated sorting over (score at r, known objectives), then score. Dominated configurations
stop early and keep their rung and reason; the first trials at a rung always continue.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .pareto import to_minimisation


def nondominated_ranks(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """(n, m) -> (n,) front index per row (0 = non-dominated), by repeated peeling."""
    losses = to_minimisation(values, directions)
    n = len(losses)
    ranks = np.full(n, -1)
    # dominated_by[i, j]: row j dominates row i (once, as a matrix: peeling row by row in Python made a study's
    # rung decisions, and the multi-fidelity replay of 300 configurations, take minutes)
    dominated_by = ((losses[None, :, :] <= losses[:, None, :]).all(-1)
                    & (losses[None, :, :] < losses[:, None, :]).any(-1))
    remaining = np.ones(n, dtype=bool)
    front = 0
    while remaining.any():
        current = remaining & ~dominated_by[:, remaining].any(1)
        ranks[current] = front
        remaining &= ~current
        front += 1
    return ranks


def promote(candidate: Sequence[float], peers: Sequence[Sequence[float]], directions: Sequence[str],
            eta: float, score_index: int = 0) -> bool:
    """Whether ``candidate`` (objective vector at this rung) continues past the rung.

    ``peers`` are the vectors of the other trials that reached the same rung.
    """
    rows = np.array([list(candidate), *map(list, peers)], dtype=float)
    keep = math.ceil(len(rows) / eta)
    ranks = nondominated_ranks(rows, directions)
    score_sign = -1.0 if directions[score_index] == "maximize" else 1.0
    order = np.lexsort((score_sign * rows[:, score_index], ranks))  # by front, then by score
    return int(np.where(order == 0)[0][0]) < keep
