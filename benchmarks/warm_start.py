"""Does a warm start save trials? (issue 17) Cold vs warm-started studies on SST-2 and TREC-6.

Eight studies of ``--trials`` (30) trials each, MiniLM, the ``autopeft`` space, objectives ``score_params``, mobo
with its default start-up trials (8), no references, a small proxy (``--train-examples`` 1000, 1 epoch,
max_length 64, memory not measured), in this order:

- cold SST-2 seed 1, cold TREC seed 1;
- warm SST-2 seed 3, run as ``autopeft run warm.yaml --warm-start <cold TREC seed 1's YAML>``, and warm TREC seed
  3, warm-started from cold SST-2 seed 1: the other task's Pareto configurations are enqueued as its first trials;
- cold SST-2 seed 2, cold TREC seed 2: the noise floor (how long a cold study of another seed takes to reach the
  first one's HV@30);
- warm SST-2 seed 1 and warm TREC seed 1, warm-started like the seed-3 ones. The study seed sets the evaluation as
  well as the search (the proxy's training rows and initialisation), so studies of different seeds score one
  configuration differently; with cold seed 1's seed the warm study scores every configuration exactly as cold
  seed 1 does, and the HV difference is the search's alone.

Hypervolume is the report's: :func:`autopeft.pareto.hypervolume_frame` with the reference point stored with the
study (raw units: chance-level score, the space's largest adapter) and :func:`autopeft.pareto.hypervolume_history`,
with log10 params (0 params drawn at 1). The studies of one task share one frame (ideal = best value any of them
saw, as ``autopeft report --compare`` does for studies in one storage), so their curves are comparable. HV@k is the
hypervolume of the completed trials among the first k trials the budget counts (complete, failed, over budget;
not the ones the estimate rejected before running). A second set of curves leaves the head-only trials (0 params)
out, in a frame fitted to the rest: the head-only point holds the params axis from 0 to log10 of the smallest
adapter, so its one score moves HV more than any other trial.

Data: ``../shared/data`` (SOURCES.md). SST-2 is scored on 500 rows of its dev split (a fixed sample, seed 0, written
to the work dir; the same rows for every seed, which ``proxy.eval_examples`` would not give: it samples with the
study's seed); TREC has no dev split, so 500 rows (9.17 %, stratified, split_seed 0) are held out from TREC.train
and TREC.test is not used. TREC's fine labels are mapped to the 6 coarse classes. 1,000 training rows per trial: at
500, TREC proxies all score 0.30-0.43 (RESULTS.md, TREC-6 fidelity section).

Studies run one at a time, each through the CLI in its own process (``python -c 'from autopeft.cli import main'``
with this checkout on PYTHONPATH), logging to ``WORKDIR/NAME.log``; SQLite files and YAMLs live in ``--workdir``
(not committed). Re-running the command resumes: a finished study is skipped, an interrupted one resumes (a warm
study is warm-started once). Then the table is printed and ``--json`` written. Use ``--threads 1`` on a shared
machine: with 2 threads under load, the first trials ran 4-16x slower than with 1 (the load varied too).

    nice -n 10 python benchmarks/warm_start.py [--workdir /tmp/autopeft_warm_start] [--trials 30] [--threads 1]
        [--json benchmarks/data/warm_start.json] [--only NAME ...] [--analyse-only]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
TASKS = ("sst2", "trec")
TASK_LABEL = {"sst2": "SST-2", "trec": "TREC-6"}
TREC_HELDOUT = 500
SST2_DEV_ROWS = 500
TREC_TRAIN_ROWS = 5452
#: (name, task, seed, the study it is warm-started from or None), in the order they run (sources first)
STUDIES = (
    ("ws_sst2_cold_s1", "sst2", 1, None),
    ("ws_trec_cold_s1", "trec", 1, None),
    ("ws_sst2_warm_s3", "sst2", 3, "ws_trec_cold_s1"),
    ("ws_trec_warm_s3", "trec", 3, "ws_sst2_cold_s1"),
    ("ws_sst2_cold_s2", "sst2", 2, None),
    ("ws_trec_cold_s2", "trec", 2, None),
    # added after the six above had run: a warm study with cold seed 1's seed, so it trains every configuration
    # on the same rows from the same initialisation as cold seed 1 (the seed sets both the search and the
    # evaluation): the HV difference is then the search's alone
    ("ws_sst2_warm_s1", "sst2", 1, "ws_trec_cold_s1"),
    ("ws_trec_warm_s1", "trec", 1, "ws_sst2_cold_s1"),
)
ARMS = {"cold_s1": "cold, seed 1", "warm_s1": "warm, seed 1", "warm_s3": "warm, seed 3", "cold_s2": "cold, seed 2"}
WARM_ARMS = ("warm_s1", "warm_s3")
CHECKPOINTS = (10, 20, 30)


def trec_coarse() -> dict[str, int]:
    """TREC's fine labels -> coarse class ids (ABBR, DESC, ENTY, HUM, LOC, NUM), as benchmarks/collect_table.py."""
    fine = {line.split(" ", 1)[0] for f in ("TREC.train", "TREC.test")
            for line in (SHARED / "TREC" / f).read_text(encoding="latin-1").splitlines() if line.strip()}
    coarse = sorted({f.split(":")[0] for f in fine})
    return {f: coarse.index(f.split(":")[0]) for f in sorted(fine)}


def sst2_dev(workdir: Path) -> Path:
    """A fixed 500-row sample of SST-2's dev split (seed 0, file order kept), the same for every study: the
    proxy's ``eval_examples`` would draw its sample with the study's seed, so seeds would be scored on other rows."""
    lines = (SHARED / "SST-2/dev.tsv").read_text(encoding="utf-8").splitlines()
    keep = sorted(np.random.default_rng(0).choice(len(lines) - 1, SST2_DEV_ROWS, replace=False) + 1)
    path = workdir / "sst2_dev500.tsv"
    path.write_text("\n".join([lines[0], *(lines[i] for i in keep)]) + "\n", encoding="utf-8")
    return path


def task_block(task: str, workdir: Path) -> dict:
    if task == "sst2":
        data = dict(train=str(SHARED / "SST-2/train.tsv"), validation=str(sst2_dev(workdir)),
                    text="sentence", label="label")
    else:  # no dev split: 500 rows held out from train (TREC.test stays unused)
        data = dict(train=str(SHARED / "TREC/TREC.train"), validation=round(TREC_HELDOUT / TREC_TRAIN_ROWS, 6),
                    split_seed=0, format="tsv", delimiter=" ", max_columns=2, header=False, encoding="latin-1",
                    text=1, label=0, label_map=trec_coarse())
    return dict(type="classification", metric="accuracy", data=data)


def study_config(name: str, task: str, seed: int, args) -> dict:
    return dict(
        name=name, model="sentence-transformers/all-MiniLM-L6-v2", task=task_block(task, args.workdir),
        search_space="autopeft", objectives="score_params",
        proxy=dict(train_examples=args.train_examples, epochs=1, max_length=64, batch_size=32,
                   measure_memory=False, threads=args.threads),
        optimizer=dict(name="mobo"),  # default start-up trials
        budget=dict(trials=args.trials), storage=f"sqlite:///{args.workdir / (name + '.db')}", seed=seed,
        references=False, device="cpu")


def yaml_path(args, name: str) -> Path:
    return args.workdir / f"{name}.yaml"


def write_yamls(args) -> None:
    import yaml

    args.workdir.mkdir(parents=True, exist_ok=True)
    for name, task, seed, _ in STUDIES:
        text = yaml.safe_dump(study_config(name, task, seed, args), sort_keys=False)
        path = yaml_path(args, name)
        if path.exists() and path.read_text() != text and (args.workdir / f"{name}.db").exists():
            raise SystemExit(f"{path} exists with other settings and its study has started; use another --workdir")
        path.write_text(text)


# ------------------------------------------------------------------------------------------------ running
def load_optuna(args, name: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = args.workdir / f"{name}.db"
    if not db.exists():
        return None
    try:
        return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    except KeyError:
        return None


def counted(study) -> list:
    from autopeft.workers import counted_trials

    return sorted(counted_trials(study.get_trials(deepcopy=False)), key=lambda t: t.number)


def finished(args, name: str) -> int:
    study = load_optuna(args, name)
    return 0 if study is None else sum(1 for t in counted(study) if t.state.is_finished())


def run_study(args, name: str, source: str | None) -> None:
    done = finished(args, name)
    if done >= args.trials:
        print(f"{name}: {done}/{args.trials} trials already, skipped", flush=True)
        return
    if source is not None and finished(args, source) < args.trials:
        raise SystemExit(f"{name} is warm-started from {source}, which has not finished; run it first")
    cmd = [sys.executable, "-c", "import sys; from autopeft.cli import main; sys.exit(main())", "run",
           str(yaml_path(args, name))]
    if source is not None:
        cmd += ["--warm-start", str(yaml_path(args, source))]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    print(f"{name}: {done}/{args.trials} trials, running: {' '.join(cmd[3:])}", flush=True)
    start = time.time()
    with (args.workdir / f"{name}.log").open("a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        log.flush()
        rc = subprocess.call(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.time() - start
    with (args.workdir / "runs.jsonl").open("a") as f:
        f.write(json.dumps({"study": name, "start": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start)),
                            "wall_s": round(wall, 1), "rc": rc, "source": source}) + "\n")
    print(f"{name}: rc={rc} after {wall:.0f} s", flush=True)
    if rc != 0:
        raise SystemExit(f"{name} failed (rc={rc}); see {args.workdir / (name + '.log')}")


# ------------------------------------------------------------------------------------------------ analysis
def study_record(args, name: str) -> dict:
    """Counted trials (in order) with their state and values, and the study's reference point and warm start."""
    from optuna.trial import TrialState

    study = load_optuna(args, name)
    if study is None:
        raise SystemExit(f"no study {name} in {args.workdir}")
    names = list(study.user_attrs.get("objectives") or ["score", "params"])
    trials = []
    for t in counted(study):
        rec = {"number": t.number, "state": t.state.name, "params": dict(t.params),
               "values": list(t.values) if t.state == TrialState.COMPLETE and t.values else None,
               "seconds": t.duration.total_seconds() if t.duration else None}
        if t.user_attrs.get("warm_start"):
            rec["warm_start"] = t.user_attrs["warm_start"]
            rec["fixed_params"] = len(t.system_attrs.get("fixed_params") or {})
        if t.state != TrialState.COMPLETE:
            rec["reason"] = t.user_attrs.get("fail_reason")
        trials.append(rec)
    other = [t for t in study.get_trials(deepcopy=False) if t.number not in {r["number"] for r in trials}]
    return {"names": names, "directions": [d.name.lower() for d in study.directions],
            "reference_point": study.user_attrs.get("reference_point"),
            "warm_start": study.user_attrs.get("warm_start"), "trials": trials[:args.trials],
            "uncounted": len(other), "params_in_space": len(study.trials[0].params) if study.trials else 0}


def source_front(args, name: str) -> list[dict]:
    """The source study's Pareto trials, as autopeft.warmstart.load_source reads them."""
    from autopeft.warmstart import load_source

    src = load_source(str(yaml_path(args, name)))
    return [{"number": t.number, "values": list(t.values)} for t in src.front]


def shared_configurations(recs: dict, names: list[str]) -> dict:
    """Configurations trained in more than one study of a task, and how far their scores differ: between studies
    of one seed (the same training rows and initialisation: should be 0) and of different seeds."""
    score = names.index("score")
    by_config: dict[str, dict[str, float]] = {}
    for arm, r in recs.items():
        for t in r["trials"]:
            if t["values"] is not None:
                key = json.dumps(t["params"], sort_keys=True)
                by_config.setdefault(key, {}).setdefault(arm, t["values"][score])
    same, different, rows = [], [], []
    for key, scores in by_config.items():
        if len(scores) < 2:
            continue
        rows.append({"params": json.loads(key), "scores": scores})
        arms = sorted(scores)
        for i, a in enumerate(arms):
            for b in arms[i + 1:]:
                (same if a[-1] == b[-1] else different).append(abs(scores[a] - scores[b]))
    summary = lambda d: {"pairs": len(d), "mean_abs": float(np.mean(d)) if d else None,
                         "max_abs": float(np.max(d)) if d else None}
    return {"configurations": rows, "same_seed": summary(same), "different_seed": summary(different)}


def hv_curves(recs: dict, names: list[str], directions: list[str], ref, keep=lambda v: True):
    """One frame for all studies of a task (ideal = best value any of them saw, reference = the stored point) and
    each study's HV after each counted trial (a failed trial, or one ``keep`` rejects, repeats the last value)."""
    from autopeft.pareto import hypervolume_frame, hypervolume_history

    kept = {arm: [t for t in r["trials"] if t["values"] is not None and keep(t["values"])] for arm, r in recs.items()}
    everything = np.array([t["values"] for ts in kept.values() for t in ts], dtype=float)
    frame = hypervolume_frame(everything, names, directions, ref)
    curves = {}
    for arm, r in recs.items():
        hv = hypervolume_history(np.array([t["values"] for t in kept[arm]], dtype=float), frame).tolist() \
            if kept[arm] else []
        curve, i, current = [], 0, 0.0
        for t in r["trials"]:
            if t["values"] is not None and keep(t["values"]):
                current = hv[i]
                i += 1
            curve.append(current)
        curves[arm] = curve
    return frame, curves


def first_reaching(curve: list[float], target: float) -> int | None:
    """The first k (1-based) with HV@k >= target (up to rounding), else None."""
    for k, v in enumerate(curve, 1):
        if v >= target - 1e-12:
            return k
    return None


def analyse(args) -> dict:
    from autopeft.pareto import reference_from_attrs

    command = f"nice -n 10 python benchmarks/warm_start.py --workdir {args.workdir} --threads {args.threads}"
    command += f" --trials {args.trials}" if args.trials != 30 else ""
    command += f" --train-examples {args.train_examples}" if args.train_examples != 1000 else ""
    out = {"command": command, "trials": args.trials,
           "proxy": {"train_examples": args.train_examples, "epochs": 1, "max_length": 64, "batch_size": 32,
                     "measure_memory": False, "threads": args.threads},
           "tasks": {}}
    runs = []
    if (args.workdir / "runs.jsonl").exists():
        runs = [json.loads(x) for x in (args.workdir / "runs.jsonl").read_text().splitlines() if x.strip()]
    for task in TASKS:
        recs = {arm: study_record(args, f"ws_{task}_{arm}") for arm in ARMS}
        names, directions = recs["cold_s1"]["names"], recs["cold_s1"]["directions"]
        refs = {arm: r["reference_point"] for arm, r in recs.items()}
        ref = reference_from_attrs(refs["cold_s1"], names)
        complete = {arm: [t for t in r["trials"] if t["values"] is not None] for arm, r in recs.items()}
        frame, curves = hv_curves(recs, names, directions, ref)
        # sensitivity: the same without head-only trials (0 params), in a frame fitted to the rest. The head-only
        # point holds the params axis from 0 to log10 of the smallest adapter (3,072: about 60 % of it), so its one
        # noisy score weighs more than any other trial
        adapters_frame, adapters = hv_curves(recs, names, directions, ref,
                                             keep=lambda v: v[names.index("params")] > 0)
        target = curves["cold_s1"][args.trials - 1]
        arms = {}
        cold_params = [t["params"] for t in recs["cold_s1"]["trials"]]
        for arm, r in recs.items():
            name = f"ws_{task}_{arm}"
            warm = [t for t in r["trials"] if "warm_start" in t]
            arms[arm] = {
                "study": name, "seed": int(arm[-1]), "hv": curves[arm],
                **{f"hv@{k}": curves[arm][k - 1] for k in CHECKPOINTS if k <= len(curves[arm])},
                "reaches_cold_s1_hv30_at": first_reaching(curves[arm], target),
                "adapters_only": {"hv": adapters[arm], **{f"hv@{k}": adapters[arm][k - 1] for k in CHECKPOINTS},
                                  "reaches_cold_s1_hv30_at": first_reaching(adapters[arm],
                                                                            adapters["cold_s1"][args.trials - 1])},
                "trials": len(r["trials"]), "failed": sum(1 for t in r["trials"] if t["values"] is None),
                "uncounted": r["uncounted"], "reference_point": r["reference_point"],
                "best_score": max(t["values"][names.index("score")] for t in complete[arm]),
                "head_only": [t["values"][names.index("score")] for t in complete[arm]
                              if t["values"][names.index("params")] == 0],
                "seconds_trials": round(sum(t["seconds"] or 0 for t in r["trials"]), 1),
                "wall_s": round(sum(x["wall_s"] for x in runs if x["study"] == name), 1),
                "values": [t["values"] for t in r["trials"]],
                "params": [t["params"] for t in r["trials"]],
                "seconds": [t["seconds"] for t in r["trials"]],
            }
            if arm in WARM_ARMS:
                src = next(s for n, _, _, s in STUDIES if n == name)
                front = source_front(args, src)
                arms[arm]["warm_start"] = {
                    "source": src, "source_front": len(front),
                    "enqueued": (r["warm_start"] or {}).get("configurations"),
                    "ran": len(warm), "trials": [t["number"] for t in warm],
                    "fixed_params": sorted({t["fixed_params"] for t in warm}), "params_in_space": r["params_in_space"],
                    "values": [t["values"] for t in warm], "source_values": [f["values"] for f in front],
                    # the cold seed-1 studies of both tasks share their start-up design (same seed, same space), so
                    # some of the other task's front are configurations cold seed 1 of this task ran too
                    "also_run_by_cold_s1": sum(1 for t in warm if t["params"] in cold_params),
                    "hv_of_warm_trials": curves[arm][len(warm) - 1] if warm else None}
        out["tasks"][task] = {
            "label": TASK_LABEL[task], "objectives": names, "directions": directions,
            "frame": {"ideal": frame.ideal.tolist(), "reference": frame.reference.tolist(),
                      "reference_values": frame.reference_values()},
            "adapters_only_frame": {"ideal": adapters_frame.ideal.tolist(),
                                    "reference": adapters_frame.reference.tolist()},
            "same_reference_point": all(v == refs["cold_s1"] for v in refs.values()),
            "cold_s1_hv30": target, "arms": arms, "shared_configurations": shared_configurations(recs, names)}
    out["wall_s_total"] = round(sum(x["wall_s"] for x in runs), 1)
    return out


def reach_text(k: int | None, hv30: float) -> str:
    return f"{k}" if k is not None else f"not reached in 30 (HV@30 {hv30:.4f})"


def render_table(res: dict, task: str) -> str:
    """The markdown table of one task: the three studies side by side (RESULTS.md quotes it)."""
    t, n = res["tasks"][task], res["trials"]
    a = t["arms"]
    cells = [(f"{a[arm]['warm_start']['ran']} (of {a[arm]['warm_start']['source_front']} on "
              f"{res['tasks'][other(task)]['label']}'s front)") if arm in WARM_ARMS else "–" for arm in ARMS]
    lines = ["| " + t["label"] + " | " + " | ".join(ARMS.values()) + " |", "|---|" + "---|" * len(ARMS),
             "| warm-start configurations run first | " + " | ".join(cells) + " |"]
    for k in CHECKPOINTS:
        lines.append(f"| HV@{k} | " + " | ".join(f"{a[arm][f'hv@{k}']:.4f}" for arm in ARMS) + " |")
    lines.append(f"| trials to reach cold seed 1's HV@{n} ({t['cold_s1_hv30']:.4f}) | "
                 + " | ".join(reach_text(a[arm]["reaches_cold_s1_hv30_at"], a[arm][f"hv@{n}"]) for arm in ARMS)
                 + " |")
    lines.append(f"| same, head-only trials left out (HV@{n} of cold seed 1 in that frame: "
                 f"{a['cold_s1']['adapters_only'][f'hv@{n}']:.4f}) | "
                 + " | ".join(reach_text(a[arm]["adapters_only"]["reaches_cold_s1_hv30_at"],
                                         a[arm]["adapters_only"][f"hv@{n}"]) for arm in ARMS) + " |")
    lines.append("| best score | " + " | ".join(f"{a[arm]['best_score']:.3f}" for arm in ARMS) + " |")
    lines.append("| head-only score (0 params) | " + " | ".join(
        "/".join(f"{s:.3f}" for s in a[arm]["head_only"]) or "not tried" for arm in ARMS) + " |")
    lines.append("| failed trials | " + " | ".join(str(a[arm]["failed"]) for arm in ARMS) + " |")
    return "\n".join(lines)


def render(res: dict) -> str:
    return "\n\n".join(render_table(res, task) for task in res["tasks"]) + "\n"


def other(task: str) -> str:
    return next(t for t in TASKS if t != task)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/autopeft_warm_start"))
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--train-examples", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "data" / "warm_start.json")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these studies (no analysis)")
    ap.add_argument("--analyse-only", action="store_true", help="run nothing; table and JSON from the studies")
    args = ap.parse_args(argv)
    args.workdir = args.workdir.resolve()
    sys.path.insert(0, str(REPO))
    write_yamls(args)
    if not args.analyse_only:
        for name, _, _, source in STUDIES:
            if not args.only or name in args.only:
                run_study(args, name, source)
    if args.only:
        return 0
    res = analyse(args)
    print(render(res))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
