"""Frozen-prefix activation cache: hidden states entering layer k, computed once, reused by every trial.

When the lowest adapted layer of a configuration is k, layers 0..k-1 are frozen and see no adapter, so
their output does not depend on the trial. It is computed once per split (no grad, dropout off) and
each trial then runs only layers k..L-1 and the head on it (``start_at_layer``).

The stored states are each layer's own output (caught by forward hooks), not ``output_hidden_states``: a
decoder's last hidden state comes after its final norm, which the tail run applies again. Decoders also need
the token ids beside the cached states (their head pools the last token that is not padding): cached batches
carry them and, inside ``start_at_layer``, the base model drops them when states are given. Positions (rotary)
and the causal mask are derived from the attention mask and the sequence length, as in a full run.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from .batches import EncodedSplit, iter_batches
from .models import ModelInfo

logger = logging.getLogger(__name__)


class _PassThrough(nn.Module):
    """Stands in for the embedding module: returns the hidden states given as ``inputs_embeds``."""

    def forward(self, *args, **kwargs) -> torch.Tensor:
        x = kwargs.get("inputs_embeds")
        if x is None:
            x = next(a for a in args if torch.is_tensor(a) and a.is_floating_point())
        return x


@contextmanager
def start_at_layer(model: nn.Module, info: ModelInfo, k: int) -> Iterator[nn.Module]:
    """Within the block, ``model(inputs_embeds=h_k, attention_mask=m)`` runs layers k.. and the head only."""
    layers_parent, _, layers_name = info.arch.layers.rpartition(".")
    emb_parent, _, emb_name = info.arch.embeddings.rpartition(".")
    lp, ep = model.get_submodule(layers_parent), model.get_submodule(emb_parent)
    layers, embeddings = getattr(lp, layers_name), getattr(ep, emb_name)
    setattr(lp, layers_name, nn.ModuleList(list(layers)[k:]))
    setattr(ep, emb_name, _PassThrough())
    hook = model.base_model.register_forward_pre_hook(_ids_only_for_pooling, with_kwargs=True) \
        if info.arch.decoder else None
    try:
        yield model
    finally:
        setattr(lp, layers_name, layers)
        setattr(ep, emb_name, embeddings)
        if hook is not None:
            hook.remove()


def _ids_only_for_pooling(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook of a decoder's base model: given cached states, drop the token ids (the head used them)."""
    if kwargs.get("inputs_embeds") is None:
        return args, kwargs
    kwargs.pop("input_ids", None)
    return tuple(None if i == 0 else a for i, a in enumerate(args)), kwargs


@dataclass
class _Packed:
    """Hidden states of every row of a split at one layer, packed without padding."""

    states: torch.Tensor  # (total_tokens, hidden)
    offsets: list[int]  # row i is states[offsets[i]:offsets[i + 1]]
    with_ids: bool = False  # batches carry the token ids too (decoders pool the last non-pad token)

    def batch(self, rows: list[int], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        pieces = [self.states[self.offsets[i]:self.offsets[i + 1]] for i in rows]
        width = max(len(p) for p in pieces)
        out = torch.zeros(len(rows), width, self.states.shape[1], dtype=dtype)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for r, p in enumerate(pieces):
            out[r, :len(p)] = p
            mask[r, :len(p)] = 1
        return out, mask


class ActivationCache:
    """Per (split, layer) hidden states under a byte budget (fp32; a split that does not fit is not cached)."""

    def __init__(self, model: nn.Module, info: ModelInfo, pad_id: int, budget_bytes: int):
        self.model, self.info, self.pad_id, self.budget = model, info, pad_id, budget_bytes
        self._store: dict[tuple[str, int], _Packed] = {}
        self._skipped: set[str] = set()
        self.bytes = 0

    def get(self, key: str, split: EncodedSplit, k: int) -> _Packed | None:
        """Hidden states entering layer ``k`` for ``split`` (named ``key``), or None if over budget."""
        if k == 0 or key in self._skipped:
            return None
        if (key, k) not in self._store:
            self._fill(key, split)
        return self._store.get((key, k))

    @torch.no_grad()
    def _fill(self, key: str, split: EncodedSplit) -> None:
        """One forward pass stores every layer's input for this split (each costs the same pass)."""
        tokens = sum(split.lengths)
        per_layer = tokens * self.info.hidden_size
        levels = self.info.num_layers  # inputs of layers 1..L-1 plus the final output (head-only configs)
        free = self.budget - self.bytes
        # fp32 or nothing: a lower-precision copy would give cached trials other numbers than uncached ones
        if per_layer * 4 * levels <= free:
            dtype = torch.float32
        else:
            logger.info("activation cache for %s skipped: %.0f MB over the budget", key, per_layer * 4 * levels / 1e6)
            self._skipped.add(key)
            return
        was_training = self.model.training
        self.model.eval()
        packed = [torch.empty(tokens, self.info.hidden_size, dtype=dtype) for _ in range(levels)]
        offsets = [0]
        for n in split.lengths:
            offsets.append(offsets[-1] + n)
        hidden: list[torch.Tensor] = []  # hidden[j]: output of layer j, which enters layer j+1

        def catch(module: nn.Module, inputs: tuple, output) -> None:
            hidden.append(output[0] if isinstance(output, tuple) else output)

        hooks = [layer.register_forward_hook(catch) for layer in self.model.get_submodule(self.info.arch.layers)]
        try:
            for batch in iter_batches(split, 64, self.pad_id, shuffle=False, seed=0, with_index=True):
                rows = batch.pop("index").tolist()
                batch.pop("labels")
                hidden.clear()
                self.model(**batch)
                for level in range(levels):
                    for r, i in enumerate(rows):
                        packed[level][offsets[i]:offsets[i + 1]] = hidden[level][r, :split.lengths[i]]
        finally:
            for hook in hooks:
                hook.remove()
        self.model.train(was_training)
        for level in range(levels):
            self._store[(key, level + 1)] = _Packed(packed[level], offsets, self.info.arch.decoder)
        self.bytes += sum(p.numel() * p.element_size() for p in packed)
        logger.debug("activation cache for %s: %d layers, %.1f MB (%s)", key, levels, self.bytes / 1e6, dtype)


def cached_batches(packed: _Packed, split: EncodedSplit, batch_size: int, pad_id: int, shuffle: bool, seed: int,
                   dtype: torch.dtype = torch.float32) -> Iterator[dict[str, torch.Tensor]]:
    """Like ``iter_batches`` (same order for a seed) but yielding cached hidden states as ``inputs_embeds``
    (plus the padded token ids for a decoder's head, which finds the last non-pad token with them)."""
    for batch in iter_batches(split, batch_size, pad_id, shuffle=shuffle, seed=seed, with_index=True):
        rows = batch["index"].tolist()
        states, mask = packed.batch(rows, dtype)
        out = {"inputs_embeds": states, "attention_mask": mask, "labels": batch["labels"]}
        if packed.with_ids:
            out["input_ids"] = batch["input_ids"]
        yield out
