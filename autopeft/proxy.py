"""The cheap proxy training run every candidate gets: plain torch loop over pre-tokenised data."""
from __future__ import annotations

import copy
import functools
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .activation_cache import ActivationCache, cached_batches, start_at_layer
from .adapters import PEFTConfig, apply_adapters_by_kind, get_adapter_kind
from .config import ProxyConfig, StudyConfig, TrainerConfig, trainer_config
from .batches import EncodedSplit, iter_batches
from .data import TaskData, build_task_data, encode_cached, token_cache_dir
from .errors import OverBudget, TrialFailed
from .memory import StepMemory, estimate_step_memory, measure_step_memory
from .metrics import chance_level, get_metric
from .models import ModelInfo, draw_head, load_model, model_info
from .references import FULL_FINETUNE_LR

logger = logging.getLogger(__name__)

#: a run whose loss (mean of the last 3 steps) grows past this multiple of its first step's has diverged
DIVERGENCE_FACTOR = 10.0

DEFAULT_METRIC = {"classification": "accuracy", "regression": "pearson"}


@dataclass
class ProxyResult:
    """What one proxy run measured. ``score`` is on the validation split."""

    score: float
    #: adapter parameters (what PEFT counts on the export); the whole body for full fine-tuning
    params: int
    memory: int | None
    memory_estimate: int
    seconds: float
    train_loss: float
    steps: int
    examples: int
    epochs: float
    chance: float
    #: every parameter the trial trains: the adapters plus the task head (and BERT's pooler)
    trainable: int = 0
    #: what was alive at the memory peak, in bytes: weights, gradients, optimizer, activations, other
    memory_breakdown: dict[str, int] = field(default_factory=dict)
    #: [rows, tokens] of the batch the memory was measured on
    memory_batch: list[int] | None = None
    #: validation score after N training examples (learning-curve snapshots, when ``eval_at`` was given)
    curve: dict[int, float] = field(default_factory=dict)
    #: the lowest adapted layer when the frozen layers below it were served from the activation cache
    cached_from_layer: int | None = None
    #: training examples seen when a rung stopped the run (``score`` is then the score there)
    stopped_at: int | None = None
    #: mean validation loss at the end of the run (None when a rung stopped it)
    validation_loss: float | None = None

    def objectives(self) -> dict[str, float]:
        return {"score": self.score, "params": self.params, "trainable": self.trainable, "memory": self.memory,
                "memory_estimate": self.memory_estimate}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: plain fp32).

    ``auto`` picks bf16 only where it is native: emulated bf16 on an older CPU is slower than fp32.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        # emulated bf16 counts as supported by default, and is slower than fp32
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else None
    if device.type == "cpu":
        try:
            return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
        except (AttributeError, RuntimeError):
            return None
    return None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class ProxyTrainer:
    """Holds the base model, tokenizer and encoded data once; ``run`` trains one candidate on a copy."""

    def __init__(self, cfg: TrainerConfig | StudyConfig):
        self.cfg = cfg = trainer_config(cfg)
        self.device = resolve_device(cfg.device)
        if cfg.proxy.threads:
            torch.set_num_threads(cfg.proxy.threads)
        self.task: TaskData = build_task_data(cfg.task.data, cfg.task.type, cfg.base_dir)
        self.metric_name = cfg.task.metric or DEFAULT_METRIC[cfg.task.type]
        self.metric = get_metric(self.metric_name)
        num_labels = 1 if self.task.regression else self.task.num_labels
        problem = "regression" if self.task.regression else "single_label_classification"
        self.model, self.tokenizer = load_model(cfg.model, num_labels, problem)
        self.model.eval()
        self.info: ModelInfo = model_info(self.model)
        max_len = cfg.proxy.max_length
        cache = token_cache_dir() if cfg.proxy.token_cache else None
        self.train = encode_cached(self.task.train, self.task.train_label_ids, self.tokenizer, max_len, cache,
                                   self.task.regression)
        self.validation = encode_cached(self.task.validation, self.task.validation_label_ids, self.tokenizer,
                                        max_len, cache, self.task.regression)
        if cfg.proxy.eval_examples:
            self.validation = self.validation.subset(cfg.proxy.eval_examples, cfg.seed)
        #: rows scored only for the final numbers of refine and export --train (task.data.test), else None
        self.test = None if self.task.test is None else encode_cached(
            self.task.test, self.task.test_label_ids, self.tokenizer, max_len, cache, self.task.regression)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.chance = chance_level(self.metric_name, self.validation.labels.numpy())
        self.activations = ActivationCache(self.model, self.info, self.pad_id,
                                           int(cfg.proxy.activation_cache_mb * 2**20))
        #: called after every training step with (step, total steps, loss, seconds since the run started)
        self.on_step: Callable[[int, int, float, float], None] | None = None

    # ------------------------------------------------------------------ helpers
    def settings(self, hparams: dict[str, Any] | None = None) -> ProxyConfig:
        """The proxy block with the trial's hyperparameters applied."""
        return self.cfg.proxy.model_copy(update=dict(hparams or {}))

    def learning_rates(self, config: PEFTConfig, proxy: ProxyConfig | None = None) -> dict[str, float]:
        """The rate each active adapter kind trains at: the proxy's (or the trial's) when set, else the kind's default.

        Per-kind defaults rather than one shared rate: a prefix needs ~5x an adapter's rate, and taking the
        smallest for all (the old rule) left prefixes in mixed configs untrained in a short proxy.
        """
        rate = (proxy or self.cfg.proxy).learning_rate
        return {k: rate or get_adapter_kind(k).default_lr for k in config.modules}

    def estimate_memory(self, config: PEFTConfig, params: int, proxy: ProxyConfig | None = None,
                        full_finetune: bool = False) -> int:
        """Analytic peak memory of the step ``measure_memory`` measures (same batch), known before training."""
        proxy = proxy or self.cfg.proxy
        head = self.head_params()
        rows, width = self.widest_batch_shape(proxy)
        # full fine-tuning's params are the body's own weights, not extra ones
        weights = self.info.base_params + head + (0 if full_finetune else params)
        return estimate_step_memory(weights, params + head, self.info.hidden_size,
                                    self.info.intermediate_size, self.info.num_heads,
                                    self.info.num_layers - self.lowest_trained_layer(config, full_finetune),
                                    rows, width)

    def head_params(self) -> int:
        """Parameters every trial trains besides its adapters: the new task head (and BERT's pooler)."""
        return self._head_count

    @functools.cached_property
    def _head_count(self) -> int:
        # once: the estimate asks for it for every candidate the optimizer scores
        return sum(p.numel() for n in self.info.arch.head for p in self.model.get_submodule(n).parameters())

    @functools.cached_property
    def _rows_by_length(self) -> list[int]:
        """Training rows, longest first (the split is fixed once loaded)."""
        return sorted(range(len(self.train)), key=lambda i: -self.train.lengths[i])

    # ------------------------------------------------------------------ the run
    def run(self, config: PEFTConfig, hparams: dict[str, Any] | None = None, seed: int | None = None,
            train_examples: int | None = None, eval_at: Sequence[int] = (),
            full_finetune: bool = False, on_eval: Callable[[int, float], bool] | None = None,
            memory_limit: float | None = None) -> ProxyResult:
        """Like :meth:`fit`, without keeping the trained model."""
        return self.fit(config, hparams, seed, train_examples, eval_at, full_finetune, on_eval, memory_limit)[1]

    def fit(self, config: PEFTConfig, hparams: dict[str, Any] | None = None, seed: int | None = None,
            train_examples: int | None = None, eval_at: Sequence[int] = (),
            full_finetune: bool = False, on_eval: Callable[[int, float], bool] | None = None,
            memory_limit: float | None = None) -> tuple[nn.Module, ProxyResult]:
        """Train ``config`` on a fresh copy of the base model and score it on the validation split.

        Returns the trained model (adapters in place) and what the run measured.

        ``eval_at`` lists numbers of training examples seen after which the validation score is also
        recorded (``result.curve``), so one run yields scores at several fidelities; ``on_eval(n, score)``
        is called after each and returning False stops the run there (``result.stopped_at``). ``full_finetune``
        trains every weight (the reference point adapters are compared with); ``params`` is then the whole body.
        With ``memory_limit`` (bytes) a measured peak above it raises OverBudget before any training.
        Raises TrialFailed (NaN/inf loss, out of memory) with a reason the study records.
        """
        start = time.perf_counter()
        proxy = self.settings(hparams)
        seed = self.cfg.seed if seed is None else seed
        n_examples = min(train_examples or proxy.train_examples, len(self.train))
        train = self.train.subset(n_examples, seed)
        memory = None
        if proxy.measure_memory:
            memory = self.measure_memory(config, hparams, seed, full_finetune)
            if memory_limit is not None and memory.peak > memory_limit:
                raise OverBudget(f"infeasible: measured memory {memory.peak} B > max_memory {memory_limit:.0f} B",
                                 memory)
        model, groups, optimizer = self._build(config, hparams, seed, full_finetune)
        n_params = sum(p.numel() for g in groups[:-1] for p in g["params"])
        n_trainable = sum(p.numel() for g in groups for p in g["params"])
        steps_per_epoch = math.ceil(len(train) / proxy.batch_size)
        total_steps = max(1, math.ceil(steps_per_epoch * proxy.epochs))
        warmup = int(total_steps * proxy.warmup_ratio)
        # Constant after warm-up: a short proxy with decay-to-zero can stay at chance (measured, see issue 5).
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)) if warmup else 1.0)
        losses: list[float] = []
        curve: dict[int, float] = {}
        pending = sorted(n for n in eval_at if n < len(train) * proxy.epochs)
        # Layers below the lowest adapted one are frozen and adapter-free: reuse their cached output.
        k = self.lowest_trained_layer(config, full_finetune)
        cached = self._cached_inputs(train, n_examples, seed, k, proxy)
        tail = start_at_layer(model, self.info, k) if cached else nullcontext()
        step_fn = self._step_fn(model, optimizer, groups, proxy)
        step = 0

        def train_step(batch: dict[str, torch.Tensor]) -> None:
            loss = step_fn(batch)
            if not math.isfinite(loss):
                raise TrialFailed(f"loss is {loss} at step {step + 1}/{total_steps}")
            scheduler.step()
            losses.append(loss)
            recent, first = np.mean(losses[-3:]), max(losses[0], 0.1)  # floor: a near-zero start is no yardstick
            if len(losses) >= 4 and recent > DIVERGENCE_FACTOR * first:
                raise TrialFailed(f"diverged: loss {recent:.4g} at step {step + 1}/{total_steps}, more than "
                                  f"{DIVERGENCE_FACTOR:g}x its start ({first:.4g}); lower the learning rate")

        stopped_at: int | None = None
        try:
            with tail:
                self.train_mode(model, k, cached is not None)
                epoch = 0
                while step < total_steps:
                    for batch in self._batches(train, cached, proxy.batch_size, shuffle=True, seed=seed + epoch):
                        if step >= total_steps:
                            break
                        train_step(self._to(batch))
                        step += 1
                        if self.on_step is not None:
                            self.on_step(step, total_steps, losses[-1], time.perf_counter() - start)
                        seen = min(step * proxy.batch_size, len(train) * (epoch + 1))
                        for n in pending:
                            if seen >= n and n not in curve:
                                curve[n] = self.evaluate(model, cached=cached, proxy=proxy)
                                self.train_mode(model, k, cached is not None)
                                if on_eval is not None and not on_eval(n, curve[n]):
                                    stopped_at = n
                        if stopped_at is not None:
                            break
                    epoch += 1
                    if stopped_at is not None:
                        break
                if stopped_at is None:
                    score, validation_loss = self.evaluate_with_loss(model, cached=cached, proxy=proxy)
                else:
                    score, validation_loss = curve[stopped_at], None
        except torch.OutOfMemoryError as exc:
            raise TrialFailed(f"out of memory at step {step + 1}: {str(exc).splitlines()[0]}") from None
        finally:
            del optimizer
        if not math.isfinite(score):
            raise TrialFailed(f"validation {self.metric_name} is {score}")
        return model, ProxyResult(
            score=float(score), validation_loss=validation_loss, params=int(n_params), trainable=int(n_trainable),
            memory=memory.peak if memory else None,
            memory_estimate=self.estimate_memory(config, n_params, proxy, full_finetune),
            seconds=time.perf_counter() - start, train_loss=float(np.mean(losses[-20:])) if losses else float("nan"),
            steps=step, examples=len(train), epochs=proxy.epochs, chance=self.chance,
            memory_breakdown=dict(memory.breakdown) if memory else {},
            memory_batch=list(self.widest_batch_shape(proxy)) if memory else None,
            curve={**curve, int(len(train) * proxy.epochs): float(score)} if stopped_at is None else curve,
            stopped_at=stopped_at,
            cached_from_layer=k if cached else None,
        )

    def lowest_trained_layer(self, config: PEFTConfig, full_finetune: bool = False) -> int:
        """The lowest layer a trial trains (its lowest adapted layer; 0 for full fine-tuning; L for head-only)."""
        if full_finetune:
            return 0
        return min((min(s.layers) for s in config.modules.values()), default=self.info.num_layers)

    def train_mode(self, model: nn.Module, k: int, cached: bool = False) -> None:
        """Training mode for layers k.. and the head; the frozen embeddings and layers below k stay in eval mode.

        One dropout regime for every trial: with the activation cache those modules do not run at all (their
        output was computed once, dropout off), so without it they must not drop anything either, or a trial's
        regime would depend on its lowest adapted layer and on whether the cache fitted. Full fine-tuning
        (k = 0 and trained embeddings) keeps dropout everywhere.
        """
        model.train()
        if cached or k == 0 and any(p.requires_grad for p in model.get_submodule(self.info.arch.embeddings)
                                    .parameters()):
            return
        model.get_submodule(self.info.arch.embeddings).eval()
        layers = model.get_submodule(self.info.arch.layers)
        for layer in list(layers)[:k]:
            layer.eval()

    def _build(self, config: PEFTConfig, hparams: dict[str, Any] | None, seed: int,
               full_finetune: bool) -> tuple[nn.Module, list[dict[str, Any]], torch.optim.Optimizer]:
        """A fresh copy of the base model with ``config``'s adapters (or everything) trainable, on the device,
        and its AdamW. The last parameter group is what every trial trains besides the adapters (task head,
        and BERT's pooler): all groups together are the trial's trainable parameters."""
        proxy = self.settings(hparams)
        torch.manual_seed(seed)
        model = copy.deepcopy(self.model)
        draw_head(model, seed)
        by_kind = apply_adapters_by_kind(model, config)
        rates = self.learning_rates(config, proxy)
        groups = [{"params": params, "lr": rates[kind]} for kind, params in by_kind.items()]
        if full_finetune:
            head = {id(p) for n in self.info.arch.head for p in model.get_submodule(n).parameters()}
            groups = [{"params": [p.requires_grad_(True) for p in model.parameters() if id(p) not in head],
                       "lr": (hparams or {}).get("learning_rate") or FULL_FINETUNE_LR}]  # not the adapters' rate
        adapter_ids = {id(p) for g in groups for p in g["params"]}
        model.to(self.device)
        head_params = [p for p in model.parameters() if p.requires_grad and id(p) not in adapter_ids]
        groups.append({"params": head_params, "lr": proxy.head_learning_rate})
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=proxy.weight_decay)
        return model, groups, optimizer

    def _step_fn(self, model: nn.Module, optimizer: torch.optim.Optimizer, groups: list[dict[str, Any]],
                 proxy: ProxyConfig, precision=None) -> Callable[[dict[str, torch.Tensor]], float]:
        """One optimizer step on a batch; returns the loss (not checked: the caller decides what is fatal)."""
        trained = [p for g in groups for p in g["params"]]
        precision = precision if precision is not None else self.autocast(proxy)

        def step(batch: dict[str, torch.Tensor]) -> float:
            optimizer.zero_grad(set_to_none=True)
            with precision:
                loss = model(**batch).loss.float()
            loss.backward()
            if proxy.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(trained, proxy.max_grad_norm)
            optimizer.step()
            return loss.item()

        return step

    def widest_batch_shape(self, proxy: ProxyConfig | None = None) -> tuple[int, int]:
        """(rows, tokens) of the batch memory is measured on: the ``batch_size`` longest training rows."""
        proxy = proxy or self.cfg.proxy
        rows = min(proxy.batch_size, len(self.train))
        return rows, self.train.lengths[self._rows_by_length[0]] if len(self.train) else 1

    def measure_memory(self, config: PEFTConfig, hparams: dict[str, Any] | None = None, seed: int | None = None,
                       full_finetune: bool = False) -> StepMemory:
        """Peak memory of a steady-state training step of ``config``, with its composition.

        The same step for every trial: the whole model (no activation cache), fp32, optimizer state already
        allocated, on the widest batch the training split can give (``widest_batch_shape``), so that the figure
        depends on the configuration alone and not on which length bucket a trial happens to meet first. Runs on
        a throwaway copy under a forked random stream, so the trial's own training is untouched.
        """
        proxy = self.settings(hparams)
        seed = self.cfg.seed if seed is None else seed
        longest = self._rows_by_length[:proxy.batch_size]
        batch = self._to(next(iter(self._batches(self.train.select(longest), None, proxy.batch_size, shuffle=False,
                                                 seed=0))))
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            model, groups, optimizer = self._build(config, hparams, seed, full_finetune)
            model.train()
            step = self._step_fn(model, optimizer, groups, proxy, precision=nullcontext())
            try:
                return measure_step_memory(lambda: step(batch), self.device, model.parameters(), optimizer)
            except torch.OutOfMemoryError as exc:
                raise TrialFailed(f"out of memory in the memory-measuring step: {str(exc).splitlines()[0]}") from None
            finally:
                del model, optimizer

    def autocast(self, proxy: ProxyConfig | None = None):
        """The autocast context of ``proxy.precision`` (a no-op for fp32)."""
        dtype = resolve_precision((proxy or self.cfg.proxy).precision, self.device)
        if dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def _to(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in batch.items() if k != "index"}

    def _cached_inputs(self, train: EncodedSplit, n: int, seed: int, k: int, proxy: ProxyConfig):
        """(train, validation) hidden states entering layer k, or None when caching is off or unaffordable."""
        if not proxy.activation_cache or k == 0:
            return None
        tr = self.activations.get(f"train:{n}:{seed}", train, k)
        va = self.activations.get("validation", self.validation, k)
        return (tr, va) if tr is not None and va is not None else None

    def _batches(self, split: EncodedSplit, cached, batch_size: int, shuffle: bool, seed: int, validation=False):
        if cached:
            packed = cached[1] if validation else cached[0]
            return cached_batches(packed, split, batch_size, self.pad_id, shuffle=shuffle, seed=seed)
        return iter_batches(split, batch_size, self.pad_id, shuffle=shuffle, seed=seed)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: EncodedSplit | None = None, cached=None,
                 proxy: ProxyConfig | None = None) -> float:
        """The task metric of ``model`` on the validation split (or ``split``), in ``proxy``'s precision."""
        return self.evaluate_with_loss(model, split, cached, proxy)[0]

    def evaluate_with_loss(self, model: nn.Module, split: EncodedSplit | None = None, cached=None,
                           proxy: ProxyConfig | None = None) -> tuple[float, float]:
        """The task metric and the mean loss (cross-entropy; squared error for regression) on the validation split
        (or ``split``), from one forward pass. The loss is recorded, not optimised: on SST-2 it did not rank
        configurations better than accuracy (benchmarks/RESULTS.md, session 5)."""
        with self.autocast(proxy):
            logits, labels = self.logits(model, split, cached)
        if self.task.regression:
            predictions, loss = logits.squeeze(-1), nn.functional.mse_loss(logits.squeeze(-1), labels.float())
        else:
            predictions, loss = logits.argmax(-1), nn.functional.cross_entropy(logits, labels.long())
        return float(self.metric(predictions.numpy(), labels.numpy())), float(loss)

    @torch.no_grad()
    def logits(self, model: nn.Module, split: EncodedSplit | None = None, cached=None) -> tuple[torch.Tensor, torch.Tensor]:
        """fp32 logits and labels on ``split`` (default: validation), on the CPU; ``cached`` only with validation."""
        model.eval()
        split = split or self.validation
        logits, labels = [], []
        for batch in self._batches(split, cached, 128, shuffle=False, seed=0, validation=True):
            batch = self._to(batch)
            logits.append(model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float().cpu())
            labels.append(batch["labels"].cpu())
        return torch.cat(logits), torch.cat(labels)
