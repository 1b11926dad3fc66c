"""Seconds per trial: naive (fresh model + Hugging Face Trainer) vs the autopeft proxy, side by side.

Both train the same configurations (sampled from benchmarks/spaces/autopeft.yaml) on the same SST-2
examples for the same epochs with the same constant-after-warm-up schedule, and score the same
validation rows. The naive arm does what a user without autopeft would: load the model, attach the
adapters, tokenise, `Trainer.train()`, `Trainer.predict()` — per trial — at `Trainer`'s best settings for this
comparison (``--naive best``, the default): length-grouped batches (``train_sampling_strategy="group_by_length"``,
formerly ``group_by_length=True``) and the autopeft arm's precision (``bf16=True`` when that arm runs bf16; both
arms always train in the same precision). ``--naive plain`` is the old arm (random batches, fp32). The autopeft
arm is `ProxyTrainer.run` (model and tokens loaded once, length-bucketed batches, frozen-prefix activation cache,
plus one profiled step for the memory objective, which the naive arm does not pay for).

Two ratios, side by side: per trial (the trial's own seconds; the cache fills are inside the trials that pay
them) and with the proxy's one-time set-up (``ProxyTrainer`` construction: model load, tokenisation) charged
evenly to the trials of the run. The second is what a study of that many trials sees; with few trials (``--quick``)
the set-up and the cache fills weigh more.

    python benchmarks/proxy_speed.py [--quick] [--configs N] [--json PATH] [--threads 2] [--precision fp32]
        [--naive best|plain]
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def naive_trial(cfg, config, hparams, train_rows, val_rows, seed: int, bf16: bool = False,
                group_by_length: bool = False) -> tuple[float, float]:
    """Fresh model + tokenisation + HF Trainer, as a user would write it. Returns (seconds, score)."""
    import inspect
    import tempfile

    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)
    from transformers.utils import logging as hf_logging

    from autopeft.adapters import apply_adapters
    from autopeft.metrics import get_metric
    from autopeft.models import resolve_model_path

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    start = time.perf_counter()
    path = resolve_model_path(cfg.model)
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    apply_adapters(model, config)

    def encode(rows):
        enc = tok([t for t, _ in rows], truncation=True, max_length=cfg.proxy.max_length)
        return [{"input_ids": ids, "attention_mask": m, "labels": y}
                for ids, m, (_, y) in zip(enc["input_ids"], enc["attention_mask"], rows)]

    train, val = _ListDataset(encode(train_rows)), _ListDataset(encode(val_rows))
    lr = hparams.get("learning_rate", 1e-3)
    fast = {}
    if group_by_length:  # transformers >= 5 names it train_sampling_strategy; older ones group_by_length
        fast = ({"train_sampling_strategy": "group_by_length"}
                if "train_sampling_strategy" in inspect.signature(TrainingArguments).parameters
                else {"group_by_length": True})
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, num_train_epochs=cfg.proxy.epochs, learning_rate=lr,
                                 per_device_train_batch_size=cfg.proxy.batch_size, per_device_eval_batch_size=128,
                                 lr_scheduler_type="constant_with_warmup",
                                 warmup_steps=int(math.ceil(len(train) / cfg.proxy.batch_size) * cfg.proxy.epochs
                                                  * cfg.proxy.warmup_ratio),
                                 max_grad_norm=cfg.proxy.max_grad_norm, save_strategy="no", report_to=[],
                                 logging_strategy="no", seed=seed, use_cpu=True, disable_tqdm=True, bf16=bf16,
                                 **fast)
        trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tok))
        trainer.train()
        pred = trainer.predict(val)
    score = get_metric("accuracy")(pred.predictions.argmax(-1), pred.label_ids)
    return time.perf_counter() - start, float(score)


def code_state() -> dict:
    """The commit the run measured, and whether autopeft/ had uncommitted changes (then the commit alone does not
    say what ran)."""
    import subprocess

    def git(*cmd):
        return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "autopeft_uncommitted": bool(git("status", "--porcelain", "autopeft"))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 configs, 1,000 examples")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", type=int, default=10)
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="the autopeft arm's proxy.precision (the naive arm trains in the same precision)")
    ap.add_argument("--naive", choices=["best", "plain"], default="best",
                    help="best: Trainer with length-grouped batches and the autopeft arm's precision; plain: random "
                    "batches, fp32 (the arm of sessions 1-6)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)
    n_configs, n_examples = (3, 1000) if args.quick else (args.configs, args.examples)

    from autopeft.adapters import normalise_config
    from autopeft.config import StudyConfig
    from autopeft.proxy import ProxyTrainer, resolve_precision

    sys.path.insert(0, str(REPO / "benchmarks"))
    from collect_table import TASKS
    from problems import benchmark_space

    cfg = StudyConfig.model_validate(dict(
        name="proxy-speed", model="sentence-transformers/all-MiniLM-L6-v2", task=TASKS["sst2"],
        search_space={}, proxy=dict(train_examples=n_examples, eval_examples=500, epochs=1, max_length=64,
                                    batch_size=32, threads=args.threads, precision=args.precision), seed=0))
    start = time.perf_counter()
    trainer = ProxyTrainer(cfg)  # the proxy's one-time set-up: model load, tokenisation (cache fills: in the trials)
    setup_s = time.perf_counter() - start
    precision = resolve_precision(cfg.proxy.precision, trainer.device)
    naive_bf16 = args.naive == "best" and precision == torch.bfloat16
    if args.naive == "best" and precision not in (None, torch.float32, torch.bfloat16):
        raise SystemExit(f"the naive arm has no setting for the autopeft arm's precision {precision}")
    print(f"proxy set-up {setup_s:.1f}s; naive arm: {args.naive} ({'bf16' if naive_bf16 else 'fp32'}, "
          f"{'length-grouped' if args.naive == 'best' else 'random'} batches)", flush=True)
    space = benchmark_space("autopeft", trainer.info.num_layers)
    rng = np.random.default_rng(1)
    # the exact rows the proxy trains and scores on, as text, for the naive arm
    train_sub = trainer.train.subset(n_examples, cfg.seed)
    tok = trainer.tokenizer
    train_rows = [(tok.decode(ids, skip_special_tokens=True), int(y)) for ids, y in
                  zip(train_sub.input_ids, train_sub.labels.tolist())]
    val_rows = [(tok.decode(ids, skip_special_tokens=True), int(y)) for ids, y in
                zip(trainer.validation.input_ids, trainer.validation.labels.tolist())]
    naive_s, ours_s, naive_score, ours_score = [], [], [], []
    print(f"{'config':<58} {'naive s':>8} {'ours s':>7} {'ratio':>6} {'naive acc':>9} {'ours acc':>8}")
    for i in range(n_configs):
        values = space.sample(rng)
        config, hparams = space.decode(values)
        config = normalise_config(config, trainer.info)
        hparams = {"learning_rate": hparams.get("learning_rate", 1e-3)}
        t_naive, s_naive = naive_trial(cfg, config, hparams, train_rows, val_rows, cfg.seed, bf16=naive_bf16,
                                       group_by_length=args.naive == "best")
        start = time.perf_counter()
        result = trainer.run(config, hparams, seed=cfg.seed)
        t_ours = time.perf_counter() - start
        naive_s.append(t_naive), ours_s.append(t_ours), naive_score.append(s_naive), ours_score.append(result.score)
        desc = json.dumps(config.to_dict(), separators=(",", ":"))[:56] or "{}"
        print(f"{desc:<58} {t_naive:8.1f} {t_ours:7.1f} {t_naive / t_ours:6.2f} {s_naive:9.3f} {result.score:8.3f}",
              flush=True)
    ratios = [a / b for a, b in zip(naive_s, ours_s)]
    share = setup_s / n_configs  # the set-up, charged evenly to this run's trials
    ratios_setup = [a / (b + share) for a, b in zip(naive_s, ours_s)]
    summary = {"naive_s": naive_s, "autopeft_s": ours_s, "ratio_median": statistics.median(ratios),
               "setup_s": setup_s, "autopeft_s_with_setup": [b + share for b in ours_s],
               "ratio_median_with_setup": statistics.median(ratios_setup),
               "ratio_total_with_setup": sum(naive_s) / (setup_s + sum(ours_s)),
               "naive_settings": {"arm": args.naive, "bf16": naive_bf16, "group_by_length": args.naive == "best"},
               "naive_score": naive_score, "autopeft_score": ours_score,
               "score_mean_naive": float(np.mean(naive_score)), "score_mean_autopeft": float(np.mean(ours_score)),
               "configs": n_configs, "train_examples": n_examples, "threads": args.threads,
               "autopeft_precision": str(precision or "fp32"), **code_state()}
    print(f"median ratio naive/autopeft ({summary['autopeft_precision']}, naive {args.naive}): per trial "
          f"{summary['ratio_median']:.2f}; with the proxy's set-up ({setup_s:.1f}s) charged to the {n_configs} trials "
          f"{summary['ratio_median_with_setup']:.2f} (total seconds {summary['ratio_total_with_setup']:.2f})  "
          f"(mean accuracy naive {summary['score_mean_naive']:.3f}, autopeft {summary['score_mean_autopeft']:.3f})")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
