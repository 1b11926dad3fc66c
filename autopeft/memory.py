"""Peak training memory of one steady-state step, with its composition: measured (CPU profiler / CUDA allocator)
and estimated."""
from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

from .errors import TrialFailed

logger = logging.getLogger(__name__)

#: torch's profiler is process-global: two at once (threads sharing a process, e.g. Python-API workers) can
#: crash the process in its teardown
_PROFILER_LOCK = threading.Lock()

#: the parts a peak is split into, in the order they are shown
MEMORY_PARTS = ("weights", "gradients", "optimizer", "activations", "other")

#: torch.profiler's tensor categories -> our parts (inputs, temporaries, autograd bookkeeping and
#: unclassified tensors are "other")
_PROFILER_PARTS = {"parameter": "weights", "gradient": "gradients", "optimizer_state": "optimizer",
                   "activation": "activations"}


@dataclass(frozen=True)
class StepMemory:
    """The peak bytes of one training step and what was alive at that moment (the parts add up to ``peak``)."""

    peak: int
    breakdown: dict[str, int] = field(default_factory=dict)


def _tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if torch.is_tensor(t) and id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def prime_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Allocate ``optimizer``'s state without a forward or backward pass: one ``step()`` on zero gradients.

    AdamW allocates its two moments inside its first ``step()``, so a first training step never holds them beside
    the activations; after this, the next step is a steady-state one. It changes the weights only by weight decay
    (the Adam update of a zero gradient is zero): call it on a throwaway copy.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def measure_step_memory(step: Callable[[], None], device: torch.device, parameters: Iterable[torch.Tensor] = (),
                        optimizer: torch.optim.Optimizer | None = None, warmup_steps: int = 1) -> StepMemory:
    """Make the step a steady-state one, then run it once and return its peak.

    Steady state: on the CPU with ``optimizer``, its state is allocated first (:func:`prime_optimizer`, no pass
    through the model); on CUDA, or without an optimizer, ``step`` runs ``warmup_steps`` times unmeasured (AdamW
    allocates its two moments inside its first ``step()``, so a first step never holds them together with the
    activations). CUDA needs the real step: the first pass of a process also allocates cuBLAS workspaces that stay
    for the process's life (67 MiB more on an H200, benchmarks/RESULTS.md), which would land in whichever trial
    came first.

    CPU: exact tensor accounting from torch.profiler's memory timeline, never RSS; the breakdown is the
    profiler's classification of the tensors alive at the peak. CUDA: ``max_memory_allocated`` above what was
    allocated before the warm-up minus the model (``parameters``), which are counted as weights; optimizer state
    and gradients are counted at their full size and the rest of the peak is activations (temporaries included).
    Raises TrialFailed when the measurement sees no memory at all (a profiler that recorded nothing must not
    pass as the best possible value).
    """
    if optimizer is not None and device.type != "cuda":
        prime_optimizer(optimizer)
    else:
        for _ in range(warmup_steps):
            step()
    if device.type == "cuda":
        params = list(parameters)
        weights = _tensor_bytes(p for p in params if p.device.type == "cuda")
        torch.cuda.synchronize(device)
        state = _tensor_bytes(v for s in (optimizer.state.values() if optimizer else ()) for v in s.values())
        # whatever was on the device besides this model and its optimizer (other trials' leftovers) is not ours
        outside = torch.cuda.memory_allocated(device) - weights - state - _tensor_bytes(
            p.grad for p in params if p.grad is not None)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        peak = int(torch.cuda.max_memory_allocated(device)) - max(outside, 0)
        grads = _tensor_bytes(p.grad for p in params if p.grad is not None)
        grads = min(grads, max(peak - weights - state, 0))  # not all gradients need be alive at the peak
        rest = max(peak - weights - state - grads, 0)
        breakdown = {"weights": weights, "gradients": grads, "optimizer": state, "activations": rest, "other": 0}
    else:
        peak, breakdown = _profile_cpu_step(step)
    if peak <= 0:
        raise TrialFailed("memory measurement recorded no allocations (the profiler saw nothing); "
                          "set proxy.measure_memory: false and drop the memory objective to go on without it")
    return StepMemory(peak, breakdown)


def _profile_cpu_step(step: Callable[[], None]) -> tuple[int, dict[str, int]]:
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import _CATEGORY_TO_INDEX, MemoryProfileTimeline

    with _PROFILER_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                     with_stack=True) as prof:
            step()
        timeline = MemoryProfileTimeline(prof._memory_profile())
        _, sizes = timeline._coalesce_timeline("cpu")
    if not sizes:
        return 0, {}
    totals = [sum(s) for s in sizes]
    i = max(range(len(totals)), key=totals.__getitem__)
    names = [None] + [(c.name.lower() if c is not None else None) for c in _CATEGORY_TO_INDEX]
    breakdown = dict.fromkeys(MEMORY_PARTS, 0)
    for name, value in zip(names, sizes[i]):
        breakdown[_PROFILER_PARTS.get(name, "other")] += int(value)
    return int(totals[i]), breakdown


#: floats alive at the peak per token per trained layer, per unit of hidden size and of FFN size; per
#: (row, head, query, key) per trained layer (attention scores and probabilities); and per token per unit of hidden
#: size whatever the trained layers (embedding output, head, loss). Fitted to measured steady-state peaks of
#: MiniLM (benchmarks/memory_estimate.py, "Analytic memory estimate" in benchmarks/RESULTS.md). With one
#: architecture the hidden and FFN terms cannot be told apart (FFN = 4 x hidden): the fit puts it all on the FFN.
ACT_PER_TOKEN_HIDDEN = 0.0
ACT_PER_TOKEN_FFN = 2.86
ACT_PER_SCORE = 2.75
ACT_PER_TOKEN_BASE = 11.05


def estimate_step_memory(weights: int, trainable: int, hidden: int, ffn: int, heads: int,
                         trained_layers: int, batch: int, seq: int, bytes_per: int = 4) -> int:
    """Analytic peak memory of a steady-state training step: every weight (``weights``: the model with its
    adapters), a gradient and two AdamW moments per ``trainable`` parameter, and the activations.

    Only layers from the lowest trained one upward save activations, since nothing below needs a gradient.
    """
    grads_and_state = trainable * bytes_per * 3  # gradient + two AdamW moments
    per_layer = batch * seq * (ACT_PER_TOKEN_HIDDEN * hidden + ACT_PER_TOKEN_FFN * ffn) \
        + ACT_PER_SCORE * batch * heads * seq * seq
    activations = trained_layers * per_layer + ACT_PER_TOKEN_BASE * batch * seq * hidden
    return int(weights * bytes_per + grads_and_state + activations * bytes_per)
