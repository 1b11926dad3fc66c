"""The decoded PEFT configuration: which adapter kinds, on which layers, at which sizes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import ModuleSpec
from .registry import get_adapter_kind


@dataclass(frozen=True)
class PEFTConfig:
    """A full decoded configuration: active adapter kinds, in no particular order."""

    modules: dict[str, ModuleSpec]

    def to_dict(self) -> dict[str, Any]:
        return {k: m.to_dict() for k, m in sorted(self.modules.items()) if m.active}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PEFTConfig":
        modules = {}
        for kind, body in (data or {}).items():
            get_adapter_kind(kind)
            spec = ModuleSpec.from_dict(kind, body or {})
            if spec.active:
                modules[kind] = spec
        return cls(modules)

    @property
    def kinds(self) -> list[str]:
        return sorted(self.modules)
