"""The one interface every search backend implements, and the registry the study YAML names them by.

A backend is a factory ``(SamplerContext) -> optuna.samplers.BaseSampler``: whatever it does inside,
it is an Optuna sampler, so storage, resume and parallel workers work the same for all of them.
Calling order, as Optuna drives it for each trial:

1. ``infer_relative_search_space(study, trial)`` -- the flat space (every backend here returns the
   study space's distributions);
2. ``sample_relative(study, trial, space)`` -- a whole point at once, or ``{}`` to fall back to
3. ``sample_independent(...)`` -- one parameter at a time (random in the model-based backends).

Trials still RUNNING when a backend is asked are *pending*: backends that can, propose away from them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import optuna

from .. import pareto
from ..errors import ConfigError, suggest
from .encoding import SpaceLike, extreme_points

#: options every backend accepts because the study, not the backend, consumes them
COMMON_OPTIONS = ("reference_point",)


@dataclass(frozen=True)
class SamplerContext:
    """Everything a backend may use, gathered once per study (frozen: backends must not change it).

    ``known(values)`` returns objectives computable without training for flat ``values`` (e.g.
    ``params``, ``memory_estimate``); ``feasible(values)`` is False when ``values`` breaks a hard budget.
    ``reference_point`` maps each objective to the worst value that still counts for hypervolume; it
    is fixed when the study starts and stored with it.
    """

    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    n_startup: int = 8
    space: SpaceLike | None = None
    objectives: tuple[str, ...] = ()
    directions: tuple[str, ...] = ()
    known: Callable[[Mapping[str, Any]], Mapping[str, float]] | None = None
    feasible: Callable[[Mapping[str, Any]], bool] | None = None
    reference_point: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if len(self.objectives) != len(self.directions):
            raise ValueError("objectives and directions must have the same length")
        bad = [d for d in self.directions if d not in ("minimize", "maximize")]
        if bad:
            raise ValueError(f"direction {bad[0]!r} is neither 'minimize' nor 'maximize'")
        if self.n_startup < 1:
            raise ValueError("n_startup must be >= 1")
        if self.reference_point is not None:
            missing = [o for o in self.objectives if o not in self.reference_point]
            if missing:
                raise ValueError(f"reference point lacks {missing}")

    @property
    def backend_options(self) -> dict[str, Any]:
        """The options meant for the backend itself (study-level ones removed)."""
        return {k: v for k, v in self.options.items() if k not in COMMON_OPTIONS}

    def known_values(self, values: Mapping[str, Any]) -> dict[str, float]:
        return dict(self.known(values)) if self.known else {}

    def is_feasible(self, values: Mapping[str, Any]) -> bool:
        return True if self.feasible is None else bool(self.feasible(values))

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        return {p.name: p.distribution for p in self.space.params} if self.space is not None else {}


class ContextSampler(optuna.samplers.BaseSampler):
    """Base of the model-based backends: the whole study space is sampled relatively (``sample_relative``
    proposes every parameter at once), with a seeded random sampler for the independent fallback."""

    def __init__(self, ctx: SamplerContext):
        self._ctx = ctx
        self._random = optuna.samplers.RandomSampler(seed=ctx.seed)

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: optuna.trial.FrozenTrial) -> dict[str, optuna.distributions.BaseDistribution]:
        return self._ctx.distributions()

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: optuna.distributions.BaseDistribution) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def _is_whole_space(self, search_space: Mapping[str, optuna.distributions.BaseDistribution]) -> bool:
        """True when ``sample_relative`` was handed the full study space (else it returns ``{}``)."""
        return bool(search_space) and set(search_space) == set(self._ctx.distributions())


SamplerFactory = Callable[[SamplerContext], optuna.samplers.BaseSampler]
_REGISTRY: dict[str, SamplerFactory] = {}


def register_optimizer(name: str) -> Callable[[SamplerFactory], SamplerFactory]:
    """Decorator: make a backend factory selectable as ``optimizer: {name: <name>}`` (no duplicates)."""

    def wrap(factory: SamplerFactory) -> SamplerFactory:
        if name in _REGISTRY:
            raise ValueError(f"optimizer '{name}' is already registered")
        _REGISTRY[name] = factory
        return factory

    return wrap


def optimizer_names() -> list[str]:
    return sorted(_REGISTRY)


def make_sampler(name: str, ctx: SamplerContext) -> optuna.samplers.BaseSampler:
    """Build the named backend; unknown names and bad options are one-line ConfigErrors."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown optimizer '{name}'", suggest(name, optimizer_names(), "known optimizers"))
    try:
        return _REGISTRY[name](ctx)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad option for optimizer '{name}' ({exc})", "check optimizer.options") from None


def derive_reference_point(space: SpaceLike, objectives: Sequence[str], directions: Sequence[str],
                           known: Callable[[Mapping[str, Any]], Mapping[str, float]] | None,
                           given: Mapping[str, float] | None = None,
                           worst: Mapping[str, float] | None = None) -> dict[str, float]:
    """:func:`autopeft.pareto.derive_reference_point` with the known objectives bounded over ``space``'s
    :func:`.encoding.extreme_points` (listed only when an objective needs them)."""
    def points() -> Iterator[dict[str, Any]]:
        yield from extreme_points(space)

    return pareto.derive_reference_point(points(), objectives, directions, known, given, worst)
