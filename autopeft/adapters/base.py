"""The adapter-kind interface and the per-kind module spec it consumes (the whole configuration: config.py).

A configuration names, per adapter kind, which layers carry the module and its size there
(size 0 = off, as in the AutoPEFT paper) plus kind-specific options. Each kind implements:

1. ``check(spec, info)``      -- raise :class:`ConfigError` for sizes/targets the model cannot take;
2. ``num_params(spec, info)`` -- the exact number of parameters it adds (analytic, no model needed);
3. ``attach(model, spec, info)`` -- add the modules to ``model`` in place and return the new
   parameters (they are trained; everything else but the task head is frozen by the caller).

Kinds are applied in ascending ``order`` (PEFT's LoRA replaces Linear modules, so it goes first and the
hook-based native adapters then attach to whatever module sits at the path).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from ..errors import ConfigError
from ..models import ModelInfo


@dataclass(frozen=True)
class ModuleSpec:
    """One adapter kind in a configuration: ``layers`` maps layer index -> size (only sizes > 0)."""

    kind: str
    layers: dict[int, int]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return any(size > 0 for size in self.layers.values())

    def to_dict(self) -> dict[str, Any]:
        """Readable form: ``{size: 8, layers: [0, 1]}`` when uniform, ``{layers: {0: 8, 1: 4}}`` otherwise."""
        sizes = set(self.layers.values())
        if len(sizes) == 1:
            body: dict[str, Any] = {"size": sizes.pop(), "layers": sorted(self.layers)}
        else:
            body = {"layers": {int(k): int(v) for k, v in sorted(self.layers.items())}}
        body.update(self.options)
        return body

    @classmethod
    def from_dict(cls, kind: str, body: dict[str, Any]) -> "ModuleSpec":
        body = dict(body)
        layers = body.pop("layers", None)
        size = body.pop("size", None)
        if isinstance(layers, dict):
            mapping = {_as_int(k, kind, "layer index"): _as_int(v, kind, "size") for k, v in layers.items()}
        else:
            if size is None or layers is None:
                raise ConfigError(f"adapter '{kind}' needs 'size' and 'layers'", "write e.g. {size: 8, layers: [0, 1]}")
            size = _as_int(size, kind, "size")
            mapping = {_as_int(i, kind, "layer index"): size for i in layers}
        return cls(kind, {i: s for i, s in mapping.items() if s > 0}, body)


def _as_int(value: Any, kind: str, what: str) -> int:
    """A non-negative integer size or layer index (negative sizes used to be dropped silently as 'off')."""
    try:
        number = int(value)
        ok = not isinstance(value, bool) and number == float(value)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{what} {value!r} for adapter '{kind}' is not an integer", "use a whole number >= 0")
    if number < 0:
        raise ConfigError(f"{what} {number} for adapter '{kind}' is negative", "use 0 (off) or more")
    return number


class AdapterKind(ABC):
    """One PEFT method. Subclasses set ``name``, ``size_name`` and ``options`` and implement 3 methods."""

    name: ClassVar[str]
    size_name: ClassVar[str]  # what the size is called in YAML: size | length | rank
    options: ClassVar[dict[str, Any]] = {}  # allowed option -> default
    order: ClassVar[int] = 100
    default_lr: ClassVar[float] = 1e-3  # proxy learning rate when neither the space nor the proxy sets one

    def normalise(self, spec: ModuleSpec) -> ModuleSpec:
        """Fill defaults and reject unknown options."""
        unknown = set(spec.options) - set(self.options)
        if unknown:
            raise ConfigError(
                f"unknown option(s) {sorted(unknown)} for adapter '{self.name}'",
                f"allowed: {sorted(self.options) or 'none'}",
            )
        return ModuleSpec(spec.kind, dict(spec.layers), {**self.options, **spec.options})

    def check_layers(self, spec: ModuleSpec, info: ModelInfo) -> None:
        for layer, size in spec.layers.items():
            if not 0 <= layer < info.num_layers:
                raise ConfigError(
                    f"layer index {layer} for adapter '{self.name}' is out of range",
                    f"the model has {info.num_layers} layers: use 0..{info.num_layers - 1}",
                )
            if size < 0:
                raise ConfigError(f"{self.size_name} {size} for adapter '{self.name}' is negative", "use 0 (off) or more")

    @abstractmethod
    def check(self, spec: ModuleSpec, info: ModelInfo) -> None:
        """Raise ConfigError if ``spec`` cannot be applied to a model described by ``info``."""

    @abstractmethod
    def num_params(self, spec: ModuleSpec, info: ModelInfo) -> int:
        """Exact number of parameters ``attach`` adds."""

    @abstractmethod
    def attach(self, model: nn.Module, spec: ModuleSpec, info: ModelInfo) -> list[nn.Parameter]:
        """Add the modules to ``model`` in place; return the new (trainable) parameters."""
