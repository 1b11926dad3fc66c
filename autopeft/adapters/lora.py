"""LoRA (and its DoRA / rsLoRA variants) through PEFT, with per-layer ranks.

The PEFT config is built by :func:`lora_config_for` and injected with ``peft.inject_adapter_in_model`` (no
``PeftModel`` wrapper), so the same config can be exported as a standard PEFT adapter directory.

PEFT matching details (peft 0.21, ``check_target_module_exists`` / ``get_pattern_key``) this relies on:

* a ``target_modules`` list entry ``t`` matches every module whose name ends with ``"." + t``. In BERT the
  FFN output ``output.dense`` is therefore also a suffix of ``attention.output.dense``; such unintended
  matches are removed with ``exclude_modules`` (also a suffix match).
* ``rank_pattern`` / ``alpha_pattern`` keys are regexes matched as ``(.*\\.)?(key)$`` against the full module
  name. Keys here are ``re.escape("layer.<i>.<path>")``, so each hits exactly one module.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Sequence

from torch import nn

from ..errors import ConfigError, suggest
from ..models import MODULE_ALIASES, ModelInfo
from .registry import register_adapter
from .base import AdapterKind, ModuleSpec

VARIANTS = ("lora", "dora", "rslora")


#: target shorthand for every linear module of a layer (PEFT's "all-linear" recipe, without the head)
ALL_LINEAR = "all-linear"


def resolve_targets(targets: Any, info: ModelInfo) -> list[str]:
    """Logical module names for ``targets`` (logical names, aliases, layer-relative paths or their last part;
    ``all-linear`` for every linear module of the layer)."""
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    if isinstance(targets, (list, tuple)) and ALL_LINEAR in targets:
        return list(info.arch.modules)
    if not isinstance(targets, (list, tuple)) or not targets:
        raise ConfigError(f"lora targets {targets!r} must be a non-empty list", "write e.g. targets: [query, value]")
    modules = info.arch.modules
    by_path = {path: logical for logical, path in modules.items()}
    last = {logical: path.rsplit(".", 1)[-1] for logical, path in modules.items()}
    counts = Counter(last.values())
    by_last = {part: logical for logical, part in last.items() if counts[part] == 1}  # 'dense' is ambiguous
    resolved: list[str] = []
    for target in targets:
        name = str(target)
        logical = (
            name if name in modules
            else MODULE_ALIASES.get(name) or by_path.get(name) or by_last.get(name)
        )
        if logical not in modules:
            raise ConfigError(
                f"unknown lora target '{name}' for model type '{info.model_type}'",
                suggest(name, [*modules, *MODULE_ALIASES, *modules.values()], "valid targets", always=True,
                        listed=f"{', '.join(modules)}, {ALL_LINEAR} (aliases: {', '.join(MODULE_ALIASES)}; "
                               f"or module paths such as '{modules['query']}')"),
            )
        if logical not in resolved:
            resolved.append(logical)
    return resolved


def _rank_layout(spec: ModuleSpec) -> tuple[int, dict[int, int]]:
    """(default rank = the most common one, {layer: rank} for the layers that differ)."""
    ranks = {layer: r for layer, r in spec.layers.items() if r > 0}
    if not ranks:
        raise ConfigError("lora has no layer with a rank above 0", "give at least one layer a rank, or drop 'lora'")
    counts = Counter(ranks.values())
    default = max(counts, key=lambda r: (counts[r], r))
    return default, {layer: r for layer, r in sorted(ranks.items()) if r != default}


def _alpha(ratio: float, rank: int) -> float | int:
    alpha = float(ratio) * rank
    return int(alpha) if alpha.is_integer() else alpha


def lora_config_for(
    spec: ModuleSpec,
    info: ModelInfo,
    task_type: str | None = "SEQ_CLS",
    modules_to_save: Sequence[str] | None = None,
):
    """The ``peft.LoraConfig`` equivalent of a ``lora`` ModuleSpec (per-layer ranks via rank/alpha patterns).

    ``modules_to_save`` is left empty for in-place injection (autopeft trains the head itself); pass the
    head modules when exporting a PEFT adapter directory.
    """
    from peft import LoraConfig

    kind = LoRA()
    spec = kind.normalise(spec)
    kind.check_layers(spec, info)
    kind.check(spec, info)
    options = spec.options
    target_paths = {info.arch.modules[logical] for logical in resolve_targets(options["targets"], info)}
    layers_pattern = info.arch.layers.rsplit(".", 1)[-1]
    default, special = _rank_layout(spec)
    ratio = options["alpha_ratio"]
    exclude = sorted(
        other for other in info.arch.modules.values()
        if other not in target_paths and any(other.endswith("." + t) for t in target_paths)
    )
    rank_pattern: dict[str, int] = {}
    alpha_pattern: dict[str, float | int] = {}
    for layer, rank in special.items():
        for path in sorted(target_paths):
            key = re.escape(f"{layers_pattern}.{layer}.{path}")
            rank_pattern[key] = rank
            alpha_pattern[key] = _alpha(ratio, rank)
    variant = options["variant"]
    return LoraConfig(
        task_type=task_type,
        r=default,
        lora_alpha=_alpha(ratio, default),
        lora_dropout=float(options["dropout"]),
        target_modules=sorted(target_paths),
        exclude_modules=exclude or None,
        layers_to_transform=sorted(layer for layer, r in spec.layers.items() if r > 0),
        layers_pattern=layers_pattern,
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
        use_dora=variant == "dora",
        use_rslora=variant == "rslora",
        modules_to_save=list(modules_to_save) if modules_to_save else None,
        bias="none",
    )


@register_adapter
class LoRA(AdapterKind):
    """Low-rank updates ``B A`` on the target linear modules of the chosen layers (rank per layer)."""

    name = "lora"
    size_name = "rank"
    options = {"alpha_ratio": 2, "targets": ["query", "value"], "dropout": 0.0, "variant": "lora"}
    order = 10  # PEFT replaces Linear modules; hook-based kinds must attach to the replacements

    def check(self, spec: ModuleSpec, info: ModelInfo) -> None:
        options = spec.options
        if options["variant"] not in VARIANTS:
            raise ConfigError(f"lora variant '{options['variant']}' is not supported", f"use one of: {', '.join(VARIANTS)}")
        ratio, dropout = options["alpha_ratio"], options["dropout"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio <= 0:
            raise ConfigError(f"lora alpha_ratio {ratio!r} must be a positive number", "use e.g. alpha_ratio: 2")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ConfigError(f"lora dropout {dropout!r} must be in [0, 1)", "use e.g. dropout: 0.1")
        targets = resolve_targets(options["targets"], info)
        for layer, rank in sorted(spec.layers.items()):
            for logical in targets:
                fan_in, fan_out = info.module_shape(logical)
                if rank > min(fan_in, fan_out):
                    raise ConfigError(
                        f"lora rank {rank} in layer {layer} is larger than the layer '{logical}' ({fan_in} x {fan_out})",
                        f"use a rank <= {min(fan_in, fan_out)}",
                    )

    def num_params(self, spec: ModuleSpec, info: ModelInfo) -> int:
        targets = resolve_targets(spec.options.get("targets", self.options["targets"]), info)
        dora = spec.options.get("variant") == "dora"
        total = 0
        for rank in spec.layers.values():
            if rank <= 0:
                continue
            for logical in targets:
                fan_in, fan_out = info.module_shape(logical)
                total += rank * (fan_in + fan_out) + (fan_out if dora else 0)  # DoRA: magnitude per output
        return total

    def attach(self, model: nn.Module, spec: ModuleSpec, info: ModelInfo) -> list[nn.Parameter]:
        from peft import inject_adapter_in_model
        from peft.tuners.lora import LoraLayer

        if not spec.active:
            return []
        inject_adapter_in_model(lora_config_for(spec, info, task_type=None), model)
        targets = resolve_targets(spec.options["targets"], info)
        wanted = {info.module_path(layer, logical) for layer, r in spec.layers.items() if r > 0 for logical in targets}
        wrapped = {name for name, module in model.named_modules() if isinstance(module, LoraLayer)}
        if wrapped != wanted:  # PEFT matches names by suffix; a mismatch would silently train the wrong modules
            raise RuntimeError(f"PEFT wrapped {sorted(wrapped ^ wanted)} contrary to the LoRA configuration")
        params: list[nn.Parameter] = []
        for path in sorted(wanted):
            module = model.get_submodule(path)
            params.extend(p for n, p in module.named_parameters() if not n.startswith("base_layer."))
        return params
