"""Simulated study-level compute to reach 95 % of the reference hypervolume: MO-ASHA vs single fidelity.

Replays the tabulated benchmark (benchmarks/data/peft_*.csv: every configuration's score after 250, 500,
1000 and 2000 training examples, and its seconds at 2000). Configurations arrive in a random order (the
same order for both arms, 50 orders); each arm pays compute in proportion to the examples a trial trains on:

- single fidelity: every trial trains on all 2000 examples;
- MO-ASHA (autopeft/rungs.py, the code the study runs): a trial reaching rung r continues if it is in the
  top 1/eta, by non-dominated sorting over (score at r, params), of the trials that reached r, or if none of
  them with no more params beats its score by more than the noise margin (the study's default,
  ``rungs.noise_margin``, on the rows the scores were measured on: the CSV's ``validation_rows`` column or the
  fidelity log's held-out rows, unless ``--validation-rows`` overrides it); ``--top-only`` replays the rule
  without the margin.

Hypervolume: score (maximise) x log10(params + 1) (minimise) of the completed trials' full-fidelity scores,
normalised by the table's bounds, against a fixed reference point; the reference hypervolume is that of
the whole table. Prints the median compute each arm needs to reach 95 % of it, and the ratio.

    python benchmarks/multifidelity_sim.py [--csv benchmarks/data/peft_sst2.csv] [--eta 3] [--orders 50] [--json PATH]
    python benchmarks/multifidelity_sim.py --fidelity-log benchmarks/data/proxy_fidelity.jsonl --task sst2

The second form replays benchmarks/proxy_fidelity.py's pairs instead: the proxy is the low fidelity, full
training (>= 10x the data, >= 3 epochs) the high one, each with its measured seconds.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from autopeft.pareto import REFERENCE_MARGIN, hypervolume_2d, range_normalise, to_minimisation  # noqa: E402
from autopeft.rungs import noise_margin, promote  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIDELITIES = (250, 500, 1000, 2000)
DIRECTIONS = ["maximize", "minimize"]


@dataclass
class Table:
    """Configurations scored at increasing fidelities.

    ``cost[i, j]``: seconds the multi-fidelity arm has spent on configuration i once it has its score at
    fidelity j; ``single_cost[i]``: seconds of the single-fidelity arm's one run at the top fidelity.
    """

    fidelities: list[str]
    scores: np.ndarray  # (n, F)
    params: np.ndarray  # (n,) log10(params + 1)
    cost: np.ndarray  # (n, F)
    single_cost: np.ndarray  # (n,)
    validation_rows: int = 0  # rows the scores were measured on (0: not recorded)


def load(path: Path) -> Table:
    """The tabulated benchmark: scores after 250/500/1000/2000 examples are snapshots of one run, so
    stopping at fidelity f costs that run's seconds times f / 2000."""
    scores, params, seconds, rows = [], [], [], set()
    with path.open() as f:
        for row in csv.DictReader(f):
            if row["status"] != "ok" or not row["score_2000"]:
                continue
            rows.add(int(row.get("validation_rows") or 0))
            scores.append([float(row[f"score_{n}"]) for n in FIDELITIES])
            params.append(np.log10(float(row["params"]) + 1))
            seconds.append(float(row["seconds"]))
    if len(rows) > 1:
        raise SystemExit(f"{path}: rows scored on different numbers of validation rows {sorted(rows)}")
    seconds = np.array(seconds)
    return Table([str(n) for n in FIDELITIES], np.array(scores), np.array(params),
                 seconds[:, None] * np.array(FIDELITIES)[None, :] / FIDELITIES[-1], seconds,
                 rows.pop() if rows else 0)


def load_fidelity_log(path: Path, task: str) -> Table:
    """benchmarks/proxy_fidelity.py's log: separate runs per configuration at each proxy budget and at full
    fidelity (seed 0). A configuration promoted to fidelity j has paid every run up to j (each starts afresh);
    the single-fidelity arm pays the full run alone."""
    from proxy_fidelity import ENV_KEYS, load_runs

    runs = [r for r in load_runs(path).values() if r["task"] == task and r["seed"] == 0]
    if not runs:
        raise SystemExit(f"no '{task}' runs in {path}")
    # one experiment: the newest environment that trained the log's top fidelity (the log holds several, e.g. dev
    # vs held-out scores, and proxy-only ones that proxy_fidelity.py compares with another environment's full runs)
    def env(run):
        return tuple(json.dumps(run[k]) for k in ENV_KEYS)

    def size(run):
        return run["examples"] * float(run["epochs"])

    top = max(map(size, runs))
    r0 = next(r for r in reversed(runs) if size(r) == top)
    runs = [r for r in runs if env(r) == env(r0)]
    by = {(r["index"], r["examples"], float(r["epochs"])): r for r in runs}
    fids = sorted({(r["examples"], float(r["epochs"])) for r in runs}, key=lambda f: f[0] * f[1])
    idx = sorted(i for i in {r["index"] for r in runs} if all((i, *f) in by for f in fids))
    print(f"fidelity log: {len(idx)} configurations with runs at {fids}, " +
          ", ".join(f"{k}={r0[k]}" for k in ENV_KEYS))
    seconds = np.array([[by[(i, *f)]["seconds"] for f in fids] for i in idx])
    return Table([f"{e}x{ep:g}" for e, ep in fids], np.array([[by[(i, *f)]["score"] for f in fids] for i in idx]),
                 np.log10(np.array([by[(i, *fids[0])]["params"] for i in idx], dtype=float) + 1),
                 np.cumsum(seconds, axis=1), seconds[:, -1], int(r0.get("heldout") or 0))


#: reference point of the normalised frame (see normalised_losses): the derived one, the worst value plus
#: pareto.REFERENCE_MARGIN of the range (1.1)
REF = (1.0 + REFERENCE_MARGIN,) * 2


def normalised_losses(scores: np.ndarray, log_params: np.ndarray) -> np.ndarray:
    """(n, 2) losses -score and log10 params, scaled to [0, 1] over the n configurations' ranges: the frame
    this script and proxy_fidelity.py measure hypervolume in (pareto.hypervolume_2d), with reference point REF."""
    return range_normalise(to_minimisation(np.stack([scores, log_params], axis=1), DIRECTIONS))


def simulate(order, table: Table, eta, rungs: list[int], points: np.ndarray, multi, margin=None):
    """Cumulative compute and hypervolume after each trial of one arm; ``rungs`` index table.fidelities,
    ``points`` are the configurations' normalised top-fidelity losses; ``margin(score)`` is the promotion's noise
    margin (None: top 1/eta only)."""
    reached: dict[int, list[list[float]]] = {r: [] for r in rungs}
    done_points, spent, trace = [], 0.0, []
    top = len(table.fidelities) - 1
    for i in order:
        stop = top
        if multi:
            for r in rungs:
                vec = [table.scores[i, r], table.params[i]]
                ok = promote(vec, reached[r], DIRECTIONS, eta, score_margin=margin(vec[0]) if margin else None)
                reached[r].append(vec)
                if not ok:
                    stop = r
                    break
        spent += table.cost[i, stop] if multi else table.single_cost[i]
        if stop == top:
            done_points.append(points[i])
        trace.append((spent, hypervolume_2d(np.array(done_points), REF) if done_points else 0.0))
    return trace


def compute_to_reach(trace, target):
    return next((spent for spent, hv in trace if hv >= target), float("inf"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, default=REPO / "benchmarks/data/peft_sst2.csv")
    ap.add_argument("--fidelity-log", type=Path, help="use benchmarks/proxy_fidelity.py's --log instead: two "
                    "fidelities, the proxy and full training (separate runs)")
    ap.add_argument("--task", default="sst2", help="with --fidelity-log")
    ap.add_argument("--eta", type=float, default=3.0)
    ap.add_argument("--rungs", type=int, nargs="+",
                    help="training examples of the rungs (default: the CSV's 250 500 1000, or every proxy budget "
                    "in the fidelity log)")
    ap.add_argument("--orders", type=int, default=50)
    ap.add_argument("--fraction", type=float, default=0.95)
    ap.add_argument("--validation-rows", type=int, help="rows the rung scores were measured on, for the noise "
                    "margin (default: the CSV's validation_rows column, or the fidelity log's held-out rows)")
    ap.add_argument("--rung-margin", type=float, help="a fixed margin instead (proxy.rung_margin)")
    ap.add_argument("--top-only", action="store_true", help="promote the top 1/eta only (the rule before session 6)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.fidelity_log:
        table, source = load_fidelity_log(args.fidelity_log, args.task), args.fidelity_log.name
        budgets = [int(f.split("x")[0]) for f in table.fidelities[:-1]]
        rungs = [budgets.index(r) for r in args.rungs] if args.rungs else list(range(len(budgets)))
    else:
        table, source = load(args.csv), args.csv.name
        rungs = [FIDELITIES.index(r) for r in args.rungs or (250, 500, 1000)]
    rows = args.validation_rows or table.validation_rows
    if args.top_only:
        margin = None
    elif args.rung_margin is not None:
        margin = lambda score: args.rung_margin  # noqa: E731
    elif not rows:
        raise SystemExit("the table does not record how many rows its scores were measured on (a fidelity log "
                         "scored on the dev split, or a CSV without validation_rows): give it with --validation-rows")
    else:
        from collect_table import TASKS

        metric = TASKS[args.task]["metric"] if args.fidelity_log else "accuracy"  # the CSV tables are SST-2's
        margin = lambda score: noise_margin(metric, score, rows)  # noqa: E731
    n = len(table.scores)
    points = normalised_losses(table.scores[:, -1], table.params)
    reference = hypervolume_2d(points, REF)
    target = args.fraction * reference
    rng = np.random.default_rng(0)
    single, multi = [], []
    for _ in range(args.orders):
        order = rng.permutation(n)
        single.append(compute_to_reach(simulate(order, table, args.eta, rungs, points, False), target))
        multi.append(compute_to_reach(simulate(order, table, args.eta, rungs, points, True, margin), target))
    reached_multi = [m for m in multi if np.isfinite(m)]
    s_med, m_med = float(np.median(single)), float(np.median(multi))
    rank_tau = kendall_between_fidelities(table.scores)
    rung_names = [table.fidelities[r] for r in rungs]
    print(f"table: {source}, {n} configurations; reference hypervolume {reference:.4f}")
    print(f"Kendall tau of scores vs the top fidelity ({table.fidelities[-1]}): " +
          ", ".join(f"{f}: {t:.2f}" for f, t in zip(table.fidelities[:-1], rank_tau)))
    print(f"compute (s) to reach {args.fraction:.0%} of it, median over {args.orders} orders: single fidelity "
          f"{s_med:.0f}, MO-ASHA (rungs {rung_names}, eta {args.eta:g}, "
          f"{'top 1/eta only' if margin is None else 'with the noise margin'}) {m_med:.0f}; ratio {s_med / m_med:.2f}; "
          f"MO-ASHA reached it in {len(reached_multi)}/{args.orders} orders")
    if args.json:
        command = " ".join(["python benchmarks/multifidelity_sim.py",
                            *(str(a) for a in (sys.argv[1:] if argv is None else argv))])
        args.json.write_text(json.dumps({"command": command, "source": source, "task": args.task if args.fidelity_log else "sst2",
                                         "eta": args.eta, "rule": "top-only" if margin is None else "noise margin",
                                         "validation_rows": rows, "configs": n, "single_median_s": s_med,
                                         "multi_median_s": m_med,
                                         "ratio": s_med / m_med, "multi_reached": len(reached_multi),
                                         "orders": args.orders, "rungs": rung_names,
                                         "kendall_tau": dict(zip(table.fidelities[:-1], rank_tau))}, indent=2))
    return 0


def kendall_between_fidelities(scores: np.ndarray) -> list[float]:
    from scipy.stats import kendalltau

    return [float(kendalltau(scores[:, j], scores[:, -1]).statistic) for j in range(scores.shape[1] - 1)]


if __name__ == "__main__":
    sys.exit(main())
