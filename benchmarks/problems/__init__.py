"""Evaluation-free multi-objective problems for comparing search backends in seconds.

A :class:`Problem` looks to a backend exactly like a study: a flat space (``params`` with activity
conditions), objective names and directions, the known objectives, the budgets, the reference point.
``evaluate`` replaces the proxy run. Problems register themselves by name (``get_problem``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from autopeft.optimizers import SamplerContext
from autopeft.pareto import HypervolumeFrame, fixed_frame

#: frozen copies of the shipped spaces the benchmark data were drawn from (see their headers)
SPACES = Path(__file__).resolve().parents[1] / "spaces"


def benchmark_space(name: str, num_layers: int):
    """``benchmarks/spaces/<name>.yaml`` as a SearchSpace: tables, logs and league runs stay reproducible
    (same draws from the same seeds) when the shipped ``search_spaces/`` change."""
    from autopeft.space import SearchSpace
    from autopeft.yamlio import load_yaml

    return SearchSpace.from_spec(load_yaml(SPACES / f"{name}.yaml")[0], num_layers)


@dataclass(frozen=True)
class Problem:
    """``bounds`` maps each objective to its best value (raw units); with ``reference_point`` (the worst
    that counts) it normalises every objective to [0, 1] on its hypervolume scale."""

    name: str
    description: str
    space: Any
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    evaluate: Callable[[Mapping[str, Any]], dict[str, float]]
    reference_point: Mapping[str, float]
    bounds: Mapping[str, float]
    known: Callable[[Mapping[str, Any]], Mapping[str, float]] | None = None
    feasible: Callable[[Mapping[str, Any]], bool] | None = None
    true_front: np.ndarray | None = None  # (n, m) raw objective values on the Pareto front, if known
    info: dict[str, Any] = field(default_factory=dict)

    def context(self, seed: int, n_startup: int, options: Mapping[str, Any] | None = None) -> SamplerContext:
        return SamplerContext(dict(options or {}), seed, n_startup, self.space, self.objectives, self.directions,
                              self.known, self.feasible, dict(self.reference_point))

    def distributions(self) -> dict[str, Any]:
        return {p.name: p.distribution for p in self.space.params}

    def frame(self) -> HypervolumeFrame:
        """The fixed hypervolume frame: 0 at ``bounds``, 1 at ``reference_point`` (log params / memory)."""
        return fixed_frame(self.objectives, self.directions, [self.bounds[n] for n in self.objectives],
                           [self.reference_point[n] for n in self.objectives])

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """(n, m) raw objective values -> (n, m) losses, 0 at the bounds, 1 at the reference point."""
        return self.frame().normalise(np.atleast_2d(np.asarray(values, dtype=float)))


_REGISTRY: dict[str, Callable[[], Problem]] = {}


def register_problem(name: str):
    def wrap(factory: Callable[[], Problem]) -> Callable[[], Problem]:
        if name in _REGISTRY:
            raise ValueError(f"problem '{name}' is already registered")
        _REGISTRY[name] = factory
        return factory

    return wrap


def problem_names() -> list[str]:
    return list(_REGISTRY)


def get_problem(name: str) -> Problem:
    if name not in _REGISTRY:
        raise KeyError(f"unknown problem '{name}'; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]()


from . import peft_table, synthetic  # noqa: E402,F401  (register)
