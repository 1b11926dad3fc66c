"""The proxy trainer of a study's task: :class:`~autopeft.proxy.ProxyTrainer` (classification, regression) or
:class:`~autopeft.causal_lm.CausalLMTrainer`. Here, above both, so that neither module imports the other back."""
from __future__ import annotations

from .config import StudyConfig, TrainerConfig
from .proxy import ProxyTrainer


def make_trainer(cfg: TrainerConfig | StudyConfig) -> ProxyTrainer:
    """The proxy trainer of the task (causal_lm has its own, in autopeft/causal_lm.py); ``cfg`` is what
    StudyConfig.trainer_config() makes (a whole study is taken too)."""
    if cfg.task.type == "causal_lm":
        from .causal_lm import CausalLMTrainer

        return CausalLMTrainer(cfg)
    return ProxyTrainer(cfg)
