"""The ``causal_lm`` task: instruction tuning of a decoder LM on prompt/response pairs, scored by the validation
loss, its perplexity (both minimised) or exact match of a regex-extracted answer in greedy generations.

:class:`CausalLMTrainer` is the proxy of this task: the same training loop as :class:`~autopeft.proxy.ProxyTrainer`
(fresh copy per trial, per-kind rates, the memory objective), fed instruction batches whose loss covers the
response tokens only (see :mod:`autopeft.instructions`). The model is the decoder's ``*ForCausalLM``: no task head
(its LM head is pretrained, often tied to the embeddings, and stays frozen). Not yet: the activation cache (every
trial runs all layers), MO-ASHA rungs, and exporting a pick.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .config import ProxyConfig, StudyConfig
from .data import TaskData, load_split
from .instructions import (IGNORE_INDEX, InstructionSplit, answer_pattern, encode_instructions, exact_match,
                           greedy_generations, iter_instruction_batches)
from .models import load_causal_lm, model_info
from .proxy import ProxyTrainer, resolve_device

#: causal_lm metric -> the direction of the score objective
LM_METRICS: dict[str, str] = {"loss": "minimize", "perplexity": "minimize", "exact_match": "maximize"}


def score_direction(task_type: str, metric: str | None) -> str:
    """Direction of the ``score`` objective for a task: minimise for loss and perplexity, else maximise."""
    if task_type == "causal_lm":
        return LM_METRICS[metric or "loss"]
    return "maximize"


class CausalLMTrainer(ProxyTrainer):
    """Holds the causal LM, tokenizer and instruction data once; ``run`` trains one candidate on a copy."""

    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        if cfg.proxy.threads:
            torch.set_num_threads(cfg.proxy.threads)
        train = load_split(cfg.task.data, "train", cfg.base_dir)
        validation = load_split(cfg.task.data, "validation", cfg.base_dir)
        self.task = TaskData(train, validation, None, 0, [], [], False)
        self.metric_name = cfg.task.metric or "loss"
        self.model, self.tokenizer = load_causal_lm(cfg.model)
        self.model.eval()
        self.info = model_info(self.model)
        self.train = encode_instructions(train.texts, train.labels, self.tokenizer, cfg.proxy.max_length)
        self.validation = encode_instructions(validation.texts, validation.labels, self.tokenizer, cfg.proxy.max_length)
        if cfg.proxy.eval_examples:
            self.validation = self.validation.subset(cfg.proxy.eval_examples, cfg.seed)
        self.pad_id = self.tokenizer.pad_token_id
        self.pattern = answer_pattern(cfg.task.answer_pattern) if self.metric_name == "exact_match" else None
        self.activations = None
        # The worst score a search should reach: what the model scores before any training (loss, perplexity);
        # exact match cannot be worse than 0.
        self.chance = 0.0 if self.pattern else self.evaluate(self.model)

    def _cached_inputs(self, train: InstructionSplit, n: int, seed: int, k: int, proxy: ProxyConfig):
        return None  # not yet: per-token labels beside cached states

    def _batches(self, split: InstructionSplit, cached, batch_size: int, shuffle: bool, seed: int, validation=False):
        return iter_instruction_batches(split, batch_size, self.pad_id, shuffle=shuffle, seed=seed)

    @torch.no_grad()
    def evaluate_with_loss(self, model: nn.Module, split: InstructionSplit | None = None, cached=None,
                           proxy: ProxyConfig | None = None) -> tuple[float, float]:
        """The task metric and the mean loss per response token on the validation split (or ``split``)."""
        split = split or self.validation
        was_training = model.training
        model.eval()
        total, tokens = 0.0, 0
        with self.autocast(proxy):
            for batch in iter_instruction_batches(split, 16, self.pad_id, shuffle=False, seed=0):
                batch = self._to(batch)
                n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())  # the model predicts token t+1 from t
                total += float(model(**batch).loss.float()) * n
                tokens += n
        loss = total / max(tokens, 1)
        if self.metric_name == "loss":
            score = loss
        elif self.metric_name == "perplexity":
            score = math.exp(min(loss, 700.0))
        else:
            rows = list(range(min(self.cfg.task.generate_examples, len(split))))
            generated = greedy_generations(model, self.tokenizer, split, rows, self.cfg.task.max_new_tokens)
            score = exact_match(generated, [split.responses[i] for i in rows], self.pattern)
        model.train(was_training)
        return float(score), float(loss)

    def logits(self, *args: Any, **kwargs: Any):
        raise NotImplementedError("a causal LM has no class logits")
