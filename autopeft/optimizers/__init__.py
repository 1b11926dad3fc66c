"""Search backends behind one interface: each is an Optuna sampler, so storage, resume and workers
work the same for all of them. A backend is a factory ``(options, seed, n_startup) -> BaseSampler``
registered by name; study YAML names it (``optimizer: {name: gp}``), never an import path."""
from __future__ import annotations

import difflib
from typing import Any, Callable

import optuna

from ..errors import ConfigError

SamplerFactory = Callable[[dict[str, Any], int, int], optuna.samplers.BaseSampler]
_REGISTRY: dict[str, SamplerFactory] = {}


def register_optimizer(name: str) -> Callable[[SamplerFactory], SamplerFactory]:
    def wrap(factory: SamplerFactory) -> SamplerFactory:
        if name in _REGISTRY:
            raise ValueError(f"optimizer '{name}' is already registered")
        _REGISTRY[name] = factory
        return factory

    return wrap


def optimizer_names() -> list[str]:
    return sorted(_REGISTRY)


def make_sampler(name: str, options: dict[str, Any], seed: int, n_startup: int) -> optuna.samplers.BaseSampler:
    """Build the named backend; unknown names and bad options are one-line ConfigErrors."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        fix = f"did you mean '{close[0]}'?" if close else f"known optimizers: {', '.join(optimizer_names())}"
        raise ConfigError(f"unknown optimizer '{name}'", fix)
    try:
        return _REGISTRY[name](dict(options), seed, n_startup)
    except TypeError as exc:
        raise ConfigError(f"bad option for optimizer '{name}' ({exc})", "check optimizer.options") from None


@register_optimizer("gp")
def _gp(options: dict[str, Any], seed: int, n_startup: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup, **options)


@register_optimizer("tpe")
def _tpe(options: dict[str, Any], seed: int, n_startup: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup, multivariate=True, **options)


@register_optimizer("nsga2")
def _nsga2(options: dict[str, Any], seed: int, n_startup: int) -> optuna.samplers.BaseSampler:
    options.setdefault("population_size", max(4, n_startup))
    return optuna.samplers.NSGAIISampler(seed=seed, **options)


@register_optimizer("random")
def _random(options: dict[str, Any], seed: int, n_startup: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed, **options)
