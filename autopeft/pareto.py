"""Non-dominated sorting and pick rules over objective vectors."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def to_minimisation(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """(n, m) values -> (n, m) losses: maximised columns are negated."""
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return np.asarray(values, dtype=float) * signs


def pareto_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """(n, m) values -> (n,) bool, True where no other row dominates (duplicates all kept)."""
    losses = to_minimisation(values, directions)
    n = len(losses)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        dominates_i = np.all(losses <= losses[i], axis=1) & np.any(losses < losses[i], axis=1)
        mask[i] = not dominates_i.any()
    return mask
