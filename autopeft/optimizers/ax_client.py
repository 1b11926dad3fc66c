"""``ax``: Ax's ``Client`` (ax-platform >= 1.0) as an Optuna sampler.

Each ask rebuilds an Ax experiment from the study's trials (finished ones with their values, RUNNING
ones as pending, failed ones as failed) and asks Ax for one point, so the Optuna storage stays the only
record and resume/workers behave as for every other backend. Ax sees the flat space without activity
conditions, known objectives or budgets (the study rejects over-budget proposals).
"""
from __future__ import annotations

import logging
import math
import warnings
from numbers import Real
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from .base import ContextSampler, SamplerContext, register_optimizer

METHODS = ("fast", "quality", "random_search")


@register_optimizer("ax")
def _ax(ctx: SamplerContext) -> BaseSampler:
    return AxSampler(ctx, **ctx.backend_options)


class AxSampler(ContextSampler):
    """Options: ``method`` (Ax generation-strategy method: fast | quality | random_search)."""

    def __init__(self, ctx: SamplerContext, method: str = "fast"):
        if method not in METHODS:
            raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
        if ctx.space is None or not ctx.objectives:
            raise ValueError("ax needs the study's search space and objectives")
        super().__init__(ctx)
        self._method = method
        self._names = {p.name: f"x{i}" for i, p in enumerate(ctx.space.params)}
        self._metrics = [f"m{i}" for i in range(len(ctx.objectives))]

    # ------------------------------------------------------------------ value mapping
    @staticmethod
    def _ordinal(dist: CategoricalDistribution) -> bool:
        return all(isinstance(c, Real) and not isinstance(c, bool) for c in dist.choices)

    def _parameters(self) -> list:
        from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig

        out = []
        for name, dist in self._ctx.distributions().items():
            ax_name = self._names[name]
            if isinstance(dist, CategoricalDistribution):
                if len(dist.choices) == 1:
                    continue  # fixed: filled in on the way back
                if self._ordinal(dist):
                    is_int = all(float(c).is_integer() for c in dist.choices)
                    values = sorted(int(c) if is_int else float(c) for c in dist.choices)
                    out.append(ChoiceParameterConfig(ax_name, values, "int" if is_int else "float", is_ordered=True))
                else:
                    out.append(ChoiceParameterConfig(ax_name, [str(i) for i in range(len(dist.choices))], "str",
                                                     is_ordered=False))
            elif isinstance(dist, (IntDistribution, FloatDistribution)):
                kind = "int" if isinstance(dist, IntDistribution) else "float"
                step = dist.step if dist.step not in (None, 1) else None
                out.append(RangeParameterConfig(ax_name, (dist.low, dist.high), kind, step_size=step,
                                                scaling="log" if dist.log else "linear"))
        return out

    def _to_ax(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, dist in self._ctx.distributions().items():
            v = params[name]
            if isinstance(dist, CategoricalDistribution):
                if len(dist.choices) == 1:
                    continue
                if self._ordinal(dist):
                    out[self._names[name]] = int(v) if float(v).is_integer() else float(v)
                else:
                    out[self._names[name]] = str(dist.to_internal_repr(v))
            else:
                out[self._names[name]] = v
        return out

    def _from_ax(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, dist in self._ctx.distributions().items():
            if isinstance(dist, CategoricalDistribution):
                if len(dist.choices) == 1:
                    out[name] = dist.choices[0]
                    continue
                v = params[self._names[name]]
                if self._ordinal(dist):
                    out[name] = next(c for c in dist.choices if float(c) == float(v))
                else:
                    out[name] = dist.choices[int(v)]
            elif isinstance(dist, IntDistribution):
                out[name] = int(params[self._names[name]])
            else:
                out[name] = float(min(dist.high, max(dist.low, params[self._names[name]])))
        return out

    # ------------------------------------------------------------------ the ask
    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not self._is_whole_space(search_space):
            return {}
        from ax.api import Client

        from ..logs import adopt_library_loggers

        for name in ("ax", "pyro"):
            logging.getLogger(name).setLevel(logging.WARNING)
        adopt_library_loggers()  # Ax prints through handlers of its own: to the -v log with the others
        dists = self._ctx.distributions()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client = Client(random_seed=self._ctx.seed)
            client.configure_experiment(parameters=self._parameters(), name="autopeft")
            objective = ", ".join(("" if d == "maximize" else "-") + m
                                  for m, d in zip(self._metrics, self._ctx.directions))
            client.configure_optimization(objective=objective)
            client.configure_generation_strategy(method=self._method, initialization_budget=self._ctx.n_startup,
                                                 initialization_random_seed=self._ctx.seed,
                                                 initialize_with_center=False)
            for t in study.get_trials(deepcopy=False):
                if t.number == trial.number or set(t.params) != set(dists):
                    continue
                if t.state == TrialState.COMPLETE and t.values and all(math.isfinite(v) for v in t.values):
                    index = client.attach_trial(self._to_ax(t.params))
                    client.complete_trial(index, dict(zip(self._metrics, map(float, t.values))))
                elif t.state == TrialState.RUNNING:
                    client.attach_trial(self._to_ax(t.params))  # left running: Ax treats it as pending
                elif t.state == TrialState.FAIL:
                    client.mark_trial_failed(client.attach_trial(self._to_ax(t.params)))
            proposal = client.get_next_trials(max_trials=1)
        if not proposal:
            return {}
        return self._from_ax(dict(next(iter(proposal.values()))))
