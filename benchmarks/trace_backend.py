"""Trace one backend on one evaluation-free problem: every proposal in order, with its objectives.

Shows *what* a backend spends its trials on (e.g. which layers it switches on, whether it lingers at the
small-params corner), which the league table's hypervolume numbers alone do not.

    python benchmarks/trace_backend.py mobo --problem peft-autopeft --seed 4 [--trials 50] [--startup 8]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    import optuna
    import torch

    from autopeft.optimizers import make_sampler
    from autopeft.pareto import hypervolume_history, pareto_mask
    from problems import get_problem

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("backend")
    ap.add_argument("--problem", default="peft-autopeft")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--startup", type=int, default=8)
    ap.add_argument("--options", default="{}", help="backend options as JSON")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("autopeft").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    problem = get_problem(args.problem)
    sampler = make_sampler(args.backend, problem.context(args.seed, args.startup, json.loads(args.options)))
    study = optuna.create_study(directions=list(problem.directions), sampler=sampler)
    values = []
    while len(values) < args.trials:
        trial = study.ask(problem.distributions())
        if problem.feasible is not None and not problem.feasible(trial.params):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        result = problem.evaluate(trial.params)
        values.append([result[o] for o in problem.objectives])
        study.tell(trial, values[-1])
        shown = " ".join(f"{o}={result[o]:.4g}" for o in problem.objectives)
        print(f"{len(values):3d} {shown}  {json.dumps(trial.params, default=str)}", flush=True)
    v = np.array(values)
    hv = hypervolume_history(v, problem.frame())[-1]
    print(f"HV@{args.trials} {hv:.4f}; {int(pareto_mask(v, list(problem.directions)).sum())} points on the front")
    return 0


if __name__ == "__main__":
    sys.exit(main())
