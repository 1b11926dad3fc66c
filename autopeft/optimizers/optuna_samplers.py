"""Optuna's own samplers as backends: ``gp`` (GPSampler), ``tpe``, ``nsga2``, ``random``.

They see the flat space as plain distributions: no activity conditions, no known objectives, and
budgets only through the study rejecting over-budget proposals (which then cost no run but an ask).
"""
from __future__ import annotations

import optuna

from .base import SamplerContext, register_optimizer


@register_optimizer("gp")
def _gp(ctx: SamplerContext) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=ctx.seed, n_startup_trials=ctx.n_startup, **ctx.backend_options)


@register_optimizer("tpe")
def _tpe(ctx: SamplerContext) -> optuna.samplers.BaseSampler:
    options = {"multivariate": True, **ctx.backend_options}
    return optuna.samplers.TPESampler(seed=ctx.seed, n_startup_trials=ctx.n_startup, **options)


@register_optimizer("nsga2")
def _nsga2(ctx: SamplerContext) -> optuna.samplers.BaseSampler:
    options = {"population_size": max(4, ctx.n_startup), **ctx.backend_options}
    return optuna.samplers.NSGAIISampler(seed=ctx.seed, **options)


@register_optimizer("random")
def _random(ctx: SamplerContext) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=ctx.seed, **ctx.backend_options)
