"""Adapter kinds behind one registry, and the functions that put a configuration on a model."""
from __future__ import annotations

from typing import Iterable

from torch import nn

from ..models import ModelInfo, model_info
from .base import AdapterKind, ModuleSpec
from .config import PEFTConfig
from .registry import adapter_kinds, get_adapter_kind, register_adapter

def normalise_config(config: PEFTConfig, info: ModelInfo) -> PEFTConfig:
    """Fill defaults and check every module against the model; raise ConfigError on the first problem."""
    modules = {}
    for kind, spec in config.modules.items():
        adapter = get_adapter_kind(kind)
        spec = adapter.normalise(spec)
        adapter.check_layers(spec, info)
        adapter.check(spec, info)
        modules[kind] = spec
    return PEFTConfig(modules)


def count_adapter_params(config: PEFTConfig, info: ModelInfo) -> int:
    """Analytic number of parameters the configuration adds (task head excluded)."""
    config = normalise_config(config, info)
    return sum(get_adapter_kind(k).num_params(s, info) for k, s in config.modules.items())


def _ordered(config: PEFTConfig) -> Iterable[tuple[AdapterKind, ModuleSpec]]:
    pairs = [(get_adapter_kind(k), s) for k, s in config.modules.items()]
    return sorted(pairs, key=lambda p: (p[0].order, p[0].name))


def apply_adapters(model: nn.Module, config: PEFTConfig, train_head: bool = True) -> list[nn.Parameter]:
    """Put ``config`` on ``model`` in place, freeze the rest, return the adapter parameters.

    Only adapter parameters and (when ``train_head``) the task head keep ``requires_grad``.
    """
    return [p for params in apply_adapters_by_kind(model, config, train_head).values() for p in params]


def apply_adapters_by_kind(model: nn.Module, config: PEFTConfig,
                           train_head: bool = True) -> dict[str, list[nn.Parameter]]:
    """Like :func:`apply_adapters`, with the new parameters grouped by adapter kind (for per-kind rates)."""
    info = model_info(model)
    config = normalise_config(config, info)
    for p in model.parameters():
        p.requires_grad_(False)
    groups: dict[str, list[nn.Parameter]] = {}
    for adapter, spec in _ordered(config):
        new = adapter.attach(model, spec, info)
        for p in new:
            p.requires_grad_(True)
        groups.setdefault(adapter.name, []).extend(new)
    if train_head:
        for name in info.arch.head:
            for p in model.get_submodule(name).parameters():
                p.requires_grad_(True)
    return groups


from . import bottleneck, lora, prefix  # noqa: E402,F401  (importing them registers the built-in kinds)

__all__ = [
    "AdapterKind",
    "ModuleSpec",
    "PEFTConfig",
    "register_adapter",
    "get_adapter_kind",
    "adapter_kinds",
    "normalise_config",
    "count_adapter_params",
    "apply_adapters",
    "apply_adapters_by_kind",
]
