"""The one registry of adapter kinds: each kind module registers its class with :func:`register_adapter`."""
from __future__ import annotations

from ..errors import ConfigError, suggest
from .base import AdapterKind

_REGISTRY: dict[str, AdapterKind] = {}


def register_adapter(cls: type[AdapterKind]) -> type[AdapterKind]:
    """Class decorator: make an adapter kind available by ``cls.name`` (duplicates are refused)."""
    if cls.name in _REGISTRY:
        raise ValueError(f"adapter kind '{cls.name}' is already registered")
    _REGISTRY[cls.name] = cls()
    return cls


def get_adapter_kind(name: str) -> AdapterKind:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown adapter kind '{name}'",
                          suggest(name, sorted(_REGISTRY), "known kinds", always=True)) from None


def adapter_kinds() -> list[str]:
    return sorted(_REGISTRY)
