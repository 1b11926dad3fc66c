"""The fixed hypervolume reference point, and objectives on their hypervolume scale.

Hypervolume (and the acquisition built on it) is computed on *scaled* objectives: parameter counts and
bytes span orders of magnitude, so they are compared on a log scale (a 10k-parameter adapter that
beats a 20k one matters as much as 1M vs 2M). The scales are the objective registry's
(:mod:`autopeft.objectives`), shared with the reported hypervolume; an objective without one is used as is.
"""
from __future__ import annotations

import itertools
import math
from numbers import Real
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from optuna.distributions import CategoricalDistribution

from ..errors import ConfigError
from ..objectives import OBJECTIVES
from ..pareto import scale_values
from .encoding import SpaceEncoder, SpaceLike


def scale_value(name: str, value: float) -> float:
    """The objective on its hypervolume scale (identity when none is registered)."""
    return float(scale_values(name, np.asarray([float(value)]))[0])


#: measured objectives that have an analytic estimate among the known ones; the reference point of
#: the measured one is this factor above the worst estimate (measured peaks run a little higher)
ESTIMATED_BY = {o.name: o.estimated_by for o in OBJECTIVES.values() if o.estimated_by}
ESTIMATE_MARGIN = 1.5


def extreme_points(space: SpaceLike, limit: int = 64, random: int = 256, seed: int = 0) -> list[dict[str, Any]]:
    """Points where size-like objectives peak: every ordinal at its largest value, each combination
    of the other categoricals (up to ``limit``), numbers at their upper bound; plus ``random`` random points
    so that non-monotone known objectives are bounded too."""
    enc = SpaceEncoder(space)
    base: dict[str, Any] = {}
    free: list[tuple[str, tuple]] = []
    for d in enc.dims:
        dist = d.dist
        if isinstance(dist, CategoricalDistribution):
            if all(isinstance(c, Real) for c in dist.choices):
                base[d.name] = max(dist.choices)
            else:
                free.append((d.name, tuple(dist.choices)))
        else:
            base[d.name] = dist.high
    rng = np.random.default_rng(seed)
    combos = list(itertools.islice(itertools.product(*(c for _, c in free)), limit))
    points = [{**base, **dict(zip((n for n, _ in free), combo))} for combo in combos]
    points += [enc.sample(rng) for _ in range(random)]
    return points


def derive_reference_point(space: SpaceLike, objectives: Sequence[str], directions: Sequence[str],
                           known: Callable[[Mapping[str, Any]], Mapping[str, float]] | None,
                           given: Mapping[str, float] | None = None,
                           worst: Mapping[str, float] | None = None) -> dict[str, float]:
    """The reference point (raw objective units), fixed when a study starts.

    Per objective, the first that applies: ``given`` (the YAML), the worst value of a known objective
    over :func:`extreme_points`, :data:`ESTIMATE_MARGIN` x the worst estimate for a measured objective
    with a known estimate, ``worst`` (e.g. the chance-level score). Raises ConfigError if none does.
    """
    given, worst = dict(given or {}), dict(worst or {})
    ref: dict[str, float] = {}
    need_known = [o for o in objectives if o not in given]
    bounds: dict[str, float] = {}
    if known is not None and need_known:
        for point in extreme_points(space):
            try:
                vals = known(point)
            except ConfigError:
                continue  # a point the space allows but the model cannot take has no objective value
            for k, v in vals.items():
                bounds[k] = max(bounds.get(k, -math.inf), float(v))
    for name, direction in zip(objectives, directions):
        if name in given:
            ref[name] = float(given[name])
        elif name in bounds and direction == "minimize":
            ref[name] = bounds[name]
        elif ESTIMATED_BY.get(name) in bounds and direction == "minimize":
            ref[name] = ESTIMATE_MARGIN * bounds[ESTIMATED_BY[name]]
        elif name in worst:
            ref[name] = float(worst[name])
        else:
            raise ConfigError(f"no reference point for objective '{name}'",
                              f"set optimizer.options.reference_point.{name} to its worst acceptable value")
    return ref
