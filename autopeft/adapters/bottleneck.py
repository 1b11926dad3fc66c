"""Bottleneck adapters: serial (Houlsby et al. 2019) and parallel (He et al. 2022).

Both are attached with forward hooks on the existing linear modules instead of replacing them, so module
paths (which PEFT targets by name) stay unchanged. The adapter modules are registered as children of the
transformer layer (``autopeft_serial_ffn``, ``autopeft_serial_attention``, ``autopeft_parallel``), which
gives their parameters stable names in ``named_parameters()`` and ``state_dict()``.

Hooks are bound methods of the adapter modules rather than closures: ``copy.deepcopy`` of a model then
re-binds them to the copied adapters (closures would keep pointing at the originals).
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import nn

from ..errors import ConfigError
from ..models import ModelInfo, get_layers
from .registry import register_adapter
from .base import AdapterKind, ModuleSpec

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}
POSITIONS = ("ffn", "attention", "both")


class Bottleneck(nn.Module):
    """down (h -> m) -> activation -> up (m -> h); ``up`` starts at zero so the adapter starts as a no-op."""

    def __init__(self, hidden: int, size: int, activation: str = "relu", scaling: float = 1.0):
        super().__init__()
        self.down = nn.Linear(hidden, size)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(size, hidden)
        self.scaling = float(scaling)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self._captured: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))

    def extra_repr(self) -> str:
        return f"scaling={self.scaling}" if self.scaling != 1.0 else ""

    # Serial: y = out + f(out), registered as a forward hook on the sub-layer's output projection.
    def serial_hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return output + self.scaling * self(output)

    # Parallel: the FFN input is captured before ``ffn_in`` runs and consumed after ``ffn_out``.
    def capture_hook(self, module: nn.Module, inputs: tuple) -> None:
        self._captured = inputs[0]

    def parallel_hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        x, self._captured = self._captured, None
        if x is None:  # ffn_out called without ffn_in (should not happen in supported models)
            raise RuntimeError("parallel adapter: the FFN input was not captured before its output projection")
        return output + self.scaling * self(x)


def _check_size(kind: AdapterKind, spec: ModuleSpec, info: ModelInfo) -> None:
    for layer, size in sorted(spec.layers.items()):
        if size > info.hidden_size:
            raise ConfigError(
                f"{kind.name} adapter size {size} in layer {layer} is larger than the hidden size {info.hidden_size}",
                f"use a size <= {info.hidden_size}",
            )


def _check_choice(kind: AdapterKind, spec: ModuleSpec, option: str, allowed: tuple[str, ...]) -> None:
    value = spec.options[option]
    if value not in allowed:
        raise ConfigError(f"{option} '{value}' for adapter '{kind.name}' is not supported", f"use one of: {', '.join(allowed)}")


def _add_child(layer: nn.Module, name: str, module: nn.Module, layer_idx: int) -> None:
    if hasattr(layer, name):
        raise ConfigError(f"layer {layer_idx} already carries an adapter '{name}'", "apply a configuration to a fresh model")
    layer.add_module(name, module)


def _match_device(adapter: nn.Module, like: nn.Module) -> None:
    """Put ``adapter`` on the device and floating dtype of ``like`` (hooks mix their tensors directly)."""
    ref = next((p for p in like.parameters() if p.is_floating_point()), None)
    if ref is not None:
        adapter.to(device=ref.device, dtype=ref.dtype)


def _active_layers(model: nn.Module, spec: ModuleSpec, info: ModelInfo) -> Iterator[tuple[int, int, nn.Module]]:
    """(layer index, adapter size, layer module) for every layer the spec gives a size > 0, in layer order."""
    layers = get_layers(model, info.arch)
    for idx, size in sorted(spec.layers.items()):
        if size > 0:
            yield idx, size, layers[idx]


def _bottleneck_params(hidden: int, size: int) -> int:
    return 2 * hidden * size + size + hidden


@register_adapter
class SerialAdapter(AdapterKind):
    """Houlsby-style serial adapter after the FFN and/or attention output projection."""

    name = "serial"
    size_name = "size"
    options = {"position": "ffn", "activation": "relu"}

    def check(self, spec: ModuleSpec, info: ModelInfo) -> None:
        _check_choice(self, spec, "position", POSITIONS)
        _check_choice(self, spec, "activation", tuple(ACTIVATIONS))
        _check_size(self, spec, info)

    @staticmethod
    def _sites(spec: ModuleSpec) -> list[tuple[str, str]]:
        """(child attribute name, logical module whose output is adapted) for the chosen position."""
        position = spec.options.get("position", "ffn")
        sites = []
        if position in ("attention", "both"):
            sites.append(("autopeft_serial_attention", "attn_out"))
        if position in ("ffn", "both"):
            sites.append(("autopeft_serial_ffn", "ffn_out"))
        return sites

    def num_params(self, spec: ModuleSpec, info: ModelInfo) -> int:
        per_site = sum(_bottleneck_params(info.hidden_size, m) for m in spec.layers.values() if m > 0)
        return per_site * len(self._sites(spec))

    def attach(self, model: nn.Module, spec: ModuleSpec, info: ModelInfo) -> list[nn.Parameter]:
        params: list[nn.Parameter] = []
        for idx, size, layer in _active_layers(model, spec, info):
            for child, logical in self._sites(spec):
                adapter = Bottleneck(info.hidden_size, size, spec.options["activation"])
                target = layer.get_submodule(info.arch.modules[logical])
                _match_device(adapter, target)
                _add_child(layer, child, adapter, idx)
                target.register_forward_hook(adapter.serial_hook)
                params.extend(adapter.parameters())
        return params


@register_adapter
class ParallelAdapter(AdapterKind):
    """Parallel adapter beside the FFN: reads the FFN input, adds ``scaling * f(x)`` to the FFN output."""

    name = "parallel"
    size_name = "size"
    options = {"scaling": 4.0, "activation": "relu"}

    def check(self, spec: ModuleSpec, info: ModelInfo) -> None:
        _check_choice(self, spec, "activation", tuple(ACTIVATIONS))
        scaling = spec.options["scaling"]
        if isinstance(scaling, bool) or not isinstance(scaling, (int, float)):
            raise ConfigError(f"scaling {scaling!r} for adapter 'parallel' is not a number", "use e.g. scaling: 4.0")
        _check_size(self, spec, info)

    def num_params(self, spec: ModuleSpec, info: ModelInfo) -> int:
        return sum(_bottleneck_params(info.hidden_size, m) for m in spec.layers.values() if m > 0)

    def attach(self, model: nn.Module, spec: ModuleSpec, info: ModelInfo) -> list[nn.Parameter]:
        params: list[nn.Parameter] = []
        for idx, size, layer in _active_layers(model, spec, info):
            adapter = Bottleneck(info.hidden_size, size, spec.options["activation"], spec.options["scaling"])
            ffn_in = layer.get_submodule(info.arch.modules["ffn_in"])
            ffn_out = layer.get_submodule(info.arch.modules["ffn_out"])
            _match_device(adapter, ffn_out)
            _add_child(layer, "autopeft_parallel", adapter, idx)
            ffn_in.register_forward_pre_hook(adapter.capture_hook)
            ffn_out.register_forward_hook(adapter.parallel_hook)
            params.extend(adapter.parameters())
        return params
