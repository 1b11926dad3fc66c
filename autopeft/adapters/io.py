"""Save and load adapter configurations and weights (autopeft format, plus a PEFT directory for LoRA-only).

A directory written by :func:`save_adapters` holds

* ``autopeft_adapters.json``        -- the (normalised) configuration, model type and autopeft version;
* ``autopeft_adapters.safetensors`` -- adapter and task-head weights only (when ``weights``);
* for LoRA-only configurations also ``adapter_config.json`` / ``adapter_model.safetensors``, a standard PEFT
  adapter that ``PeftModel.from_pretrained(base_model, directory)`` loads without autopeft (task type ``SEQ_CLS``
  with the head as a module to save; ``CAUSAL_LM`` for a ``*ForCausalLM``, which has no head to save).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._version import __version__
from ..errors import ConfigError
from ..models import ModelInfo, is_causal_lm, model_info
from . import apply_adapters, count_adapter_params, normalise_config
from .config import PEFTConfig

CONFIG_FILE = "autopeft_adapters.json"
WEIGHTS_FILE = "autopeft_adapters.safetensors"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
FORMAT_VERSION = 1


def autopeft_version() -> str:
    """The version that wrote an export (recorded in its files)."""
    return __version__


def adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters added by adapters: modules named ``autopeft_*`` and the adapter parts of PEFT LoRA layers."""
    from peft.tuners.lora import LoraLayer

    found: dict[str, nn.Parameter] = {}
    for name, param in model.named_parameters():
        if any(part.startswith("autopeft_") for part in name.split(".")):
            found[name] = param
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            for sub, param in module.named_parameters():
                if not sub.startswith("base_layer."):
                    found[f"{name}.{sub}"] = param
    return found


def head_parameters(model: nn.Module, info: ModelInfo) -> dict[str, nn.Parameter]:
    return {f"{head}.{n}": p for head in info.arch.head for n, p in model.get_submodule(head).named_parameters()}


def _saved_parameters(model: nn.Module, info: ModelInfo) -> dict[str, nn.Parameter]:
    return {**adapter_parameters(model), **head_parameters(model, info)}


def save_adapters(model: nn.Module, config: PEFTConfig, directory: str | Path, weights: bool = True) -> None:
    """Write ``config`` (and, when ``weights``, the adapter + head weights of ``model``) to ``directory``."""
    from safetensors.torch import save_file

    info = model_info(model)
    config = normalise_config(config, info)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "autopeft_version": autopeft_version(),
        "model_type": info.model_type,
        "model_name": getattr(model.config, "_name_or_path", "") or None,
        "config": config.to_dict(),
    }
    if weights:
        adapters = adapter_parameters(model)
        expected = count_adapter_params(config, info)
        found = sum(p.numel() for p in adapters.values())
        if found != expected:
            raise ConfigError(
                f"the model carries {found} adapter parameters but the configuration needs {expected}",
                "save the configuration that was applied to this model (apply_adapters), or pass weights=False",
            )
        tensors = {n: p.detach().cpu().contiguous() for n, p in _saved_parameters(model, info).items()}
        save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
    if [kind for kind, spec in config.modules.items() if spec.active] == ["lora"]:
        _save_peft_lora(model, config, info, out, weights)


def _save_peft_lora(model: nn.Module, config: PEFTConfig, info: ModelInfo, out: Path, weights: bool) -> None:
    """Write a standard PEFT adapter directory (config always, weights when asked) next to the autopeft files."""
    from safetensors.torch import save_file

    from .lora import lora_config_for

    # a causal LM has no task head (its LM head is pretrained and frozen): PeftModelForCausalLM, which generates
    causal = is_causal_lm(model)
    peft_config = lora_config_for(config.modules["lora"], info, task_type="CAUSAL_LM" if causal else "SEQ_CLS",
                                  modules_to_save=info.arch.head)
    peft_config.base_model_name_or_path = getattr(model.config, "_name_or_path", "") or None
    peft_config.save_pretrained(str(out))
    if not weights:
        return
    from peft import get_peft_model_state_dict

    if "default" not in getattr(model, "peft_config", {}):
        raise ConfigError("the model carries no LoRA adapter to export", "apply the configuration with apply_adapters first")
    # PEFT strips the adapter name from keys (and renames DoRA's magnitude); save_embedding_layers=False keeps it
    # from asking the Hub whether the vocabulary changed.
    lora_state = get_peft_model_state_dict(model, adapter_name="default", save_embedding_layers=False)
    # PeftModel names the wrapped model ``base_model.model``; the head is saved as a modules_to_save copy.
    state = {f"base_model.model.{k}": v for k, v in lora_state.items()}
    state.update({f"base_model.model.{k}": p for k, p in head_parameters(model, info).items()})
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(out / PEFT_WEIGHTS_FILE),
              metadata={"format": "pt"})


def read_adapter_config(directory: str | Path) -> tuple[PEFTConfig, dict[str, Any]]:
    """(configuration, metadata) stored in ``directory`` by :func:`save_adapters`."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"'{directory}' holds no {CONFIG_FILE}", "give a directory written by save_adapters")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} ({exc})", "write it again with save_adapters") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise ConfigError(f"{path} has no 'config' mapping", "write it again with save_adapters")
    return PEFTConfig.from_dict(meta["config"]), meta


def load_adapters(model: nn.Module, directory: str | Path) -> PEFTConfig:
    """Apply the configuration saved in ``directory`` to ``model`` and load its weights if present."""
    from safetensors.torch import load_file

    config, meta = read_adapter_config(directory)
    info = model_info(model)
    weights = Path(directory) / WEIGHTS_FILE
    saved_type = meta.get("model_type")
    if weights.is_file() and saved_type and saved_type != info.model_type:
        raise ConfigError(
            f"adapters in '{directory}' were trained on a '{saved_type}' model, not '{info.model_type}'",
            f"load them into a {saved_type} model",
        )
    config = normalise_config(config, info)
    apply_adapters(model, config)
    if weights.is_file():
        _load_weights(model, info, load_file(str(weights)), directory)
    return config


def _load_weights(model: nn.Module, info: ModelInfo, tensors: dict[str, torch.Tensor], directory: str | Path) -> None:
    params = _saved_parameters(model, info)
    missing = sorted(set(params) - set(tensors))
    unexpected = sorted(set(tensors) - set(params))
    if missing or unexpected:
        problem = []
        if missing:
            problem.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            problem.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise ConfigError(
            f"adapter weights in '{directory}' do not match its configuration: {'; '.join(problem)}",
            "load into the same model architecture the adapters were saved from",
        )
    with torch.no_grad():
        for name, param in params.items():
            value = tensors[name]
            if value.shape != param.shape:
                raise ConfigError(
                    f"weight '{name}' in '{directory}' has shape {tuple(value.shape)}, the model needs {tuple(param.shape)}",
                    "load into the same model (and number of labels) the adapters were saved from",
                )
            param.copy_(value)
