"""Tabulate real proxy evaluations of configurations drawn from the search spaces (benchmarks/spaces/).

Each row is one configuration trained once on MiniLM (2,000 training examples, 1 epoch) with the
validation score recorded after 250, 500, 1000 and 2000 examples (learning-curve snapshots of that
run: the fidelities), plus exact params, measured peak memory, the analytic memory estimate and seconds.
Appends to the CSV and resumes where it stopped; a second process with ``--order down`` shares the work
(the table is rewritten in row order, duplicates dropped, once every row is in).

    python benchmarks/collect_table.py --task sst2 --rows 300 --out benchmarks/data/peft_sst2.csv --threads 1 --lr searched

(that table predates the trained BERT pooler, so today's code no longer reproduces its scores;
benchmarks/data/peft_sst2_v2.csv is the current proxy's, with --lr kind).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from autopeft.adapters import normalise_config
from autopeft.config import StudyConfig
from autopeft.proxy import ProxyTrainer, resolve_precision
from problems import benchmark_space

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
FIDELITIES = (250, 500, 1000, 2000)


def _trec_coarse() -> dict[str, int]:
    """TREC's fine labels -> coarse class ids (ABBR, DESC, ENTY, HUM, LOC, NUM)."""
    if not (SHARED / "TREC").is_dir():
        return {}
    fine = {line.split(" ", 1)[0] for f in ("TREC.train", "TREC.test")
            for line in (SHARED / "TREC" / f).read_text(encoding="latin-1").splitlines() if line.strip()}
    coarse = sorted({f.split(":")[0] for f in fine})
    return {f: coarse.index(f.split(":")[0]) for f in sorted(fine)}


TASKS = {
    "sst2": dict(type="classification", metric="accuracy",
                 data=dict(train=str(SHARED / "SST-2/train.tsv"), validation=str(SHARED / "SST-2/dev.tsv"),
                           text="sentence", label="label")),
    "rte": dict(type="classification", metric="accuracy",
                data=dict(train=str(SHARED / "RTE/train.tsv"), validation=str(SHARED / "RTE/dev.tsv"),
                          text="sentence1", text_pair="sentence2", label="label")),
    # CoLA's files have no header: column 1 is the label, column 3 the sentence
    "cola": dict(type="classification", metric="mcc",
                 data=dict(train=str(SHARED / "CoLA/train.tsv"), validation=str(SHARED / "CoLA/dev.tsv"),
                           header=False, text=3, label=1)),
    "mrpc": dict(type="classification", metric="accuracy",
                 data=dict(train=str(SHARED / "MRPC/train.tsv"), validation=str(SHARED / "MRPC/dev.tsv"),
                           text="#1 String", text_pair="#2 String", label="Quality")),
    # TREC-6: the fine labels ("LOC:city") mapped to their 6 coarse classes
    "trec": dict(type="classification", metric="accuracy",
                 data=dict(train=str(SHARED / "TREC/TREC.train"), validation=str(SHARED / "TREC/TREC.test"),
                           format="tsv", delimiter=" ", max_columns=2, header=False, encoding="latin-1", text=1,
                           label=0, label_map=_trec_coarse())),
}
SPACES = ("autopeft", "lora")
COLUMNS = ["row", "task", "space", "values", "config", "hyperparameters", "params", "memory", "memory_estimate",
           *[f"score_{n}" for n in FIDELITIES], "seconds", "status", "precision", "validation_rows"]
#: validation_rows: the rows each score was measured on (500 dev rows for both SST-2 tables; the column was added
#: after they were collected, from the collector's eval_examples=500), which sets the replay's noise margin


def written_rows(path: Path) -> set[int]:
    """Row numbers already in the table."""
    with path.open() as f:
        return {int(r["row"]) for r in csv.DictReader(f)}


def sort_table(path: Path) -> None:
    """Rewrite the table in row order, one line per row (two processes append in any order)."""
    with path.open() as f:
        rows = {int(r["row"]): r for r in csv.DictReader(f)}
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows[k] for k in sorted(rows))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(TASKS), default="sst2")
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/data/peft_sst2.csv")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--order", choices=("up", "down"), default="up",
                    help="down: work from the last row backwards, so a second process can share the file "
                         "(each skips rows already written; they meet in the middle)")
    ap.add_argument("--lr", choices=["kind", "searched"], default="kind",
                    help="kind: each adapter kind's default rate, as the shipped spaces now train (draws are the "
                         "same either way); searched: the rate sampled from the space (peft_sst2.csv, sessions 1-2)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    cfg = StudyConfig.model_validate(dict(
        name=f"table-{args.task}", model="sentence-transformers/all-MiniLM-L6-v2", task=TASKS[args.task],
        search_space={}, proxy=dict(train_examples=2000, eval_examples=500, epochs=1, max_length=64,
                                    batch_size=32, threads=args.threads), seed=args.seed))
    trainer = ProxyTrainer(cfg)
    # rows before 109 were collected in fp32 (the proxy's precision then; the column was added with bf16)
    precision = str(resolve_precision(cfg.proxy.precision, trainer.device) or "fp32").replace("torch.", "")
    spaces = {name: benchmark_space(name, trainer.info.num_layers)
              for name in SPACES}
    if not args.out.exists():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as f:
            csv.writer(f).writerow(COLUMNS)
    rng = np.random.default_rng(args.seed)
    # draw the same sequence every time so a resumed run continues it
    draws = [(SPACES[i % len(SPACES)], None) for i in range(args.rows)]
    draws = [(name, spaces[name].sample(rng)) for name, _ in draws]
    order = range(args.rows) if args.order == "up" else range(args.rows - 1, -1, -1)
    for row in order:
        if row in written_rows(args.out):  # read each time: another process may share the file
            continue
        name, values = draws[row]
        config, hparams = spaces[name].decode(values)
        if args.lr == "kind":
            hparams.pop("learning_rate", None)
        config = normalise_config(config, trainer.info)
        start = time.perf_counter()
        status, result = "ok", None
        try:
            result = trainer.run(config, hparams, seed=args.seed, eval_at=FIDELITIES)
        except Exception as exc:  # recorded, the table goes on
            status = f"failed: {exc}"
        seconds = time.perf_counter() - start
        scores = [result.curve.get(n, "") if result else "" for n in FIDELITIES]
        with args.out.open("a", newline="") as f:
            csv.writer(f).writerow([row, args.task, name, json.dumps(values), json.dumps(config.to_dict()),
                                    json.dumps(hparams), result.params if result else "",
                                    result.memory if result else "", result.memory_estimate if result else "",
                                    *scores, f"{seconds:.2f}", status, precision, len(trainer.validation)])
        logging.info("row %d/%d %s params=%s score@2000=%s %.1fs", row + 1, args.rows, name,
                     result.params if result else "-", scores[-1], seconds)
    if written_rows(args.out) >= set(range(args.rows)):
        sort_table(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
