"""Peak training memory of one step: measured (CPU profiler / CUDA allocator) and estimated."""
from __future__ import annotations

import logging
import threading
import warnings
from typing import Callable

import torch

logger = logging.getLogger(__name__)

#: torch's profiler is process-global: two at once (threads sharing a process, e.g. Python-API workers) can
#: crash the process in its teardown
_PROFILER_LOCK = threading.Lock()


def measure_step_memory(step: Callable[[], None], device: torch.device) -> dict[str, int]:
    """Run ``step`` once and return ``{"peak": bytes, <category>: bytes at the peak, ...}``.

    CPU: exact tensor accounting from torch.profiler's memory timeline (parameters, gradients,
    optimizer state, activations, ...), never RSS. CUDA: ``torch.cuda.max_memory_allocated``.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return {"peak": int(torch.cuda.max_memory_allocated(device))}
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
        return {"peak": 0}
    totals = [sum(s) for s in sizes]
    i = max(range(len(totals)), key=totals.__getitem__)
    names = ["unknown"] + [(c.name.lower() if c is not None else "unknown") for c in _CATEGORY_TO_INDEX]
    detail: dict[str, int] = {}
    for name, value in zip(names, sizes[i]):
        detail[name] = detail.get(name, 0) + int(value)
    return {"peak": int(totals[i]), **{k: v for k, v in detail.items() if v}}


#: saved activations per token per trained layer, in floats per unit of hidden size and of FFN size.
#: Checked against the measured peak of 44 MiniLM/SST-2 configs (batch 32): mean |error| 8 %, max 16 %,
#: biased 7 % high (benchmarks/RESULTS.md). The activation term is not linear in trained layers, so
#: deeper fits wait for more architectures in the table.
ACT_PER_TOKEN_HIDDEN = 10
ACT_PER_TOKEN_FFN = 2


def estimate_step_memory(base_params: int, trainable: int, hidden: int, ffn: int, heads: int,
                         trained_layers: int, batch: int, seq: int, bytes_per: int = 4) -> int:
    """Analytic peak memory of a training step (weights + grads + AdamW state + activations).

    Only layers from the lowest adapted one upward save activations, since nothing below
    needs a gradient.
    """
    weights = (base_params + trainable) * bytes_per
    grads_and_state = trainable * bytes_per * 3  # gradient + two AdamW moments
    per_layer = batch * seq * (ACT_PER_TOKEN_HIDDEN * hidden + ACT_PER_TOKEN_FFN * ffn) + batch * heads * seq * seq
    return int(weights + grads_and_state + trained_layers * per_layer * bytes_per)
