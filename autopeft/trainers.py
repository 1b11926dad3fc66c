"""The proxy trainer of a study's task: :class:`~autopeft.proxy.ProxyTrainer` (classification, regression) or
:class:`~autopeft.causal_lm.CausalLMTrainer`. Here, above both, so that neither module imports the other back."""
from __future__ import annotations

from .config import StudyConfig
from .proxy import ProxyTrainer


def make_trainer(cfg: StudyConfig) -> ProxyTrainer:
    """The proxy trainer of the study's task (causal_lm has its own, in autopeft/causal_lm.py)."""
    if cfg.task.type == "causal_lm":
        from .causal_lm import CausalLMTrainer

        return CausalLMTrainer(cfg)
    return ProxyTrainer(cfg)
