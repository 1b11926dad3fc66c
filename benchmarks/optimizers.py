"""League table of the search backends on evaluation-free problems (benchmarks/problems/).

Every backend is driven exactly as a study drives it (an Optuna sampler built by
``autopeft.optimizers.make_sampler`` from the problem's SamplerContext, asked and told trial by trial);
the proxy run is replaced by the problem's ``evaluate``. Per backend and problem it prints mean ± sd over
seeds of: hypervolume after 10/25/50 trials (objectives normalised to [0, 1] between their best value
and the fixed reference point, params and memory on a log scale), IGD+ where the front is known,
trials the mean curve needs to reach 90 % of the best final mean hypervolume of any backend, and
seconds per suggestion (the ask, which is where the backend works).

    python benchmarks/optimizers.py [--quick] [--json PATH] [--jobs 2]

``--quick``: 2 seeds instead of 10, 20 trials instead of 50, problems peft-autopeft and mixed-zdt,
2 worker processes (Ax alone needs ~5-8 s per suggestion here, which is what bounds it).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

# every backend fits small models; BLAS threads on such tiny matrices only spin (and on a busy machine
# slow scipy's L-BFGS-B ~50x), so all backends get one BLAS thread, set before numpy loads
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

BACKENDS = ("mobo", "gp", "tpe", "nsga2", "random", "ax")
CHECKPOINTS = (10, 25, 50)


def checkpoints(trials: int) -> list[int]:
    return sorted({c for c in CHECKPOINTS if c < trials} | {trials})


def igd_plus(losses: np.ndarray, front: np.ndarray) -> float:
    """IGD+ (Ishibuchi et al. 2015) of normalised losses against the normalised true front."""
    d = np.maximum(losses[None, :, :] - front[:, None, :], 0.0)
    return float(np.sqrt((d ** 2).sum(-1)).min(1).mean())


def run_one(backend: str, problem_name: str, seed: int, trials: int, startup: int,
            options: dict[str, Any] | None = None, label: str | None = None) -> dict[str, Any]:
    """One backend on one problem with one seed: the hypervolume curve, IGD+, ask seconds."""
    import optuna
    import torch

    from autopeft.optimizers import make_sampler
    from autopeft.pareto import hypervolume_history
    from problems import get_problem

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    logging.getLogger("autopeft").setLevel(logging.ERROR)
    problem = get_problem(problem_name)
    sampler = make_sampler(backend, problem.context(seed, startup, options))
    study = optuna.create_study(directions=list(problem.directions), sampler=sampler)
    dists = problem.distributions()
    frame = problem.frame()
    values, asks, wasted = [], [], 0
    while len(values) < trials:
        start = time.perf_counter()
        trial = study.ask(dists)
        asks.append(time.perf_counter() - start)
        if problem.feasible is not None and not problem.feasible(trial.params):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            wasted += 1
            if wasted > 10 * trials:
                raise RuntimeError(f"{backend} keeps proposing infeasible points on {problem_name}")
            continue
        result = problem.evaluate(trial.params)
        row = [result[o] for o in problem.objectives]
        study.tell(trial, row)
        values.append(row)
    curve = hypervolume_history(np.array(values), frame).tolist()
    out = {"backend": label or backend, "problem": problem_name, "seed": seed, "hv": curve,
           "s_per_suggest": float(np.mean(asks)), "s_last10": float(np.mean(asks[-10:])), "infeasible_asks": wasted}
    if problem.true_front is not None:
        out["igd_plus"] = igd_plus(problem.normalise(np.array(values)), problem.normalise(problem.true_front))
    return out


def summarise(results: list[dict[str, Any]], trials: int) -> dict[str, dict[str, dict[str, float]]]:
    table: dict[str, dict[str, dict[str, float]]] = {}
    by = {}
    for r in results:
        by.setdefault((r["backend"], r["problem"]), []).append(r)
    best_final = {}
    for (b, p), runs in by.items():
        curves = np.array([r["hv"] for r in runs])
        best_final[p] = max(best_final.get(p, 0.0), float(curves[:, -1].mean()))
    for (b, p), runs in by.items():
        curves = np.array([r["hv"] for r in runs])
        mean = curves.mean(0)
        cell: dict[str, float] = {}
        for c in checkpoints(trials):
            cell[f"hv{c}_mean"] = float(curves[:, c - 1].mean())
            cell[f"hv{c}_sd"] = float(curves[:, c - 1].std(ddof=1)) if len(runs) > 1 else 0.0
        reach = np.nonzero(mean >= 0.9 * best_final[p])[0]
        cell["trials_to_90pct"] = int(reach[0]) + 1 if len(reach) else None
        cell["s_per_suggest"] = float(np.mean([r["s_per_suggest"] for r in runs]))
        cell["s_per_suggest_last10"] = float(np.mean([r["s_last10"] for r in runs]))
        if "igd_plus" in runs[0]:
            igd = np.array([r["igd_plus"] for r in runs])
            cell["igd_plus_mean"], cell["igd_plus_sd"] = float(igd.mean()), float(igd.std(ddof=1)) if len(igd) > 1 else 0.0
        cell["seeds"] = len(runs)
        table.setdefault(b, {})[p] = cell
    return table


def render(table: dict, problems: list[str], trials: int) -> str:
    lines = []
    for p in problems:
        lines.append(f"\n### {p}\n")
        cols = [f"HV@{c}" for c in checkpoints(trials)] + ["IGD+", "trials to 90%", "s/suggest", "s/suggest, last 10"]
        lines.append("| backend | " + " | ".join(cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        best = max(table[b][p][f"hv{trials}_mean"] if f"hv{trials}_mean" in table[b][p] else 0 for b in table if p in table[b])
        for b in table:
            if p not in table[b]:
                continue
            c = table[b][p]
            cells = []
            for k in checkpoints(trials):
                text = f"{c[f'hv{k}_mean']:.4f} ± {c[f'hv{k}_sd']:.4f}"
                if k == trials and math.isclose(c[f"hv{k}_mean"], best):
                    text = f"**{text}**"
                cells.append(text)
            cells.append(f"{c['igd_plus_mean']:.4f} ± {c['igd_plus_sd']:.4f}" if "igd_plus_mean" in c else "–")
            cells.append(str(c["trials_to_90pct"]) if c["trials_to_90pct"] else f">{trials}")
            cells.append(f"{c['s_per_suggest']:.3f}")
            cells.append(f"{c['s_per_suggest_last10']:.3f}")
            lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 seeds x 20 trials, peft-autopeft + mixed-zdt, 2 jobs")
    ap.add_argument("--json", type=Path, help="write {backend: {problem: {hv50_mean, hv50_sd, s_per_suggest, ...}}}")
    ap.add_argument("--seeds", type=int, help="seeds per backend and problem (default 10, --quick 2)")
    ap.add_argument("--trials", type=int, help="trials per run (default 50, --quick 20)")
    ap.add_argument("--startup", type=int, default=8, help="initial (random / space-filling) trials, every backend")
    ap.add_argument("--backends", nargs="*", default=list(BACKENDS))
    ap.add_argument("--problems", nargs="+", help="default: every problem (--quick: PEFT ones + mixed-zdt)")
    ap.add_argument("--jobs", type=int, help="worker processes, each single-threaded (default 1, --quick 2)")
    ap.add_argument("--runs", type=Path, help="JSON-lines file of finished runs: read (those are skipped), then "
                    "appended to; a long table survives an interruption")
    ap.add_argument("--rows", type=int, help="PEFT problems: only the first N successful table rows (default: all)")
    ap.add_argument("--variant", nargs=3, action="append", default=[], metavar=("LABEL", "BACKEND", "JSON"),
                    help="also run BACKEND with options JSON under LABEL (ablations)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from problems import get_problem, peft_table, problem_names

    peft_table.ROW_LIMIT = args.rows

    args.trials = args.trials or (20 if args.quick else 50)
    args.jobs = args.jobs or (2 if args.quick else 1)
    problems = args.problems or (["peft-autopeft", "mixed-zdt"] if args.quick else problem_names())
    available = []
    for p in problems:
        try:
            get_problem(p)
            available.append(p)
        except LookupError as exc:
            logging.warning("skipping %s: %s", p, exc)
    seeds = args.seeds or (2 if args.quick else 10)
    table_rows = None
    if any(p.startswith("peft-") for p in available):
        rows = peft_table.table_problem().rows
        table_rows = len(rows)
        acc = peft_table.surrogate_accuracy(rows)
        logging.info("PEFT surrogate (random forest, 5-fold held-out, score_2000, %d rows): R^2 %.3f, Spearman %.3f, "
                     "MAE %.4f (score sd %.4f)", acc["rows"], acc["r2"], acc["spearman"], acc["mae"], acc["target_sd"])
    runs = [(b, b, {}) for b in args.backends] + [(lab, b, json.loads(o)) for lab, b, o in args.variant]
    # seed-major order: an interrupted table still has every backend on every problem for the first seeds
    jobs = [(b, p, s, args.trials, args.startup, o, lab) for s in range(seeds) for p in available
            for lab, b, o in runs]
    start = time.perf_counter()
    results = []
    if args.runs and args.runs.exists():
        wanted = {(j[6], j[1], j[2]) for j in jobs}
        for line in args.runs.read_text().splitlines():
            r = json.loads(line)
            # a PEFT run counts only on the table it ran on (the surrogate changes as the table grows)
            same_table = not r["problem"].startswith("peft-") or (
                r.get("table_rows") == table_rows and r.get("surrogate", 1) == peft_table.SURROGATE_VERSION)
            if (r["backend"], r["problem"], r["seed"]) in wanted and len(r["hv"]) == args.trials and same_table:
                results.append(r)
        done = {(r["backend"], r["problem"], r["seed"]) for r in results}
        jobs = [j for j in jobs if (j[6], j[1], j[2]) not in done]
        logging.info("%d runs read from %s, %d to go", len(results), args.runs, len(jobs))

    def record(r: dict[str, Any]) -> None:
        if r["problem"].startswith("peft-"):
            r["table_rows"] = table_rows
            r["surrogate"] = peft_table.SURROGATE_VERSION
        results.append(r)
        logging.info("%s / %s / seed %d: HV@%d %.4f", r["backend"], r["problem"], r["seed"], args.trials, r["hv"][-1])
        if args.runs:
            with args.runs.open("a") as f:
                f.write(json.dumps(r) + "\n")

    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(run_one, *j) for j in jobs]
            for f in futures:
                record(f.result())
    else:
        for j in jobs:
            record(run_one(*j))
    table = summarise(results, args.trials)
    print(f"\n{len(runs)} backends x {len(available)} problems x {seeds} seeds x {args.trials} trials "
          f"in {time.perf_counter() - start:.0f}s on {platform.machine()} with {os.cpu_count()} cores, "
          f"--jobs {args.jobs}")
    print(render(table, available, args.trials))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
