"""The analytic memory estimate against the measured steady-state peak, and a fit of its activation constants.

Measures ``ProxyTrainer.measure_memory`` (the product's memory objective: a steady-state fp32 step on the widest
batch) for configurations drawn from the benchmark spaces (autopeft, lora), plus head-only and full fine-tuning, at
several batch shapes on MiniLM with the quickstart's SST-2 sample (shipped in the repo, no ../shared needed). The
activation constants of ``autopeft.memory.estimate_step_memory`` are fitted (non-negative least squares) on the
draws of ``--fit-seed`` and the error is reported on the draws of ``--test-seed``, which the fit never saw, for
the constants the product ships and for the fitted ones side by side.

    python benchmarks/memory_estimate.py --configs 20 --threads 1 --out benchmarks/data/memory_estimate.json

``--summary`` recomputes the tables from the JSON without measuring anything.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from autopeft import memory as memory_module  # noqa: E402
from autopeft.adapters import PEFTConfig, count_adapter_params, normalise_config  # noqa: E402
from autopeft.config import StudyConfig  # noqa: E402
from autopeft.proxy import ProxyTrainer  # noqa: E402
from problems import benchmark_space  # noqa: E402

#: (batch_size, max_length) shapes measured; the quickstart's is (32, 64)
SHAPES = ((32, 64), (16, 128), (8, 32))
SPACES = ("autopeft", "lora")


def _trainer(batch: int, length: int, threads: int) -> ProxyTrainer:
    data = REPO / "studies" / "data" / "sst2"
    cfg = StudyConfig.model_validate(dict(
        name="memory-estimate", model="sentence-transformers/all-MiniLM-L6-v2",
        task=dict(type="classification", metric="accuracy",
                  data=dict(train=str(data / "train.tsv"), validation=str(data / "dev.tsv"), text="sentence",
                            label="label")),
        search_space={}, proxy=dict(batch_size=batch, max_length=length, threads=threads), seed=0))
    return ProxyTrainer(cfg)


def _configs(trainer: ProxyTrainer, n: int, seed: int) -> list[tuple[str, dict]]:
    rng = np.random.default_rng(seed)
    spaces = {name: benchmark_space(name, trainer.info.num_layers) for name in SPACES}
    out = [("head-only", {}), ("full-finetune", {"full_finetune": True})]
    for i in range(n):
        name = SPACES[i % len(SPACES)]
        config, _ = spaces[name].decode(spaces[name].sample(rng))
        out.append((name, config.to_dict()))
    return out


def measure(args) -> list[dict]:
    rows = []
    for batch, length in SHAPES:
        trainer = _trainer(batch, length, args.threads)
        rows_, width = trainer.widest_batch_shape()
        for split, seed in (("fit", args.fit_seed), ("test", args.test_seed)):
            for name, raw in _configs(trainer, args.configs, seed):
                full = bool(raw.get("full_finetune"))
                config = normalise_config(PEFTConfig.from_dict({} if full else raw), trainer.info)
                params = sum(p.numel() for p in trainer.model.parameters()) - trainer.head_params() if full \
                    else count_adapter_params(config, trainer.info)
                start = time.perf_counter()
                mem = trainer.measure_memory(config, full_finetune=full)
                rows.append(dict(split=split, space=name, config=raw, batch=rows_, width=width, params=params,
                                 trainable=params + trainer.head_params(),
                                 base_params=trainer.info.base_params, head_params=trainer.head_params(),
                                 hidden=trainer.info.hidden_size, ffn=trainer.info.intermediate_size,
                                 heads=trainer.info.num_heads, num_layers=trainer.info.num_layers,
                                 trained_layers=trainer.info.num_layers - trainer.lowest_trained_layer(config, full),
                                 peak=mem.peak, breakdown=mem.breakdown,
                                 seconds=round(time.perf_counter() - start, 2)))
                logging.info("%s %dx%d %-13s params=%d peak=%.1f MiB", split, rows_, width, name, params,
                             mem.peak / 2**20)
    return rows


#: the constants of autopeft.memory that the fit sets, in the order of _features
CONSTANTS = ("ACT_PER_TOKEN_HIDDEN", "ACT_PER_TOKEN_FFN", "ACT_PER_SCORE", "ACT_PER_TOKEN_BASE")


def _features(r: dict) -> np.ndarray:
    """Activation bytes per unit of each constant in CONSTANTS."""
    tokens = r["batch"] * r["width"]
    layers = r["trained_layers"]
    return 4.0 * np.array([layers * tokens * r["hidden"], layers * tokens * r["ffn"],
                           layers * r["batch"] * r["heads"] * r["width"] ** 2, tokens * r["hidden"]])


def _weights(r: dict) -> int:
    full = r["space"] == "full-finetune"
    return r["base_params"] + r["head_params"] + (0 if full else r["params"])


def _estimate(r: dict, constants: dict[str, float]) -> int:
    """The product's ``estimate_step_memory`` for row ``r`` with ``constants`` set."""
    saved = {k: getattr(memory_module, k) for k in CONSTANTS}
    try:
        for k, v in constants.items():
            setattr(memory_module, k, v)
        return memory_module.estimate_step_memory(_weights(r), r["trainable"], r["hidden"], r["ffn"], r["heads"],
                                                  r["trained_layers"], r["batch"], r["width"])
    finally:
        for k, v in saved.items():
            setattr(memory_module, k, v)


def fit(rows: list[dict]) -> dict[str, float]:
    """Non-negative least squares on the fit split's rows, each weighted by 1/peak (relative error is what users
    read); the part without a constant (weights, gradients, AdamW state) is the estimate with every constant 0."""
    from scipy.optimize import nnls

    rows = [r for r in rows if r["split"] == "fit"]
    zero = dict.fromkeys(CONSTANTS, 0.0)
    a = np.array([_features(r) for r in rows])
    b = np.array([r["peak"] - _estimate(r, zero) for r in rows])
    w = 1.0 / np.array([r["peak"] for r in rows])
    coef, _ = nnls(a * w[:, None], b * w)
    return {k: round(float(c), 2) for k, c in zip(CONSTANTS, coef)}


def errors(rows: list[dict], constants: dict[str, float]) -> dict[str, float]:
    rel = np.array([(_estimate(r, constants) - r["peak"]) / r["peak"] for r in rows])
    return {"rows": len(rows), "mean_abs_pct": round(100 * float(np.mean(np.abs(rel))), 1),
            "max_abs_pct": round(100 * float(np.max(np.abs(rel))), 1), "bias_pct": round(100 * float(np.mean(rel)), 1)}


def summary(rows: list[dict]) -> dict:
    fitted = fit(rows)
    shipped = {k: getattr(memory_module, k) for k in CONSTANTS}
    test = [r for r in rows if r["split"] == "test"]
    full = [r for r in rows if r["space"] == "full-finetune"]
    return {"fitted_constants": fitted, "shipped_constants": shipped,
            "test_error_shipped": errors(test, shipped), "test_error_fitted": errors(test, fitted),
            "fit_error_fitted": errors([r for r in rows if r["split"] == "fit"], fitted),
            "test_error_shipped_by_kind": {k: errors([r for r in test if r["space"] == k], shipped)
                                           for k in ("head-only", "full-finetune", *SPACES)},
            "parts_add_up": all(sum(r["breakdown"].values()) == r["peak"] for r in rows),
            "full_finetune_optimizer_over_8x_trainable": sorted({round(r["breakdown"]["optimizer"] /
                                                                       (8 * r["trainable"]), 4) for r in full})}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", type=int, default=20, help="drawn configurations per split and shape")
    ap.add_argument("--fit-seed", type=int, default=0)
    ap.add_argument("--test-seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/data/memory_estimate.json")
    ap.add_argument("--summary", action="store_true", help="recompute the tables from --out; measure nothing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    if args.summary:
        rows = json.loads(args.out.read_text())["rows"]
    else:
        rows = measure(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "shapes": SHAPES, "rows": rows}) + "\n")
    print(json.dumps(summary(rows), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
