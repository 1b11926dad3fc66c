"""Seconds per trial: naive (fresh model + Hugging Face Trainer) vs the autopeft proxy, side by side.

Both train the same configurations (sampled from benchmarks/spaces/autopeft.yaml) on the same SST-2
examples for the same epochs with the same constant-after-warm-up schedule, and score the same
validation rows. The naive arm does what a user without autopeft would: load the model, attach the
adapters, tokenise, `Trainer.train()`, `Trainer.predict()` — per trial. The autopeft arm is
`ProxyTrainer.run` (model and tokens loaded once, length-bucketed batches, frozen-prefix activation
cache, plus one profiled step for the memory objective, which the naive arm does not pay for).

    python benchmarks/proxy_speed.py [--quick] [--json PATH] [--threads 2] [--precision fp32]
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


def naive_trial(cfg, config, hparams, train_rows, val_rows, seed: int) -> tuple[float, float]:
    """Fresh model + tokenisation + HF Trainer, as a user would write it. Returns (seconds, score)."""
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
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, num_train_epochs=cfg.proxy.epochs, learning_rate=lr,
                                 per_device_train_batch_size=cfg.proxy.batch_size, per_device_eval_batch_size=128,
                                 lr_scheduler_type="constant_with_warmup",
                                 warmup_steps=int(math.ceil(len(train) / cfg.proxy.batch_size) * cfg.proxy.epochs
                                                  * cfg.proxy.warmup_ratio),
                                 max_grad_norm=cfg.proxy.max_grad_norm, save_strategy="no", report_to=[],
                                 logging_strategy="no", seed=seed, use_cpu=True, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tok))
        trainer.train()
        pred = trainer.predict(val)
    score = get_metric("accuracy")(pred.predictions.argmax(-1), pred.label_ids)
    return time.perf_counter() - start, float(score)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 configs, 1,000 examples")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", type=int, default=10)
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="the autopeft arm's proxy.precision (the naive arm trains in fp32)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)
    n_configs, n_examples = (3, 1000) if args.quick else (args.configs, args.examples)

    from autopeft.adapters import normalise_config
    from autopeft.config import StudyConfig
    from autopeft.proxy import ProxyTrainer, resolve_precision

    sys.path.insert(0, str(REPO / "benchmarks"))
    from collect_table import TASKS, sample_values
    from problems import benchmark_space

    cfg = StudyConfig.model_validate(dict(
        name="proxy-speed", model="sentence-transformers/all-MiniLM-L6-v2", task=TASKS["sst2"],
        search_space={}, proxy=dict(train_examples=n_examples, eval_examples=500, epochs=1, max_length=64,
                                    batch_size=32, threads=args.threads, precision=args.precision), seed=0))
    trainer = ProxyTrainer(cfg)
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
        values = sample_values(space, rng)
        config, hparams = space.decode(values)
        config = normalise_config(config, trainer.info)
        hparams = {"learning_rate": hparams.get("learning_rate", 1e-3)}
        t_naive, s_naive = naive_trial(cfg, config, hparams, train_rows, val_rows, cfg.seed)
        start = time.perf_counter()
        result = trainer.run(config, hparams, seed=cfg.seed)
        t_ours = time.perf_counter() - start
        naive_s.append(t_naive), ours_s.append(t_ours), naive_score.append(s_naive), ours_score.append(result.score)
        desc = json.dumps(config.to_dict(), separators=(",", ":"))[:56] or "{}"
        print(f"{desc:<58} {t_naive:8.1f} {t_ours:7.1f} {t_naive / t_ours:6.2f} {s_naive:9.3f} {result.score:8.3f}",
              flush=True)
    ratios = [a / b for a, b in zip(naive_s, ours_s)]
    summary = {"naive_s": naive_s, "autopeft_s": ours_s, "ratio_median": statistics.median(ratios),
               "naive_score": naive_score, "autopeft_score": ours_score,
               "score_mean_naive": float(np.mean(naive_score)), "score_mean_autopeft": float(np.mean(ours_score)),
               "configs": n_configs, "train_examples": n_examples, "threads": args.threads,
               "autopeft_precision": str(resolve_precision(cfg.proxy.precision, trainer.device) or "fp32")}
    print(f"median ratio naive/autopeft ({summary['autopeft_precision']}): {summary['ratio_median']:.2f}  (mean accuracy naive "
          f"{summary['score_mean_naive']:.3f}, autopeft {summary['score_mean_autopeft']:.3f})")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
