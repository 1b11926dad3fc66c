"""The ``causal_lm`` task: instruction tuning of a decoder LM on prompt/response pairs, scored by the validation
loss, its perplexity (both minimised) or exact match of a regex-extracted answer in greedy generations.

:class:`CausalLMTrainer` is the proxy of this task: the same training loop as :class:`~autopeft.proxy.ProxyTrainer`
(fresh copy per trial, per-kind rates, the memory objective), fed instruction batches whose loss covers the
response tokens only (see :mod:`autopeft.instructions`). The model is the decoder's ``*ForCausalLM``: no task head
(its LM head is pretrained, often tied to the embeddings, and stays frozen). Not yet: the activation cache (every
trial runs all layers) and MO-ASHA rungs. A LoRA-only pick is exported (autopeft/export.py) as a ``CAUSAL_LM`` PEFT
adapter.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .adapters import PEFTConfig
from .config import LM_METRICS, ProxyConfig, StudyConfig, TrainerConfig, trainer_config
from .data import TaskData, load_raw_splits
from .instructions import (IGNORE_INDEX, InstructionSplit, answer_pattern, encode_instructions, exact_match,
                           greedy_generations, iter_instruction_batches)
from .models import load_causal_lm, model_info
from .errors import OverBudget
from .memory import measure_step_memory
from .proxy import ProxyResult, ProxyTrainer, resolve_device

def score_direction(task_type: str, metric: str | None) -> str:
    """Direction of the ``score`` objective for a task: minimise for loss and perplexity, else maximise."""
    if task_type == "causal_lm":
        return LM_METRICS[metric or "loss"]
    return "maximize"


class CausalLMTrainer(ProxyTrainer):
    """Holds the causal LM, tokenizer and instruction data once; ``run`` trains one candidate on a copy."""

    def __init__(self, cfg: TrainerConfig | StudyConfig):
        self.cfg = cfg = trainer_config(cfg)
        self.on_step = None  # see ProxyTrainer: the study's live progress line
        self.device = resolve_device(cfg.device)
        if cfg.proxy.threads:
            torch.set_num_threads(cfg.proxy.threads)
        # the same readers as the other tasks: files or a datasets source, shares split off train, a test split
        raw, origin = load_raw_splits(cfg.task.data, cfg.task.type, cfg.base_dir)
        train, validation, test = raw["train"], raw["validation"], raw.get("test")
        self.task = TaskData(train, validation, None, 0, [], [], False, test=test, splits=origin)
        self.metric_name = cfg.task.metric or "loss"
        self.model, self.tokenizer = load_causal_lm(cfg.model)
        self.model.eval()
        self.info = model_info(self.model)
        self.train = encode_instructions(train.texts, train.labels, self.tokenizer, cfg.proxy.max_length)
        self.validation = encode_instructions(validation.texts, validation.labels, self.tokenizer, cfg.proxy.max_length)
        if cfg.proxy.eval_examples:
            self.validation = self.validation.subset(cfg.proxy.eval_examples, cfg.seed)
        #: rows scored only for the final numbers of refine and export --train (task.data.test), else None
        self.test = None if test is None else encode_instructions(test.texts, test.labels, self.tokenizer,
                                                                  cfg.proxy.max_length)
        self.pad_id = self.tokenizer.pad_token_id
        self.pattern = answer_pattern(cfg.task.answer_pattern) if self.metric_name == "exact_match" else None
        self.activations = None
        # The worst score a search should reach: what the model scores before any training (loss, perplexity);
        # exact match cannot be worse than 0.
        self.chance = 0.0 if self.pattern else self.evaluate(self.model)

    def fit(self, config: PEFTConfig, hparams: dict[str, Any] | None = None, seed: int | None = None,
            train_examples: int | None = None, eval_at: Sequence[int] = (), full_finetune: bool = False,
            on_eval: Callable[[int, float], bool] | None = None,
            memory_limit: float | None = None) -> tuple[nn.Module, ProxyResult]:
        """As :meth:`ProxyTrainer.fit`; a configuration without adapters is the untrained model (nothing to train:
        its score is the base model's, its memory that of a forward pass on the batch memory is measured on)."""
        if full_finetune or any(spec.active for spec in config.modules.values()):
            return super().fit(config, hparams, seed, train_examples, eval_at, full_finetune, on_eval, memory_limit)
        start = time.perf_counter()
        proxy = self.settings(hparams)
        model = copy.deepcopy(self.model).to(self.device)
        memory = None
        if proxy.measure_memory:
            longest = sorted(range(len(self.train)), key=lambda i: -self.train.lengths[i])[:proxy.batch_size]
            batch = self._to(next(iter(self._batches(self.train.select(longest), None, proxy.batch_size, False, 0))))
            with torch.no_grad():
                memory = measure_step_memory(lambda: model(**batch), self.device, model.parameters())
            if memory_limit is not None and memory.peak > memory_limit:
                raise OverBudget(f"infeasible: measured memory {memory.peak} B > max_memory {memory_limit:.0f} B",
                                 memory)
        score, loss = self.evaluate_with_loss(model, proxy=proxy)
        n = min(train_examples or proxy.train_examples, len(self.train))
        return model, ProxyResult(
            score=score, validation_loss=loss, params=0, trainable=0, memory=memory.peak if memory else None,
            memory_estimate=self.estimate_memory(config, 0, proxy), seconds=time.perf_counter() - start,
            train_loss=float("nan"), steps=0, examples=n, epochs=proxy.epochs, chance=self.chance,
            memory_breakdown=dict(memory.breakdown) if memory else {},
            memory_batch=list(self.widest_batch_shape(proxy)) if memory else None, curve={n: score})

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
