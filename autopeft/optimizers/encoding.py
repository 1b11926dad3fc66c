"""Flat search-space values <-> numeric feature vectors in [0, 1], with inactive parameters held fixed.

A surrogate must see two configurations that train the same model as the same point, so a parameter
that does not matter (the rank options of a LoRA that is off, the layer bits when no shared module is
on) is encoded as a constant instead of its sampled value. Which parameters matter, and when two points
are the same configuration, is :mod:`autopeft.space`'s to say (``active_names``, ``identity_of``). The
encoder also draws random points and mutates points, which the candidate generators of :mod:`.mobo` and
the start-up design use, and lists the points where size-like objectives peak (:func:`extreme_points`, which
bound the known objectives of the reference point).

Encoding per parameter:

* categorical with numeric choices (sizes, ranks, on/off bits): one ordinal feature, index / (n - 1);
* categorical with other choices (target sets, positions): one-hot (one feature when there are two);
* integer / float: one feature, linear or log-scaled to [0, 1].
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from ..space import active_names, identity_of, unit_value


class ParamLike(Protocol):
    name: str
    distribution: BaseDistribution
    requires_any: tuple[str, ...]
    role: str


class SpaceLike(Protocol):
    """What the optimizers need from a space: :class:`autopeft.space.SearchSpace` has it."""

    params: list[ParamLike]


def _is_ordinal(dist: BaseDistribution) -> bool:
    return isinstance(dist, CategoricalDistribution) and all(
        isinstance(c, Real) and not isinstance(c, bool) for c in dist.choices)


def _ordinal_order(dist: CategoricalDistribution) -> list[int]:
    """Choice indices sorted by value (a YAML may list sizes in any order)."""
    return sorted(range(len(dist.choices)), key=lambda i: dist.choices[i])


@dataclass(frozen=True)
class _Dim:
    name: str
    dist: BaseDistribution
    kind: str  # ordinal | onehot | binary | numeric
    start: int  # first feature column
    width: int
    requires_any: tuple[str, ...]
    role: str = "size"
    rank: tuple[int, ...] = ()  # ordinal: rank of each choice index



class SpaceEncoder:
    """Encode, sample and mutate flat values of a space (see the module docstring)."""

    def __init__(self, space: SpaceLike):
        self.space = space
        dims: list[_Dim] = []
        col = 0
        for p in space.params:
            d = p.distribution
            req = tuple(p.requires_any)
            if isinstance(d, CategoricalDistribution):
                n = len(d.choices)
                if n == 1:
                    dims.append(_Dim(p.name, d, "ordinal", col, 0, req, p.role, (0,)))
                elif _is_ordinal(d):
                    order = _ordinal_order(d)
                    rank = [0] * n
                    for r, i in enumerate(order):
                        rank[i] = r
                    dims.append(_Dim(p.name, d, "ordinal", col, 1, req, p.role, tuple(rank)))
                    col += 1
                elif n == 2:
                    dims.append(_Dim(p.name, d, "binary", col, 1, req, p.role))
                    col += 1
                else:
                    dims.append(_Dim(p.name, d, "onehot", col, n, req, p.role))
                    col += n
            elif isinstance(d, (IntDistribution, FloatDistribution)):
                dims.append(_Dim(p.name, d, "numeric", col, 1 if d.high > d.low else 0, req, p.role))
                col += 1 if d.high > d.low else 0
            else:  # pragma: no cover - optuna has no other distribution kinds
                raise TypeError(f"unsupported distribution for '{p.name}': {d!r}")
        self.dims = dims
        self.num_features = col
        self._by_name = {d.name: d for d in dims}

    # ------------------------------------------------------------------ activity and identity
    def active(self, values: Mapping[str, Any]) -> set[str]:
        """Names of the parameters that matter for ``values``: :func:`autopeft.space.active_names`."""
        return active_names(self.space, values)

    def key(self, values: Mapping[str, Any]) -> tuple:
        """Hashable identity of the configuration: :func:`autopeft.space.identity_of` (the one a study's
        duplicate check uses)."""
        return identity_of(self.space, values)

    def contains(self, values: Mapping[str, Any]) -> bool:
        """True if ``values`` sets every parameter to a value its distribution allows."""
        try:
            return all(d.name in values and d.dist._contains(d.dist.to_internal_repr(values[d.name]))
                       for d in self.dims)
        except (ValueError, TypeError, IndexError):
            return False

    # ------------------------------------------------------------------ encoding
    @staticmethod
    def _unit(d: _Dim, v: float) -> float:
        return unit_value(d.dist, v)

    def encode(self, values: Mapping[str, Any]) -> np.ndarray:
        """(num_features,) features in [0, 1]; inactive parameters are all-zero."""
        x = np.zeros(self.num_features)
        active = self.active(values)
        for d in self.dims:
            if d.width == 0 or d.name not in active:
                continue
            v = values[d.name]
            if d.kind == "numeric":
                x[d.start] = self._unit(d, v)
            else:
                idx = d.dist.to_internal_repr(v)
                idx = int(idx)
                if d.kind == "ordinal":
                    x[d.start] = d.rank[idx] / (len(d.rank) - 1)
                elif d.kind == "binary":
                    x[d.start] = float(idx)
                else:
                    x[d.start + idx] = 1.0
        return x

    def encode_many(self, points: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(n, num_features) features."""
        if not points:
            return np.zeros((0, self.num_features))
        return np.stack([self.encode(v) for v in points])

    # ------------------------------------------------------------------ sampling and mutation
    def sample(self, rng: np.random.Generator, skew: float = 1.0) -> dict[str, Any]:
        """A random point: uniform per parameter (log-uniform for log scales).

        ``skew`` > 1 pulls ordinal choices towards their smallest value, < 1 towards the largest
        (u ** skew for u uniform), so a pool drawn with several skews covers small and large
        configurations alike instead of piling up in the middle.

        Not :meth:`autopeft.space.SearchSpace.sample`: integers and floats come from one ``random()`` each
        here, so the draws differ, and mobo's candidate pools and the derived reference points depend on them.
        """
        values: dict[str, Any] = {}
        for d in self.dims:
            dist = d.dist
            if isinstance(dist, CategoricalDistribution):
                n = len(dist.choices)
                if d.kind == "ordinal" and n > 1 and skew != 1.0:
                    r = min(n - 1, int(rng.random() ** skew * n))
                    values[d.name] = dist.choices[d.rank.index(r)]
                else:
                    values[d.name] = dist.choices[int(rng.integers(n))]
            else:
                values[d.name] = self._from_unit(d, float(rng.random()))
        return values

    def _from_unit(self, d: _Dim, u: float) -> Any:
        dist = d.dist
        lo, hi = float(dist.low), float(dist.high)
        if dist.log:
            x = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        else:
            x = lo + u * (hi - lo)
        if isinstance(dist, IntDistribution):
            step = dist.step
            return int(min(dist.high, max(dist.low, dist.low + round((x - dist.low) / step) * step)))
        if dist.step is not None:
            x = dist.low + round((x - dist.low) / dist.step) * dist.step
        return float(min(hi, max(lo, x)))

    def mutate(self, values: Mapping[str, Any], rng: np.random.Generator, n_changes: int = 1) -> dict[str, Any]:
        """A neighbour: ``n_changes`` parameters changed (active ones, or the ones that switch them on).

        Ordinal choices and numbers move to a nearby value most of the time, so local search can walk
        along sizes; other categoricals jump to another choice.
        """
        out = dict(values)
        active = self.active(out)
        # sizes stay candidates when inactive: changing one is how a module (or its layers) switches on
        candidates = [d for d in self.dims if d.width > 0 and (d.name in active or d.role in ("size", "layer"))]
        if not candidates:
            return out
        for _ in range(n_changes):
            d = candidates[int(rng.integers(len(candidates)))]
            dist = d.dist
            if isinstance(dist, CategoricalDistribution):
                n = len(dist.choices)
                idx = int(dist.to_internal_repr(out[d.name]))
                if d.kind == "ordinal" and rng.random() < 0.7:
                    r = d.rank[idx] + (1 if rng.random() < 0.5 else -1)
                    r = min(n - 1, max(0, r))
                    new = d.rank.index(r)
                    if new == idx:  # at an end: step the other way
                        new = d.rank.index(d.rank[idx] - 1 if d.rank[idx] > 0 else 1)
                else:
                    new = (idx + 1 + int(rng.integers(n - 1))) % n
                out[d.name] = dist.choices[new]
            else:
                u = self._unit(d, out[d.name])
                scale = 0.15 if isinstance(dist, FloatDistribution) else max(0.15, 1.0 / max(1, dist.high - dist.low))
                out[d.name] = self._from_unit(d, min(1.0, max(0.0, u + rng.normal(0.0, scale))))
        return out


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
