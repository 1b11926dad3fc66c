"""Command line: parses arguments, calls the Python API, prints. Bad input exits 2 with one line."""
from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import signal
import sys
import threading
from typing import Callable, NoReturn, Sequence

from .errors import AutoPEFTError, Terminated, keep_lost_interrupts, raise_terminated

logger = logging.getLogger("autopeft")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (problem — fix) with exit code 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} — see '{self.prog} --help'\n")


def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise argparse.ArgumentTypeError(f"'{text}' is not a positive {'whole ' if kind is int else ''}number")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="autopeft", description="Search parameter-efficient fine-tuning configurations.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    def study_cmd(name: str, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help)
        s.add_argument("study", help="study YAML file")
        s.add_argument("--storage", help="storage URL (overrides the YAML and $AUTOPEFT_STORAGE)")
        return s

    run = study_cmd("run", "run or resume a study")
    worker = study_cmd("worker", "join a study as one more worker (start any number, on any machines sharing "
                                 "--storage); prints a summary when the study is done")
    for cmd in (run, worker):
        cmd.add_argument("--trials", type=_positive(int),
                         help="total trials the study should hold (default: budget.trials)")
        cmd.add_argument("--timeout", type=_positive(float), help="wall-clock limit in seconds (default: budget.time)")
    run.add_argument("--workers", type=_positive(int), default=1, metavar="K",
                     help="run K worker processes on this machine (default 1)")
    run.add_argument("--warm-start", metavar="OTHER",
                     help="first run the Pareto configurations of another study (its YAML file, or its storage URL "
                          "with '#NAME' when it holds several), mapped by relative depth when the models differ")
    study_cmd("validate", "check a study file, its model, data and space; print the space size")
    pareto = study_cmd("pareto", "print the Pareto front")
    pareto.add_argument("--format", choices=["table", "csv", "json"], default="table")
    pareto.add_argument("--with-references", action="store_true",
                        help="csv/json: also list the reference configs (the table always shows them)")
    status = study_cmd("status", "trial counts and failure reasons")
    del status
    refine = study_cmd("refine", "re-train the Pareto points at full fidelity with several seeds")
    refine.add_argument("--seeds", type=int, help="seeds per point (default: refine.seeds in the YAML, 3)")
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
    from .logs import setup_logging

    setup_logging(args.verbose)
    previous_sigterm = None
    if args.command in ("run", "worker") and threading.current_thread() is threading.main_thread():
        # a scheduler's SIGTERM (preemption, `kill`) stops a study like Ctrl-C: the running trial is marked
        previous_sigterm = signal.signal(signal.SIGTERM, raise_terminated)
        keep_lost_interrupts()
    try:
        return COMMANDS[args.command](args)
    except AutoPEFTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        command = args.command if args.command in ("run", "worker") else "run"
        terminated = isinstance(exc, Terminated)
        print(f"\n{'terminated' if terminated else 'interrupted'} — run 'autopeft {command} "
              f"{getattr(args, 'study', 'STUDY')}' again to resume; finished trials are kept and the interrupted "
              "one runs again", file=sys.stderr)
        return 143 if terminated else 130  # 128 + the signal's number, as a shell reports it
    except Exception as exc:
        from .storage import lost_storage_error, storage_lost

        url = getattr(args, "storage_url", None)  # set by _study once the study is known
        if url is None or not storage_lost(exc):
            raise  # a bug: its traceback
        logger.debug("storage error", exc_info=True)
        print(f"error: {lost_storage_error(url, exc)}", file=sys.stderr)
        return 2
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


def _study(args, cfg=None):
    from .logs import adopt_library_loggers
    from .study import Study

    study = Study(cfg, args.storage) if cfg is not None else Study.from_yaml(args.study, storage=args.storage)
    adopt_library_loggers()  # optuna & co. are imported by now
    args.storage_url = study.storage_url  # names the storage if the database is lost while the command runs
    return study


def _announce(args):
    """Say at once what a run is about to do (loading the model and data takes a while); returns the config.

    Only the light config module is imported before this line: torch, transformers and optuna come after.
    """
    from .config import load_study_config
    from .references import REFERENCES

    cfg = load_study_config(args.study)
    data = cfg.task.data
    refs = f"{len(REFERENCES)} reference configurations and " if cfg.references else ""
    trials = args.trials or cfg.budget.trials
    logger.info("study '%s': loading model %s and data (%s); then %s%d trial%s%s", cfg.name, cfg.model,
                data.describe(), refs, trials, "" if trials == 1 else "s",
                "" if args.command == "run" and args.workers == 1 else " shared by the workers")
    return cfg


def cmd_run(args) -> int:
    study = _study(args, _announce(args))
    if args.warm_start:
        study.warm_start(args.warm_start)
    front = study.optimize(n_trials=args.trials, timeout=args.timeout, workers=args.workers)
    print(render_table(study, front, study.references()))
    return 0


def cmd_validate(args) -> int:
    study = _study(args)
    r = study.validate()
    dims = ", ".join(f"{v} {k}" for k, v in r.dimensions.items())
    print(f"ok: {args.study}")
    print(f"  model: {study.cfg.model} ({r.num_layers} layers, {r.base_params:,} parameters)")
    test = f" / {r.test_examples} test" if r.test_examples else ""
    kind = f"{r.num_labels} labels" if r.num_labels > 1 else \
        "prompt/response pairs" if study.cfg.task.type == "causal_lm" else "regression"
    print(f"  data: {r.train_examples} train / {r.validation_examples} validation{test} examples, {kind}")
    for split, origin in r.splits.items():
        print(f"    {split}: {origin}")
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
    refs = study.references()
    if args.format == "json":
        rows = front + (refs if args.with_references else [])
        print(json.dumps([r.to_dict() for r in rows], indent=2, default=str))
    elif args.format == "csv":
        buf = io.StringIO()
        names = [o.name for o in study.objectives]
        w = csv.writer(buf)
        w.writerow(["trial", *names, "fidelity", "config", "hyperparameters"])
        for r in front + (refs if args.with_references else []):
            w.writerow([f"ref:{r.attrs['reference']}" if r.attrs.get("reference") else r.number,
                        *[r.values.get(n) for n in names], r.fidelity, json.dumps(r.config),
                        json.dumps(r.hyperparameters)])
        print(buf.getvalue(), end="")
    else:
        print(render_table(study, front, refs))
    return 0


def cmd_worker(args) -> int:
    from .workers import worker_name

    study = _study(args, _announce(args))
    name = worker_name()
    study.optimize(n_trials=args.trials, timeout=args.timeout, worker=name)
    r = study.status(args.trials)
    print(f"worker {name} done: study '{r.name}' holds {r.counted}/{r.target} trials")
    return 0


def cmd_status(args) -> int:
    r = _study(args).status()
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(r.kinds.items()))
    print(f"study '{r.name}': {r.total} trials, {r.counted} counted (budget.trials: {r.target}) — {kinds}")
    for reason, n in r.reasons.items():
        print(f"  failed x{n}: {reason}")
    for number, worker, seconds in r.running:
        print(f"  running: trial {number} on {worker or 'an unnamed worker'} for {seconds:.0f}s")
    return 0


def cmd_refine(args) -> int:
    study = _study(args)
    front = study.refine(seeds=args.seeds)
    print(render_table(study, front, study.references()))
    return 0


def cmd_export(args) -> int:
    from .export import export_trained, export_trial

    study = _study(args)
    record = study.trial(args.trial) if args.pick is None else study.pick(args.pick)
    number = record.number
    how = f"picked by '{args.pick}'" if args.pick is not None else ""
    if args.train:
        trained = export_trained(study, record, args.output)
        print(" ".join(filter(None, [f"exported trial {number}", how, f"(trained) to {trained.directory}:",
                                     trained.figures()])))
        return 0
    out = export_trial(study, record, args.output)
    print(" ".join(filter(None, [f"exported trial {number}", how, f"to {out}"])))
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
    print(f"trained {trained.figures()} on {trained.examples} examples x {trained.epochs:g} epoch(s); saved to "
          f"{trained.directory}")
    return 0


def render_table(study, front, references=()) -> str:
    """The Pareto front (and the hand-made references, flagged) as an aligned text table."""
    from .objectives import format_value
    from .records import summarise_config

    if not front:
        return "no completed trials yet"
    names = [o.name for o in study.objectives]
    header = ["trial", *names, "config"]
    rows = []
    base = None
    for r in [*front, *references]:
        cells = ["ref" if r.attrs.get("reference") else str(r.number)]
        for n in names:
            cell = format_value(n, r.values[n])
            refined = r.attrs.get("refined")
            if n == "score" and refined:
                final = refined.get("test", refined)  # with a test split, the final number is the test score
                cell = f"{cell} -> {'test ' if 'test' in refined else ''}{final['mean']:.4f}±{final['sd']:.4f}"
            if n == "params":
                base = base or r.attrs.get("measured", {}).get("params_pct")
                pct = r.attrs.get("measured", {}).get("params_pct")
                cell += f" ({pct:.2f}%)" if pct is not None else ""
            cells.append(cell)
        ref = r.attrs.get("reference")
        warm = "[warm start] " if r.attrs.get("warm_start") else ""
        cells.append(f"[reference] {ref}" if ref else warm + summarise_config(r.config, r.hyperparameters))
        rows.append(cells)
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    refined = next((r.attrs["refined"] for r in front if r.attrs.get("refined")), None)
    fidelity = front[0].fidelity or "proxy"
    if refined and "test" in refined:
        then = f"; -> mean±sd on the test split ({refined['test']['rows']} rows) at {refined['fidelity']}"
    else:
        then = f"; -> mean±sd on the validation split at {refined['fidelity']}" if refined else ""
    lines = [f"Pareto front ({len(front)} trials, scores on the validation split at {fidelity}{then}):",
             "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows[:len(front)]]
    if references:
        lines.append("references (same fidelity, not part of the search):")
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows[len(front):]]
    return "\n".join(lines)


COMMANDS = {"run": cmd_run, "worker": cmd_worker, "validate": cmd_validate, "pareto": cmd_pareto,
            "status": cmd_status, "export": cmd_export, "train": cmd_train, "refine": cmd_refine,
            "report": cmd_report, "dashboard": cmd_dashboard}


if __name__ == "__main__":
    sys.exit(main())
