"""Do proxy runs rank configurations like full training? Kendall tau and Pareto agreement.

For each task, N configurations sampled from benchmarks/spaces/autopeft.yaml and lora.yaml are
trained twice with the same seed: at proxy fidelity (``--proxy-examples``, 1 epoch) and at full fidelity
(``--full-examples`` >= 10x the proxy's data, ``--full-epochs`` >= 3). Prints Kendall tau between the two
score vectors, and the agreement of Pareto membership over (score, params) (Jaccard index of the two
fronts, and the share of full-fidelity Pareto points the proxy also puts on its front).

    python benchmarks/proxy_fidelity.py [--quick] [--tasks sst2 rte] [--configs 30] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

REPO = Path(__file__).resolve().parents[1]
#: log keys added later, with the value the older lines were measured with (the pooler trains since session 4)
OLD_DEFAULTS = {"lr": "searched", "head": ["classifier"], "heldout": 0}
#: what makes two logged pairs the same experiment
SETTING_KEYS = ("task", "proxy_examples", "proxy_epochs", "full_examples", "full_epochs", "lr", "head", "heldout")


def heldout_task(task: dict, rows: int, where: Path) -> dict:
    """``task`` scored on ``rows`` training lines held out from training instead of the small dev split.

    The dev sets are small (SST-2 872 rows: sd 0.012 of one accuracy), and at full fidelity most configurations
    differ by less than that. The split is fixed (unique lines, shuffled with seed 0) and written under ``where``.
    Caveat for SST-2: its train split holds phrases of the same parse trees, so held-out phrases share text with
    training ones (scores run higher than on dev; the ranking question is what this is for).
    """
    data = task["data"]
    lines = Path(data["train"]).read_text(encoding="utf-8").splitlines()
    header, body = lines[0], list(dict.fromkeys(lines[1:]))  # duplicates would leak into the held-out rows
    np.random.default_rng(0).shuffle(body)
    if rows >= len(body):
        raise SystemExit(f"--heldout {rows}: the train split has only {len(body)} unique rows")
    where.mkdir(parents=True, exist_ok=True)
    (where / "train.tsv").write_text("\n".join([header, *body[rows:]]) + "\n", encoding="utf-8")
    (where / "heldout.tsv").write_text("\n".join([header, *body[:rows]]) + "\n", encoding="utf-8")
    return {**task, "data": {**data, "train": str(where / "train.tsv"), "validation": str(where / "heldout.tsv")}}
sys.path.insert(0, str(REPO / "benchmarks"))


def main(argv=None) -> int:
    from collect_table import TASKS, sample_values
    from problems import benchmark_space

    from autopeft.adapters import normalise_config
    from autopeft.config import StudyConfig
    from autopeft.pareto import pareto_mask
    from autopeft.proxy import ProxyTrainer, resolve_precision

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="8 configs, SST-2 only")
    ap.add_argument("--tasks", nargs="+", default=["sst2", "rte"], choices=sorted(TASKS))
    ap.add_argument("--configs", type=int, default=30)
    ap.add_argument("--proxy-examples", type=int, default=250)
    ap.add_argument("--proxy-epochs", type=float, default=1)
    ap.add_argument("--full-examples", type=int, default=2500)
    ap.add_argument("--full-epochs", type=float, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", choices=["kind", "searched"], default="kind",
                    help="kind: every run trains at its adapter kinds' default rates (the product's proxy when the "
                    "space does not search the rate); searched: the rate sampled from the space's range")
    ap.add_argument("--heldout", type=int, default=0, help="score both fidelities on N training rows held out "
                    "from training (0: the dev split)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--shard", default="0/1", help="K/N: this process trains configs i with i %% N == K (N "
                    "processes sharing one --log; the one that finds every config logged prints the summary)")
    ap.add_argument("--log", type=Path, help="JSON-lines file of finished configs: read (those are skipped), then "
                    "appended to, so a stopped run resumes")
    args = ap.parse_args(argv)
    if args.quick:
        args.configs, args.tasks = 8, ["sst2"]
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)
    out = {}
    for task in args.tasks:
        cfg = StudyConfig.model_validate(dict(
            name=f"fidelity-{task}", model="sentence-transformers/all-MiniLM-L6-v2",
            task=heldout_task(TASKS[task], args.heldout, Path(tempfile.gettempdir()) / f"autopeft-heldout-{task}-"
                              f"{args.heldout}") if args.heldout else TASKS[task],
            search_space={}, proxy=dict(train_examples=args.proxy_examples, epochs=1, max_length=128 if task == "rte"
                                        else 64, batch_size=32, threads=args.threads, measure_memory=False), seed=0))
        trainer = ProxyTrainer(cfg)
        spaces = [benchmark_space(n, trainer.info.num_layers)
                  for n in ("autopeft", "lora")]
        rng = np.random.default_rng(7)
        proxy_scores, full_scores, params = [], [], []
        setting = dict(task=task, proxy_examples=args.proxy_examples, proxy_epochs=args.proxy_epochs,
                       full_examples=args.full_examples, full_epochs=args.full_epochs, lr=args.lr, heldout=args.heldout,
                       head=list(trainer.info.arch.head))
        done = {}
        if args.log and args.log.exists():
            for line in args.log.read_text().splitlines():
                rec = {**OLD_DEFAULTS, **json.loads(line)}  # lines written before these keys existed
                if all(rec.get(k) == v for k, v in setting.items()):
                    done[rec["index"]] = rec
        start = time.perf_counter()
        shard, shards = map(int, args.shard.split("/"))
        for i in range(args.configs):
            space = spaces[i % 2]
            config, hparams = space.decode(sample_values(space, rng))  # drawn even when logged: same sequence
            if args.lr == "kind":
                hparams.pop("learning_rate", None)
            if i not in done and i % shards == shard:
                config = normalise_config(config, trainer.info)
                p = trainer.run(config, {**hparams, "epochs": args.proxy_epochs}, seed=0)
                f = trainer.run(config, {**hparams, "epochs": args.full_epochs}, seed=0,
                                train_examples=args.full_examples)
                done[i] = {**setting, "index": i, "space": ("autopeft", "lora")[i % 2],
                           "config": config.to_dict(),
                           "hparams": hparams, "params": p.params, "proxy": p.score, "full": f.score,
                           "proxy_s": p.seconds, "full_s": f.seconds,
                           "precision": str(resolve_precision(cfg.proxy.precision, trainer.device) or "fp32")}
                if args.log:
                    with args.log.open("a") as fh:
                        fh.write(json.dumps(done[i]) + "\n")
            if i not in done:
                continue
            rec = done[i]
            proxy_scores.append(rec["proxy"]), full_scores.append(rec["full"]), params.append(rec["params"])
            print(f"{task} {i + 1}/{args.configs}: params {rec['params']:>8} proxy {rec['proxy']:.3f} "
                  f"({rec['proxy_s']:.0f}s) full {rec['full']:.3f} ({rec['full_s']:.0f}s)", flush=True)
        if args.log and len(proxy_scores) < args.configs:  # other shards still at work: reread what they logged
            for line in args.log.read_text().splitlines():
                rec = {**OLD_DEFAULTS, **json.loads(line)}
                if all(rec.get(k) == v for k, v in setting.items()) and rec["index"] not in done:
                    done[rec["index"]] = rec
            recs = [done[i] for i in sorted(done)]
            proxy_scores, full_scores, params = ([r[k] for r in recs] for k in ("proxy", "full", "params"))
        if len(proxy_scores) < args.configs:
            print(f"{task}: {len(proxy_scores)}/{args.configs} configs logged; the other shards have the rest")
            continue
        tau = float(kendalltau(proxy_scores, full_scores).statistic)
        # within one space the proxy ranks one kind's configs; across spaces, kinds must also be calibrated
        by_space = {name: float(kendalltau(*zip(*[(done[i]["proxy"], done[i]["full"]) for i in range(args.configs)
                                                  if done[i]["space"] == name])).statistic)
                    for name in ("autopeft", "lora")}
        front_p = pareto_mask(np.c_[proxy_scores, params], ["maximize", "minimize"])
        front_f = pareto_mask(np.c_[full_scores, params], ["maximize", "minimize"])
        jaccard = float((front_p & front_f).sum() / max(1, (front_p | front_f).sum()))
        recall = float((front_p & front_f).sum() / max(1, front_f.sum()))
        hv_share = front_hypervolume_share(np.array(full_scores), np.array(params), front_p)
        out[task] = {"kendall_tau": tau, "kendall_tau_by_space": by_space, "front_hv_share": hv_share,
                     "pareto_jaccard": jaccard, "pareto_recall": recall,
                     "configs": args.configs, "proxy_examples": min(args.proxy_examples, len(trainer.train)),
                     "full_examples": min(args.full_examples, len(trainer.train)), "full_epochs": args.full_epochs,
                     "proxy_epochs": args.proxy_epochs,
                     "seconds": time.perf_counter() - start,
                     "proxy_scores": proxy_scores, "full_scores": full_scores, "params": params}
        print(f"{task}: Kendall tau {tau:.3f} (within autopeft.yaml {by_space['autopeft']:.3f}, within lora.yaml "
              f"{by_space['lora']:.3f}); Pareto Jaccard {jaccard:.2f}, recall {recall:.2f}; "
              f"the proxy front's configs hold {hv_share:.0%} of the full front's hypervolume "
              f"({args.configs} configs, proxy {out[task]['proxy_examples']} ex x {args.proxy_epochs:g} epochs vs full "
              f"{out[task]['full_examples']} ex x {args.full_epochs:g} epochs)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


def front_hypervolume_share(full: np.ndarray, params: np.ndarray, chosen: np.ndarray) -> float:
    """Hypervolume, at full fidelity, of the configs the proxy put on its front, as a share of the full front's.

    What a user keeps by picking from the proxy's front and refining: over (score, log10 params), normalised to
    the configs' ranges, reference point 1.1 beyond the worst, as in multifidelity_sim.py.
    """
    from multifidelity_sim import hypervolume_2d

    losses = np.c_[-full, np.log10(params + 1.0)]
    lo, span = losses.min(0), np.ptp(losses, axis=0)
    norm = (losses - lo) / np.where(span > 0, span, 1.0)
    return hypervolume_2d(norm[chosen], (1.1, 1.1)) / hypervolume_2d(norm, (1.1, 1.1))


if __name__ == "__main__":
    sys.exit(main())
