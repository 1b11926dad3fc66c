"""A candidate configuration, and the study's hard budgets judged on it.

Every path that meets a configuration — a trial's suggestion, a rung peer, a refined Pareto point, the sampler's
known objectives and feasibility, a random feasible fallback — goes through :class:`Candidate`: decode the flat
search values, normalise against the model, count the parameters. :class:`Budget` says whether it may run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

import numpy as np
import optuna

from .adapters import PEFTConfig, count_adapter_params, normalise_config
from .errors import ConfigError
from .models import ModelInfo
from .space import SearchSpace


class _Trainer(Protocol):
    """What candidates need of the proxy trainer (see proxy.ProxyTrainer)."""

    info: ModelInfo

    def settings(self, hparams: Mapping[str, Any] | None) -> Any: ...

    def estimate_memory(self, config: PEFTConfig, params: int, proxy: Any) -> float: ...

    def head_params(self) -> int: ...


@dataclass(frozen=True)
class Candidate:
    """A configuration normalised against the model, its hyperparameters and its adapter parameter count."""

    config: PEFTConfig
    hparams: Mapping[str, Any] | None
    params: int

    @classmethod
    def of(cls, config: PEFTConfig, hparams: Mapping[str, Any] | None, info: ModelInfo) -> "Candidate":
        config = normalise_config(config, info)
        return cls(config, hparams, count_adapter_params(config, info))

    @classmethod
    def decode(cls, space: SearchSpace, info: ModelInfo, values: Mapping[str, Any]) -> "Candidate":
        """The candidate of flat search ``values`` (one per distribution of ``space``)."""
        config, hparams = space.decode(values)
        return cls.of(config, hparams, info)

    @classmethod
    def stored(cls, attrs: Mapping[str, Any], info: ModelInfo) -> "Candidate":
        """The candidate a stored trial ran (its ``config`` and ``hyperparameters`` user attributes)."""
        return cls.of(PEFTConfig.from_dict(attrs["config"]), attrs.get("hyperparameters"), info)

    def memory_estimate(self, trainer: _Trainer) -> float:
        return trainer.estimate_memory(self.config, self.params, trainer.settings(self.hparams))

    def known(self, trainer: _Trainer) -> dict[str, float]:
        """The objectives computable without training, exactly."""
        return {"params": float(self.params), "trainable": float(self.params + trainer.head_params()),
                "memory_estimate": float(self.memory_estimate(trainer))}


class Budget:
    """The hard budgets (``constraints.max_params``, ``max_memory``) judged on a candidate before it trains.

    Memory is judged on the estimate times the largest measured/estimated ratio seen so far, so that once a
    measurement shows the estimate running low, configurations like it are not measured again; the measured value
    is checked after the profiled step in any case (see ProxyTrainer.fit).
    """

    def __init__(self, params_limit: float | None, memory_limit: float | None, trainer: _Trainer):
        self.params_limit = params_limit
        self.memory_limit = memory_limit
        self.trainer = trainer
        self.memory_ratio: float | None = None

    def violation(self, candidate: Candidate) -> str | None:
        """Why ``candidate`` breaks a hard budget before training (None when it may fit)."""
        limit = self.params_limit
        if limit is not None and candidate.params > limit:
            return f"infeasible: {candidate.params} params > max_params {limit:.0f}"
        if self.memory_limit is not None:
            estimate = candidate.memory_estimate(self.trainer)
            expected = estimate * (self.memory_ratio or 1.0)
            if expected > self.memory_limit:
                how = "estimated" if self.memory_ratio is None else \
                    f"estimated ({estimate} B x {self.memory_ratio:.3f}, the largest measured/estimated ratio so far)"
                return f"infeasible: {how} memory {expected:.0f} B > max_memory {self.memory_limit:.0f} B"
        return None

    def learn(self, measured: float, estimate: float) -> None:
        """Keep the largest measured/estimated memory ratio."""
        if estimate > 0:
            self.memory_ratio = max(self.memory_ratio or 0.0, measured / estimate)

    def learn_from(self, study: optuna.Study) -> None:
        """Start from the largest measured/estimated memory ratio of the stored trials (None before any)."""
        ratios = [m["memory"] / m["memory_estimate"] for t in study.get_trials(deepcopy=False)
                  if (m := t.user_attrs.get("measured") or {}).get("memory") and m.get("memory_estimate")]
        self.memory_ratio = max(ratios, default=None)


def random_feasible(space: SearchSpace, info: ModelInfo, budget: Budget, rng: np.random.Generator,
                    tries: int = 2000) -> dict[str, Any]:
    """Flat values of a random candidate that meets the hard budgets (rejection sampling; counting is cheap)."""
    for _ in range(tries):
        values = space.sample(rng)
        if budget.violation(Candidate.decode(space, info, values)) is None:
            return values
    raise ConfigError("no configuration in the search space meets the constraints",
                      "raise constraints.max_params / max_memory or allow smaller sizes")
