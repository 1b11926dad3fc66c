"""What :mod:`.mobo` still takes from here: one objective value on its hypervolume scale. The frame, the
reference point and ``ESTIMATED_BY`` live in :mod:`autopeft.pareto` and :mod:`autopeft.objectives` (the space's
extreme points in :mod:`.encoding`)."""
from __future__ import annotations

import numpy as np

from ..objectives import ESTIMATED_BY  # noqa: F401  (mobo's import)
from ..pareto import scale_values


def scale_value(name: str, value: float) -> float:
    """The objective on its hypervolume scale (identity when none is registered)."""
    return float(scale_values(name, np.asarray([float(value)]))[0])
