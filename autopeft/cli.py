"""Command line: parses arguments, calls the Python API, prints. Bad input exits 2 with one line."""
from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from typing import Sequence

from .errors import AutoPEFTError

logger = logging.getLogger("autopeft")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autopeft", description="Search parameter-efficient fine-tuning configurations.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    def study_cmd(name: str, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help)
        s.add_argument("study", help="study YAML file")
        s.add_argument("--storage", help="storage URL (overrides the YAML and $AUTOPEFT_STORAGE)")
        return s

    run = study_cmd("run", "run or resume a study")
    run.add_argument("--trials", type=int, help="total trials the study should hold (default: budget.trials)")
    run.add_argument("--timeout", type=float, help="wall-clock limit in seconds (default: budget.time)")
    study_cmd("validate", "check a study file, its model, data and space; print the space size")
    pareto = study_cmd("pareto", "print the Pareto front")
    pareto.add_argument("--format", choices=["table", "csv", "json"], default="table")
    status = study_cmd("status", "trial counts and failure reasons")
    del status
    export = study_cmd("export", "export a trial's configuration (and, with --train, trained weights)")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="trial number (see 'autopeft pareto')")
    which.add_argument("--pick", metavar="RULE",
                       help="knee | max-score | 'params<=N' | 'memory<=N' (e.g. 'params<=1e5', 'memory<=500MB')")
    export.add_argument("-o", "--output", required=True, help="output directory")
    export.add_argument("--train", action="store_true",
                        help="train the configuration at full fidelity (whole train split) and save the weights")
    report = study_cmd("report", "write the interactive report: one self-contained HTML file")
    report.add_argument("-o", "--output", default="report.html", help="HTML file to write (default: report.html)")
    report.add_argument("--compare", nargs="+", default=[], metavar="NAME",
                        help="other studies in the same storage to draw beside it in the hypervolume plot")
    dashboard = study_cmd("dashboard", "serve a live report that refreshes while the study runs")
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    dashboard.add_argument("--port", type=int, default=8050, help="port (default 8050; 0 = any free port)")
    dashboard.add_argument("--interval", type=float, default=5.0, help="seconds between refreshes (default 5)")
    train = sub.add_parser("train", help="re-run the training of an exported recipe (autopeft.yaml)")
    train.add_argument("recipe", help="autopeft.yaml written by 'autopeft export'")
    train.add_argument("-o", "--output", help="output directory (default: the recipe's directory)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return COMMANDS[args.command](args)
    except AutoPEFTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted — run 'autopeft run {getattr(args, 'study', 'STUDY')}' again to resume; "
              "finished trials are kept", file=sys.stderr)
        return 130


def _study(args):
    from .study import Study

    return Study.from_yaml(args.study, storage=args.storage)


def cmd_run(args) -> int:
    study = _study(args)
    front = study.optimize(n_trials=args.trials, timeout=args.timeout)
    print(render_table(study, front))
    return 0


def cmd_validate(args) -> int:
    study = _study(args)
    r = study.validate()
    dims = ", ".join(f"{v} {k}" for k, v in r.dimensions.items())
    print(f"ok: {args.study}")
    print(f"  model: {study.cfg.model} ({r.num_layers} layers, {r.base_params:,} parameters)")
    print(f"  data: {r.train_examples} train / {r.validation_examples} validation examples, "
          f"{r.num_labels if r.num_labels > 1 else 'regression'} {'labels' if r.num_labels > 1 else ''}".rstrip())
    print(f"  search space: {r.num_configurations:,} adapter configurations; {sum(r.dimensions.values())} "
          f"dimensions ({dims})")
    print(f"  trainable parameters over the space: min {r.params_min:,} ({100 * r.params_min / r.base_params:.3f}%)"
          f", max {r.params_max:,} ({100 * r.params_max / r.base_params:.3f}%)")
    print(f"  objectives: {', '.join(r.objectives)}; optimizer: {study.cfg.optimizer.name}; "
          f"storage: {__import__('autopeft.storage', fromlist=['mask_url']).mask_url(study.storage_url)}")
    return 0


def cmd_pareto(args) -> int:
    study = _study(args)
    front = study.pareto_front(study.load())
    if args.format == "json":
        print(json.dumps([r.to_dict() for r in front], indent=2, default=str))
    elif args.format == "csv":
        buf = io.StringIO()
        names = [o.name for o in study.objectives]
        w = csv.writer(buf)
        w.writerow(["trial", *names, "fidelity", "config", "hyperparameters"])
        for r in front:
            w.writerow([r.number, *[r.values.get(n) for n in names], r.fidelity, json.dumps(r.config),
                        json.dumps(r.hyperparameters)])
        print(buf.getvalue(), end="")
    else:
        print(render_table(study, front))
    return 0


def cmd_status(args) -> int:
    study = _study(args)
    records = study.trials(study.load())
    counts: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for r in records:
        state = "INFEASIBLE" if r.attrs.get("infeasible") else r.state
        counts[state] = counts.get(state, 0) + 1
        if r.fail_reason and state == "FAIL":
            reasons[r.fail_reason] = reasons.get(r.fail_reason, 0) + 1
    print(f"study '{study.cfg.name}': {len(records)} trials — " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items())))
    for reason, n in sorted(reasons.items(), key=lambda x: -x[1]):
        print(f"  failed x{n}: {reason}")
    return 0


def cmd_export(args) -> int:
    study = _study(args)
    number = args.trial if args.pick is None else study.pick(args.pick).number
    out = study.export(number, args.output, train=args.train)
    how = f"picked by '{args.pick}'" if args.pick is not None else ""
    print(" ".join(filter(None, [f"exported trial {number}", how, "(trained)" if args.train else "", f"to {out}"])))
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    out = write_report(_study(args), args.output, compare=args.compare)
    print(f"report written to {out}")
    return 0


def cmd_dashboard(args) -> int:
    from .dashboard import serve

    serve(_study(args), host=args.host, port=args.port, interval=args.interval)
    return 0


def cmd_train(args) -> int:
    from pathlib import Path

    from .export import train_recipe

    out = args.output or str(Path(args.recipe).resolve().parent)
    trained = train_recipe(args.recipe, out)
    print(f"trained {trained.metric}={trained.score:.4f} on {trained.examples} examples x {trained.epochs:g} "
          f"epoch(s); saved to {trained.directory}")
    return 0


def render_table(study, front) -> str:
    """The Pareto front as an aligned text table."""
    from .study import format_value, summarise_config

    if not front:
        return "no completed trials yet"
    names = [o.name for o in study.objectives]
    header = ["trial", *names, "config"]
    rows = []
    base = None
    for r in front:
        cells = [str(r.number)]
        for n in names:
            cell = format_value(n, r.values[n])
            if n == "params":
                base = base or r.attrs.get("measured", {}).get("params_pct")
                pct = r.attrs.get("measured", {}).get("params_pct")
                cell += f" ({pct:.2f}%)" if pct is not None else ""
            cells.append(cell)
        cells.append(summarise_config(r.config, r.hyperparameters))
        rows.append(cells)
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    lines = [f"Pareto front ({len(front)} trials, {front[0].fidelity or 'proxy'}):",
             "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "pareto": cmd_pareto, "status": cmd_status,
            "export": cmd_export, "train": cmd_train,
            "report": cmd_report, "dashboard": cmd_dashboard}


if __name__ == "__main__":
    sys.exit(main())
