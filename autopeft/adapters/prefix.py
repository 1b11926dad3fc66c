"""Prefix tuning (Li & Liang 2021): learned key/value vectors prepended to self-attention in chosen layers.

transformers 5 routes BERT-family attention through ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``
with ``(module, query, key, value, attention_mask, ...)`` and (batch, heads, seq, head_dim) tensors. We
register one attention function, ``autopeft_prefix``, that prepends the prefix of ``module`` (if it carries
one) and then defers to transformers' own SDPA function; the mask builder registered under the same name is
SDPA's, so masks arrive exactly as for ``sdpa``. Layers without a prefix therefore compute what stock SDPA
computes.

Decoders (Llama family) go through the same function: the prefix has one key/value vector per key-value head
(grouped-query attention shares them between query heads, as transformers' SDPA call does), and since every
query may attend every prefix position, a causal model's mask is made explicit (causal over the real tokens, the
prefix columns open) where transformers would otherwise pass ``is_causal`` with no mask, which SDPA aligns to the
wrong corner once keys are longer than queries.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ..errors import ConfigError
from ..models import ModelInfo, get_layers
from .registry import register_adapter
from .base import AdapterKind, ModuleSpec

ATTN_IMPLEMENTATION = "autopeft_prefix"
PREFIX_ATTR = "autopeft_prefix"


class Prefix(nn.Module):
    """Key and value prefixes of one attention module, each (key-value heads, length, head_dim)."""

    def __init__(self, num_heads: int, length: int, head_dim: int, init_std: float = 0.02):
        super().__init__()
        self.key = nn.Parameter(torch.randn(num_heads, length, head_dim) * init_std)
        self.value = nn.Parameter(torch.randn(num_heads, length, head_dim) * init_std)

    @property
    def length(self) -> int:
        return self.key.shape[1]

    def extra_repr(self) -> str:
        heads, length, dim = self.key.shape
        return f"heads={heads}, length={length}, head_dim={dim}"


def _widen_mask(mask: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """Let every query attend to the ``length`` prefix positions prepended on the key axis."""
    if mask is None:
        return None
    shape = (*mask.shape[:-1], length)
    if mask.dtype == torch.bool:
        pad = torch.ones(shape, dtype=torch.bool, device=mask.device)
    else:  # additive float mask: 0 = attend
        pad = torch.zeros(shape, dtype=mask.dtype, device=mask.device)
    return torch.cat([pad, mask], dim=-1)


def _causal_mask_with_prefix(query: torch.Tensor, key_length: int, length: int) -> torch.Tensor:
    """(1, 1, q, length + key_length) bool mask: every query sees the prefix and the keys up to its own position
    (the last ``q`` keys are the queries' own; earlier ones come from a KV cache)."""
    q = query.shape[2]
    keep = torch.ones(q, length + key_length, dtype=torch.bool, device=query.device)
    return keep.tril(diagonal=length + key_length - q)[None, None]


def prefix_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """SDPA attention with ``module.autopeft_prefix`` (when present) prepended to keys and values."""
    prefix = getattr(module, PREFIX_ATTR, None)
    if isinstance(prefix, Prefix):
        batch, key_length = key.shape[0], key.shape[2]
        causal = kwargs.get("is_causal")
        causal = getattr(module, "is_causal", False) if causal is None else causal
        pk = prefix.key.to(dtype=key.dtype).unsqueeze(0).expand(batch, -1, -1, -1)
        pv = prefix.value.to(dtype=value.dtype).unsqueeze(0).expand(batch, -1, -1, -1)
        key = torch.cat([pk, key], dim=2)
        value = torch.cat([pv, value], dim=2)
        if attention_mask is None and causal:
            attention_mask = _causal_mask_with_prefix(query, key_length, prefix.length)
        else:
            attention_mask = _widen_mask(attention_mask, prefix.length)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(ATTN_IMPLEMENTATION, prefix_attention_forward)
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)


def use_prefix_attention(model: nn.Module) -> None:
    """Switch ``model`` (and its sub-models) to the prefix-aware attention function."""
    if getattr(model.config, "_attn_implementation", None) == ATTN_IMPLEMENTATION:
        return
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(ATTN_IMPLEMENTATION)
    if getattr(model.config, "_attn_implementation", None) != ATTN_IMPLEMENTATION:
        raise ConfigError(
            f"model type '{model.config.model_type}' does not let autopeft switch its attention function",
            "prefix tuning needs a model that uses transformers' AttentionInterface; drop 'prefix' from the configuration",
        )


@register_adapter
class PrefixTuning(AdapterKind):
    """Learned key/value prefixes of length ``l`` per chosen layer: 2 * l * kv_heads * head_dim parameters each
    (2 * l * hidden for multi-head attention)."""

    name = "prefix"
    size_name = "length"
    options = {"init_std": 0.02}
    default_lr = 5e-3  # prefixes without a reparametrising MLP learn slowly at adapter rates

    def check(self, spec: ModuleSpec, info: ModelInfo) -> None:
        std = spec.options["init_std"]
        if isinstance(std, bool) or not isinstance(std, (int, float)) or std < 0:
            raise ConfigError(f"init_std {std!r} for adapter 'prefix' is not a non-negative number", "use e.g. init_std: 0.02")
        if info.head_dim_ is None and info.hidden_size != info.num_heads * info.head_dim:
            raise ConfigError(
                f"hidden size {info.hidden_size} is not divisible by {info.num_heads} heads",
                "prefix tuning needs equal-sized heads",
            )

    def num_params(self, spec: ModuleSpec, info: ModelInfo) -> int:
        return sum(2 * length * info.kv_heads * info.head_dim for length in spec.layers.values() if length > 0)

    def attach(self, model: nn.Module, spec: ModuleSpec, info: ModelInfo) -> list[nn.Parameter]:
        layers = get_layers(model, info.arch)
        params: list[nn.Parameter] = []
        for idx, length in sorted(spec.layers.items()):
            if length <= 0:
                continue
            attention = layers[idx].get_submodule(info.arch.self_attention)
            if hasattr(attention, PREFIX_ATTR):
                raise ConfigError(f"layer {idx} already carries a prefix", "apply a configuration to a fresh model")
            prefix = Prefix(info.kv_heads, length, info.head_dim, float(spec.options["init_std"]))
            ref = next(p for p in attention.parameters() if p.is_floating_point())
            prefix.to(device=ref.device, dtype=ref.dtype)
            attention.add_module(PREFIX_ATTR, prefix)
            params.extend(prefix.parameters())
        if params:
            use_prefix_attention(model)
        return params
