"""Recompute every data-backed figure quoted in benchmarks/RESULTS.md from its file in benchmarks/data/.

Each figure is a :class:`Claim` in the registry below: an id, the ``###`` section it sits under, the text
RESULTS.md quotes (bold markers and line breaks ignored), the data file it comes from, and a function that
recomputes that text from the file (formatted the way RESULTS.md formats it; a claim with ``tol`` compares the
numbers in the text instead, within ``tol``). The check fails (exit status 1, naming the figure) when

- the recomputed text differs from the quoted one (a mismatch: the data say otherwise),
- the quoted text no longer appears in its section (RESULTS.md was edited without the registry), or
- a ``###`` section has no registered figure and does not say that its numbers are "not reproducible" (every
  section is either backed by data or marked).

Figures with no data file behind them carry the words "not reproducible (no data file)" where RESULTS.md quotes
them; those are not checked. The surrogate's cross-validation and the fidelity summaries are recomputed from the
table and the log (about 15 s on one core). A multi-fidelity replay figure is read from its saved result,
``benchmarks/data/multifidelity/<name>.json``, which records the command that wrote it; ``--replay`` re-runs every
one of those commands on its CSV / log instead (about an hour on one core: the 300-row replays are slow).

    python benchmarks/check_results.py [--results PATH] [--list] [--only ID_PREFIX ...] [--replay]
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import io
import json
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / "data"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

#: a section without registered figures must say this (case-insensitive) about its numbers
UNBACKED_MARK = "not reproducible"


@dataclass(frozen=True)
class Claim:
    id: str
    section: str  # a substring of the "### " heading the figure is under
    quoted: str  # the text RESULTS.md shows (after normalise())
    file: str  # relative to benchmarks/data/
    compute: Callable[[], str]  # the same text, recomputed from the file
    tol: float | None = None  # None: the texts must be equal; else every number within tol


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("**", "").replace("\\|", "|")).strip()


# ------------------------------------------------------------------------------------------------ data access
@functools.lru_cache(maxsize=None)
def table(name: str) -> list[dict]:
    with (DATA / name).open() as f:
        return [r for r in csv.DictReader(f) if r["status"] == "ok" and r["score_2000"]]


def column(rows: list[dict], name: str) -> np.ndarray:
    return np.array([float(r[name]) for r in rows])


@functools.lru_cache(maxsize=None)
def json_file(name: str):
    return json.loads((DATA / name).read_text())


@functools.lru_cache(maxsize=None)
def league_runs() -> tuple[dict, ...]:
    return tuple(json.loads(line) for line in (DATA / "league_runs.jsonl").read_text().splitlines())


def league_selection(problem: str, backends: tuple[str, ...], surrogate: int | None = 2) -> list[dict]:
    """The runs a league table was made of: PEFT runs of one surrogate version on the 300-row table; one run per
    (backend, seed) (the file holds some twice, identical)."""
    seen, out = set(), []
    for r in league_runs():
        if r["problem"] != problem or r["backend"] not in backends:
            continue
        if problem.startswith("peft-") and not (r.get("surrogate") == surrogate and r.get("table_rows") == 300):
            continue
        if (r["backend"], r["seed"]) in seen:
            continue
        seen.add((r["backend"], r["seed"]))
        out.append(r)
    return sorted(out, key=lambda r: (backends.index(r["backend"]), r["seed"]))


@functools.lru_cache(maxsize=None)
def league_rows(problem: str, backends: tuple[str, ...]) -> dict[str, str]:
    """backend -> its table row exactly as benchmarks/optimizers.py renders it."""
    from optimizers import render, summarise

    rendered = render(summarise(league_selection(problem, backends), 50), [problem], 50)
    return {line.split("|")[1].strip(): line for line in rendered.splitlines()
            if line.startswith("| ") and not line.startswith("| backend")}


def hv50(problem: str, backend: str, surrogate: int | None = 2, digits: int = 4) -> str:
    v = np.array([r["hv"][-1] for r in league_selection(problem, (backend,), surrogate)])
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


@functools.lru_cache(maxsize=None)
def fidelity_runs() -> dict:
    from proxy_fidelity import load_runs

    return load_runs(DATA / "proxy_fidelity.jsonl")


POOLER = ["bert.pooler", "classifier"]


@functools.lru_cache(maxsize=None)
def fidelity_summary(task: str, heldout: int, proxies: tuple, full: tuple, seeds: tuple, lr: str = "kind",
                     head: tuple = tuple(POOLER), head_lr: float = 2e-3, full_head_lr: float | None = None,
                     validation_rows: int = 0) -> dict:
    """proxy_fidelity.summarise on the log, as ``--summary`` computes it (without loading the model)."""
    from proxy_fidelity import summarise

    env = dict(task=task, lr=lr, heldout=heldout, head=list(head), head_lr=head_lr)
    full_env = {**env, "head_lr": full_head_lr} if full_head_lr else None
    with contextlib.redirect_stdout(io.StringIO()):
        return summarise(task, fidelity_runs(), env, 30, [p for p in proxies],
                         [(full[0], full[1], s) for s in seeds], validation_rows or heldout, full_env)


def sst2_s5() -> dict:
    return fidelity_summary("sst2", 5000, ((500, 1, 0), (1000, 1, 0), (2000, 1, 0)), (10000, 3.0), (0, 1))


def trec_s6() -> dict:
    return fidelity_summary("trec", 1500, ((250, 1, 0), (500, 1, 0), (1000, 1, 0)), (3900, 3.0), (0, 1))


def headlr_s6() -> dict:
    return fidelity_summary("sst2", 5000, ((1000, 1, 0), (2000, 1, 0)), (10000, 3.0), (0, 1), head_lr=1e-3,
                            full_head_lr=2e-3)


def sst2_s4() -> dict:
    return fidelity_summary("sst2", 0, ((1000, 1.0, 0),), (10000, 3.0), (0,), validation_rows=872)


def sst2_s2() -> dict:
    return fidelity_summary("sst2", 0, ((500, 2.0, 0),), (5000, 3.0), (0,), lr="searched", head=("classifier",),
                            validation_rows=872)


def rte_s6() -> dict:
    return fidelity_summary("rte", 0, ((500, 1.0, 0),), (2490, 3.0), (0,), validation_rows=277)


def per_budget(summary: Callable[[], dict], key: str, budgets: tuple[int, ...], fmt: str = "{:.2f}",
               sep: str = " / ", sub: str | None = None) -> Callable[[], str]:
    def f():
        out = []
        for b in budgets:
            rec = summary()["proxies"][str(b)]
            rec = rec[sub] if sub else rec
            out.append(fmt.format(rec[key]))
        return sep.join(out)
    return f


def speed_per_config(name: str) -> Callable[[], str]:
    """'naive s/autopeft s/ratio/naive acc/autopeft acc, ...' for every config of a proxy_speed JSON."""
    def f():
        d = json_file(name)
        return ", ".join(f"{a:.1f}/{b:.1f}/{a / b:.2f}/{c:.3f}/{e:.3f}" for a, b, c, e in
                         zip(d["naive_s"], d["autopeft_s"], d["naive_score"], d["autopeft_score"]))
    return f


def memory_error(rows: list[dict]) -> str:
    m, e = column(rows, "memory"), column(rows, "memory_estimate")
    err = (e - m) / m
    return f"mean |error| {100 * np.abs(err).mean():.1f} %, max {100 * np.abs(err).max():.1f} %, biased " \
           f"{100 * err.mean():+.1f} %"


@functools.lru_cache(maxsize=None)
def surrogate() -> dict:
    from problems.peft_table import read_table, surrogate_accuracy

    return surrogate_accuracy(read_table(DATA / "peft_sst2.csv"))


def v1_curve_stats(rows, f) -> str:
    s = column(rows, f"score_{f}")
    return f"{s.mean():.3f} / {(s < 0.55).sum()}"


def kendall(a, b) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


# ------------------------------------------------------------------------------------------------ replays
#: --replay: re-run every replay from its CSV / log instead of reading its saved result
RECOMPUTE_REPLAYS = False


@functools.lru_cache(maxsize=None)
def replay(name: str) -> dict:
    """A multifidelity_sim.py result: ``benchmarks/data/multifidelity/<name>.json`` (written by the command it
    records), or with --replay that command re-run on its CSV / log now."""
    saved = json_file(f"multifidelity/{name}.json")
    if not RECOMPUTE_REPLAYS:
        return saved
    import shlex

    import multifidelity_sim

    argv = shlex.split(saved["command"])[2:]
    if "--json" in argv:
        i = argv.index("--json")
        del argv[i:i + 2]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        with contextlib.redirect_stdout(io.StringIO()):
            multifidelity_sim.main([*argv, "--json", str(out)])
        return json.loads(out.read_text())


def reached_pct(r: dict) -> str:
    return f"reached {round(100 * r['multi_reached'] / r['orders'])} %"


def margin_cell(name: str) -> Callable[[], str]:
    """'1,524 s, ratio 1.03, reached 100 %' (or '∞, reached 2 %' when the median order never reaches it)."""
    def f():
        r = replay(name)
        if not math.isfinite(r["multi_median_s"]):
            return f"∞, {reached_pct(r)}"
        return f"{r['multi_median_s']:,.0f} s, ratio {r['ratio']:.2f}, {reached_pct(r)}"
    return f


def single_cell(name: str) -> Callable[[], str]:
    return lambda: f"{replay(name)['single_median_s']:,.0f} s"


# ------------------------------------------------------------------------------------------------ the registry
CLAIMS: list[Claim] = []


def claim(id: str, section: str, quoted: str, file: str, compute, tol: float | None = None) -> None:
    CLAIMS.append(Claim(id, section, quoted, file, compute if callable(compute) else (lambda: compute), tol))


# ---- Seconds per trial ----------------------------------------------------------------------------------------
SPEED = "Seconds per trial"
claim("speed.s5.per_config", SPEED,
      "64.9/16.0/4.07/0.780/0.760, 54.4/23.5/2.31/0.792/0.778, 52.2/10.5/4.96/0.776/0.776, "
      "62.0/15.8/3.91/0.744/0.754, 56.7/13.9/4.07/0.784/0.780, 52.6/12.3/4.27/0.802/0.790, 61.1/16.4/3.71/0.792/0.792, "
      "51.8/12.5/4.15/0.794/0.754, 65.6/16.9/3.88/0.814/0.806, 55.3/15.1/3.66/0.702/0.656",
      "proxy_speed_s5.json", speed_per_config("proxy_speed_s5.json"))
claim("speed.s5.median_ratio", SPEED, "Median ratio 3.99", "proxy_speed_s5.json",
      lambda: f"Median ratio {json_file('proxy_speed_s5.json')['ratio_median']:.2f}")
claim("speed.s5.mean_acc", SPEED, "Mean accuracy is naive 0.778 vs autopeft 0.765", "proxy_speed_s5.json",
      lambda: "Mean accuracy is naive {:.3f} vs autopeft {:.3f}".format(
          json_file("proxy_speed_s5.json")["score_mean_naive"], json_file("proxy_speed_s5.json")["score_mean_autopeft"]))


def _lower(name: str) -> str:
    d = json_file(name)
    diff = np.round(np.array(d["autopeft_score"]) - np.array(d["naive_score"]), 3)
    low = -diff[diff < 0]
    return (f"{(diff < 0).sum()} of {len(diff)} configs are lower, by {low.min():.3f}–{low.max():.3f}; "
            f"{(diff == 0).sum()} are equal, {(diff > 0).sum()} is higher")


claim("speed.s5.lower", SPEED, "7 of 10 configs are lower, by 0.004–0.046; 2 are equal, 1 is higher",
      "proxy_speed_s5.json", lambda: _lower("proxy_speed_s5.json"))
claim("speed.s2.median_ratio", SPEED, "Median ratio 3.86", "proxy_speed.json",
      lambda: f"Median ratio {json_file('proxy_speed.json')['ratio_median']:.2f}")
claim("speed.s2.mean_acc", SPEED, "(0.733 vs 0.682;", "proxy_speed.json",
      lambda: "({:.3f} vs {:.3f};".format(json_file("proxy_speed.json")["score_mean_autopeft"],
                                          json_file("proxy_speed.json")["score_mean_naive"]))


def _s2_row(i: int) -> str:
    d = json_file("proxy_speed.json")
    a, b = d["naive_s"][i], d["autopeft_s"][i]
    return f"| {a:.1f} | {b:.1f} | {a / b:.2f} | {d['naive_score'][i]:.3f} | {d['autopeft_score'][i]:.3f} |"


for _i, _row in enumerate(["55.7 | 14.9 | 3.73 | 0.774 | 0.768", "49.2 | 22.9 | 2.15 | 0.782 | 0.766",
                           "47.5 | 10.0 | 4.77 | 0.510 | 0.740", "56.2 | 14.3 | 3.94 | 0.668 | 0.684",
                           "55.4 | 14.4 | 3.84 | 0.736 | 0.780", "52.3 | 11.7 | 4.45 | 0.730 | 0.780",
                           "58.7 | 15.2 | 3.85 | 0.798 | 0.788", "49.9 | 12.1 | 4.13 | 0.768 | 0.770",
                           "62.3 | 16.8 | 3.71 | 0.546 | 0.730", "55.4 | 14.3 | 3.88 | 0.510 | 0.520"]):
    claim(f"speed.s2.config{_i}", SPEED, f"| {_row} |", "proxy_speed.json", lambda i=_i: _s2_row(i))

# session 7: the naive arm at its best settings, the set-up charged
S7 = "proxy_speed_s7.json"
claim("speed.s7.per_config", SPEED,
      "30.5/29.9/1.02/0.742/0.794, 31.2/51.9/0.60/0.704/0.792, 24.3/23.5/1.03/0.762/0.780, 51.7/48.8/1.06/0.752/0.756, "
      "44.2/31.8/1.39/0.738/0.778, 28.4/29.4/0.97/0.788/0.742, 36.0/34.5/1.04/0.774/0.790, 36.1/31.5/1.15/0.774/0.746, "
      "39.9/52.6/0.76/0.754/0.798, 43.8/41.6/1.05/0.614/0.704", S7, speed_per_config(S7))
claim("speed.s7.ratios", SPEED, "Median ratio per trial 1.04; with the set-up charged 1.01; total seconds, set-up "
      "included, 0.96.", S7, lambda: "Median ratio per trial {ratio_median:.2f}; with the set-up charged "
      "{ratio_median_with_setup:.2f}; total seconds, set-up included, {ratio_total_with_setup:.2f}.".format(**json_file(S7)))
claim("speed.s7.setup", SPEED, "took 7.7 s", S7, lambda: f"took {json_file(S7)['setup_s']:.1f} s")
claim("speed.s7.settings", SPEED, "`bf16=True`) with length-grouped batches", S7,
      lambda: "`bf16=True`) with length-grouped batches" if json_file(S7)["naive_settings"] == {
          "arm": "best", "bf16": True, "group_by_length": True} else str(json_file(S7)["naive_settings"]))
claim("speed.s7.uncommitted", SPEED, "`\"autopeft_uncommitted\": true` at commit 6799be6", S7,
      lambda: f"`\"autopeft_uncommitted\": {str(json_file(S7)['autopeft_uncommitted']).lower()}` at commit "
      f"{json_file(S7)['commit'][:7]}")
claim("speed.s7.medians", SPEED, "The naive arm's median trial fell from 56.0 s (session 5: fp32, random batches) to "
      "36.0 s. The autopeft arm's rose from 15.5 s to 33.1 s", S7,
      lambda: "The naive arm's median trial fell from {:.1f} s (session 5: fp32, random batches) to {:.1f} s. The "
      "autopeft arm's rose from {:.1f} s to {:.1f} s".format(
          np.median(json_file("proxy_speed_s5.json")["naive_s"]), np.median(json_file(S7)["naive_s"]),
          np.median(json_file("proxy_speed_s5.json")["autopeft_s"]), np.median(json_file(S7)["autopeft_s"])))


def _s7_acc() -> str:
    d = json_file(S7)
    diff = np.round(np.array(d["autopeft_score"]) - np.array(d["naive_score"]), 3)
    return (f"Mean accuracy: naive {d['score_mean_naive']:.3f}, autopeft {d['score_mean_autopeft']:.3f}. "
            f"{(diff > 0).sum()} of 10 configs score higher in the autopeft arm, {(diff < 0).sum()} lower.")


claim("speed.s7.acc", SPEED, "Mean accuracy: naive 0.740, autopeft 0.768. 8 of 10 configs score higher in the "
      "autopeft arm, 2 lower.", S7, _s7_acc)

# head rate (session 6), shared and independent seed
claim("speed.headlr.row_2e-3", SPEED,
      "| 2e-3 (default) | 0.783 / 0.811 | 0.41 / 0.31 | 0.78 / 0.74 | 0.29 / 0.30 | 0.70 / 0.72 |",
      "proxy_fidelity.jsonl", lambda: "| 2e-3 (default) | {} | {} | {} | {} | {} |".format(
          " / ".join(f"{np.mean(sst2_s5()['proxies'][b]['proxy_scores']):.3f}" for b in ("1000", "2000")),
          per_budget(sst2_s5, "kendall_tau", (1000, 2000))(), per_budget(sst2_s5, "resolved_tau", (1000, 2000))(),
          per_budget(sst2_s5, "kendall_tau", (1000, 2000), sub="independent")(),
          per_budget(sst2_s5, "resolved_tau", (1000, 2000), sub="independent")()))
claim("speed.headlr.row_1e-3", SPEED, "| 1e-3 | 0.774 / 0.813 | 0.09 / 0.22 | 0.68 / 0.66 | 0.13 / 0.39 | 0.58 / 0.83 |",
      "proxy_fidelity.jsonl", lambda: "| 1e-3 | {} | {} | {} | {} | {} |".format(
          " / ".join(f"{np.mean(headlr_s6()['proxies'][b]['proxy_scores']):.3f}" for b in ("1000", "2000")),
          per_budget(headlr_s6, "kendall_tau", (1000, 2000))(), per_budget(headlr_s6, "resolved_tau", (1000, 2000))(),
          per_budget(headlr_s6, "kendall_tau", (1000, 2000), sub="independent")(),
          per_budget(headlr_s6, "resolved_tau", (1000, 2000), sub="independent")()))

# ---- Multi-fidelity on today's proxy (v2 table, session 4) ------------------------------------------------------
MF4 = "Multi-fidelity (MO-ASHA) on today's proxy"
V1, V2 = "peft_sst2.csv", "peft_sst2_v2.csv"
claim("mf4.v1_row", MF4, "| v1 table (frozen pooler, searched rate; same 100 draws): mean / at chance | 0.510 / 100 | "
      "0.532 / 88 | 0.595 / 64 | 0.738 / 8 |", V1,
      lambda: "| v1 table (frozen pooler, searched rate; same 100 draws): mean / at chance | " +
      " | ".join(v1_curve_stats(table(V1)[:100], f) for f in (250, 500, 1000, 2000)) + " |")
claim("mf4.v2_row", MF4, "| v2 table (today's proxy): mean / at chance | 0.590 / 16 | 0.700 / 0 | 0.734 / 0 | "
      "0.765 / 0 |", V2, lambda: "| v2 table (today's proxy): mean / at chance | " +
      " | ".join(v1_curve_stats(table(V2), f) for f in (250, 500, 1000, 2000)) + " |")
claim("mf4.v2_tau", MF4, "| v2: Kendall τ with the 2,000 score | 0.14 | 0.30 | 0.32 | — |", V2,
      lambda: "| v2: Kendall τ with the 2,000 score | " + " | ".join(
          f"{kendall(column(table(V2), f'score_{f}'), column(table(V2), 'score_2000')):.2f}" for f in (250, 500, 1000))
      + " | — |")
claim("mf4.v2_row_seconds", MF4, "23 s mean per row", V2, lambda: f"{column(table(V2), 'seconds').mean():.0f} s mean per row")
claim("mf4.single", MF4, "single fidelity: 766 s", "multifidelity/v2_top_o200_eta3.json",
      lambda: f"single fidelity: {replay('v2_top_o200_eta3')['single_median_s']:.0f} s")
claim("mf4.three_rungs", MF4, "reached in only 10/200 orders", "multifidelity/v2_top_o200_eta3.json",
      lambda: f"reached in only {replay('v2_top_o200_eta3')['multi_reached']}/200 orders")
claim("mf4.rung1000", MF4, "rung 1000: eta 2 ratio 0.97, eta 3 ratio 0.85", "multifidelity/v2_top_o200_r1000_eta*.json",
      lambda: f"rung 1000: eta 2 ratio {replay('v2_top_o200_r1000_eta2')['ratio']:.2f}, eta 3 ratio "
      f"{replay('v2_top_o200_r1000_eta3')['ratio']:.2f}")
claim("mf4.rung500", MF4, "rung 500: eta 2 ratio 1.27, eta 3 ratio 1.29", "multifidelity/v2_top_o200_r500_eta*.json",
      lambda: f"rung 500: eta 2 ratio {replay('v2_top_o200_r500_eta2')['ratio']:.2f}, eta 3 ratio "
      f"{replay('v2_top_o200_r500_eta3')['ratio']:.2f}")
claim("mf4.final_sd", MF4, "(sd 0.033)", V2, lambda: f"(sd {column(table(V2), 'score_2000').std(ddof=1):.3f})")

# ---- Multi-fidelity on the tabulated benchmark (v1, sessions 1-3) ------------------------------------------------
MF3 = "Multi-fidelity (MO-ASHA) on the tabulated benchmark"
claim("mf3.single", MF3, "| single fidelity (2,000 examples) | 4,250 s | 50/50 |", "multifidelity/v1_top_o50_eta3.json",
      lambda: f"| single fidelity (2,000 examples) | {replay('v1_top_o50_eta3')['single_median_s']:,.0f} s | 50/50 |")
claim("mf3.three_rungs", MF3, "| MO-ASHA, rungs 250/500/1000, eta 3 | never (∞) | 9/50 |",
      "multifidelity/v1_top_o50_eta3.json", lambda: "| MO-ASHA, rungs 250/500/1000, eta 3 | {} | {}/50 |".format(
          "never (∞)" if not math.isfinite(replay("v1_top_o50_eta3")["multi_median_s"]) else "finite",
          replay("v1_top_o50_eta3")["multi_reached"]))
for _eta, _q in ((3, "| MO-ASHA, rung 1000, eta 3 | 3,151 s (ratio 1.35) | 50/50 |"),
                 (2, "| MO-ASHA, rung 1000, eta 2 | 3,291 s (ratio 1.29) | 50/50 |")):
    claim(f"mf3.rung1000_eta{_eta}", MF3, _q, f"multifidelity/v1_top_o50_r1000_eta{_eta}.json",
          lambda e=_eta: "| MO-ASHA, rung 1000, eta {} | {:,.0f} s (ratio {:.2f}) | {}/50 |".format(
              e, replay(f"v1_top_o50_r1000_eta{e}")["multi_median_s"], replay(f"v1_top_o50_r1000_eta{e}")["ratio"],
              replay(f"v1_top_o50_r1000_eta{e}")["multi_reached"]))
claim("mf3.tau", MF3, "500: 0.20, 1000: 0.34", V1, lambda: "500: {:.2f}, 1000: {:.2f}".format(
    *(kendall(column(table(V1), f"score_{f}"), column(table(V1), "score_2000")) for f in (500, 1000))))

# ---- TREC (session 6) -----------------------------------------------------------------------------------------
TREC = "Proxy vs full training, session 6: TREC-6"
claim("trec.tau_seed0", TREC, "| Kendall τ vs the seed-0 full runs (they share the proxy's seed), 30 configs | 0.15 | "
      "0.37 | 0.41 |", "proxy_fidelity.jsonl", lambda: "| Kendall τ vs the seed-0 full runs (they share the proxy's "
      "seed), 30 configs | " + per_budget(trec_s6, "kendall_tau", (250, 500, 1000), sep=" | ")() + " |")
claim("trec.tau_indep", TREC, "| τ vs the independent seed-1 full runs (full vs full: 0.53) | 0.01 | 0.31 | 0.44 |",
      "proxy_fidelity.jsonl", lambda: f"| τ vs the independent seed-1 full runs (full vs full: "
      f"{trec_s6()['full_seed_tau']:.2f}) | " + per_budget(trec_s6, "kendall_tau", (250, 500, 1000), sep=" | ",
                                                          sub="independent")() + " |")
claim("trec.tau_mean", TREC, "| τ vs the mean of both full seeds | 0.08 | 0.36 | 0.43 |", "proxy_fidelity.jsonl",
      lambda: "| τ vs the mean of both full seeds | " + per_budget(trec_s6, "kendall_tau_seed_mean", (250, 500, 1000),
                                                                  sep=" | ")() + " |")
claim("trec.resolved", TREC, "| τ on the 142 of 435 pairs that the seed-0 full runs resolve (|Δ| > 0.013) | 0.20 | "
      "0.61 | 0.82 |", "proxy_fidelity.jsonl", lambda: "| τ on the {} of 435 pairs that the seed-0 full runs resolve "
      "(|Δ| > {:.3f}) | {} |".format(trec_s6()["proxies"]["1000"]["resolved_pairs"],
                                     2 * math.sqrt(2) * trec_s6()["seed_sd"],
                                     per_budget(trec_s6, "resolved_tau", (250, 500, 1000), sep=" | ")()))
claim("trec.resolved_indep", TREC, "| τ on the 131 pairs the independent seed-1 runs resolve (full vs full: 0.92) | "
      "0.07 | 0.58 | 0.74 |", "proxy_fidelity.jsonl", lambda: "| τ on the {} pairs the independent seed-1 runs "
      "resolve (full vs full: {:.2f}) | {} |".format(
          trec_s6()["proxies"]["1000"]["independent"]["resolved_pairs"],
          trec_s6()["proxies"]["1000"]["independent"]["full_vs_full_resolved_tau"],
          per_budget(trec_s6, "resolved_tau", (250, 500, 1000), sep=" | ", sub="independent")()))
claim("trec.loss", TREC, "| τ of −validation loss (seed 0) | 0.27 | 0.41 | 0.42 |", "proxy_fidelity.jsonl",
      lambda: "| τ of −validation loss (seed 0) | " + per_budget(trec_s6, "kendall_tau_loss", (250, 500, 1000),
                                                                   sep=" | ")() + " |")
claim("trec.front", TREC, "| Pareto recall of the seed-0 full front / full HV held by the proxy front's configs | "
      "0.40 / 93 % | 0.60 / 93 % | 1.00 / 100 % |", "proxy_fidelity.jsonl",
      lambda: "| Pareto recall of the seed-0 full front / full HV held by the proxy front's configs | " + " | ".join(
          "{:.2f} / {:.0f} %".format(trec_s6()["proxies"][b]["pareto_recall"], 100 * trec_s6()["proxies"][b]["front_hv_share"])
          for b in ("250", "500", "1000")) + " |")
claim("trec.ceiling", TREC, "the two full seeds agree at τ 0.53 (within autopeft 0.75, within lora 0.28)",
      "proxy_fidelity.jsonl", lambda: "the two full seeds agree at τ {:.2f} (within autopeft {:.2f}, within lora "
      "{:.2f})".format(trec_s6()["full_seed_tau"], *trec_s6()["full_seed_tau_by_space"].values()))
claim("trec.seed_sd", TREC, "One run's seed sd is 0.0045", "proxy_fidelity.jsonl",
      lambda: f"One run's seed sd is {trec_s6()['seed_sd']:.4f}")


def _trec_full_range() -> str:
    full = np.array(trec_s6()["proxies"]["1000"]["full_scores"])
    top = np.sort(full)[2:]
    low = np.sort(full)[:2]
    return f"28 of the 30 configs score {top.min():.3f}–{top.max():.3f} at full fidelity (the two others: head-only " \
           f"{low[0]:.3f} and a top-layer-only config {low[1]:.3f})"


claim("trec.full_range", TREC, "28 of the 30 configs score 0.895–0.939 at full fidelity (the two others: head-only "
      "0.629 and a top-layer-only config 0.645)", "proxy_fidelity.jsonl", _trec_full_range)

# ---- Proxy fidelity against an independent full seed (issue 14) -------------------------------------------------
IND = "Proxy fidelity against an independent full seed"


def _ind_row(summary, task: str, budget: int) -> str:
    i = summary()["proxies"][str(budget)]["independent"]
    return (f"| {task} | {budget:,} | {i['kendall_tau']:.3f} | {i['full_vs_full_tau']:.3f} | {i['tau_ratio']:.3f} | "
            f"{i['resolved_tau']:.2f} ({i['resolved_pairs']} pairs) | {i['full_vs_full_resolved_tau']:.2f} | "
            f"{100 * i['front_hv_share']:.1f} % | {100 * i['full_vs_full_front_hv_share']:.1f} % | "
            f"{'pass' if i['criterion_pass'] else 'fail'} |")


for _task, _summary, _b, _quoted in (
        ("SST-2", sst2_s5, 500, "| SST-2 | 500 | 0.294 | 0.366 | 0.803 | 0.67 (86 pairs) | 0.74 | 91.4 % | 97.8 % | fail |"),
        ("SST-2", sst2_s5, 1000, "| SST-2 | 1,000 | 0.292 | 0.366 | 0.797 | 0.70 (86 pairs) | 0.74 | 96.9 % | 97.8 % | fail |"),
        ("SST-2", sst2_s5, 2000, "| SST-2 | 2,000 | 0.302 | 0.366 | 0.825 | 0.72 (86 pairs) | 0.74 | 96.5 % | 97.8 % | pass |"),
        ("TREC", trec_s6, 250, "| TREC | 250 | 0.014 | 0.531 | 0.026 | 0.07 (131 pairs) | 0.92 | 91.9 % | 99.8 % | fail |"),
        ("TREC", trec_s6, 500, "| TREC | 500 | 0.305 | 0.531 | 0.575 | 0.58 (131 pairs) | 0.92 | 93.3 % | 99.8 % | fail |"),
        ("TREC", trec_s6, 1000, "| TREC | 1,000 | 0.444 | 0.531 | 0.837 | 0.74 (131 pairs) | 0.92 | 99.9 % | 99.8 % | pass |")):
    claim(f"independent.{_task.lower()}.{_b}", IND, _quoted, "proxy_fidelity.jsonl",
          lambda s=_summary, t=_task, b=_b: _ind_row(s, t, b))
claim("independent.margins", IND, "(SST-2 0.017, TREC 0.013)", "proxy_fidelity.jsonl",
      lambda: "(SST-2 {:.3f}, TREC {:.3f})".format(*(2 * math.sqrt(2) * f()["seed_sd"] for f in (sst2_s5, trec_s6))))
claim("independent.sst2_1000_miss", IND, "(0.292 against 0.8 × 0.366 = 0.293)", "proxy_fidelity.jsonl",
      lambda: "({:.3f} against 0.8 × {:.3f} = {:.3f})".format(
          sst2_s5()["proxies"]["1000"]["independent"]["kendall_tau"], sst2_s5()["full_seed_tau"],
          0.8 * sst2_s5()["full_seed_tau"]))
claim("independent.sst2_2000_margin", IND, "(SST-2 2,000: 0.302 against a threshold of 0.293)", "proxy_fidelity.jsonl",
      lambda: "(SST-2 2,000: {:.3f} against a threshold of {:.3f})".format(
          sst2_s5()["proxies"]["2000"]["independent"]["kendall_tau"], 0.8 * sst2_s5()["full_seed_tau"]))
claim("independent.resolved_prose", IND, "the proxy agrees at 0.72 (SST-2, 2,000) and 0.74 (TREC, 1,000). A second "
      "full run agrees at 0.74 and 0.92", "proxy_fidelity.jsonl",
      lambda: "the proxy agrees at {:.2f} (SST-2, 2,000) and {:.2f} (TREC, 1,000). A second full run agrees at {:.2f} "
      "and {:.2f}".format(sst2_s5()["proxies"]["2000"]["independent"]["resolved_tau"],
                          trec_s6()["proxies"]["1000"]["independent"]["resolved_tau"],
                          sst2_s5()["proxies"]["2000"]["independent"]["full_vs_full_resolved_tau"],
                          trec_s6()["proxies"]["1000"]["independent"]["full_vs_full_resolved_tau"]))
for _task, _file, _budgets in (("SST-2", "proxy_fidelity_independent_sst2.json", (500, 1000, 2000)),
                               ("TREC", "proxy_fidelity_independent_trec.json", (250, 500, 1000))):
    # the summary file the --summary command wrote holds the same numbers
    claim(f"independent.{_task.lower()}.file", IND, f"`benchmarks/data/{_file}`", _file,
          lambda f=_file, t=_task, bs=_budgets: f"`benchmarks/data/{f}`" if all(
              abs(json_file(f)[t.lower().replace("-", "")]["proxies"][str(b)]["independent"]["kendall_tau"] -
                  (sst2_s5 if t == "SST-2" else trec_s6)()["proxies"][str(b)]["independent"]["kendall_tau"]) < 1e-12
              for b in bs) else f"{f} disagrees with the log")

S5 = "Proxy vs full training, session 5"
S4 = "Proxy vs full training (Kendall τ), session 4"
MF6 = "Multi-fidelity, session 6: promotion with a noise margin"


def _probe(task: str, examples: int, epochs) -> list[float]:
    return [r["score"] for r in sorted(fidelity_runs().values(), key=lambda r: r["index"])
            if r["task"] == task and r["examples"] == examples and float(r["epochs"]) == float(epochs)]


claim("trec.probe_cola", TREC, "full runs reach MCC 0.05 and 0.10; every proxy of 500–2,000 examples predicts the "
      "majority class (MCC 0.000–0.012)", "proxy_fidelity.jsonl",
      lambda: "full runs reach MCC {} ; every proxy of 500–2,000 examples predicts the majority class (MCC {})".format(
          " and ".join(f"{v:.2f}" for v in _probe("cola", 6000, 3)),
          _range([v for e in (500, 1000, 2000) for v in _probe("cola", e, 1)])).replace(" ;", ";"))
claim("trec.probe_mrpc", TREC, "full 0.716 against a majority share of 0.68; proxies at 0.647–0.680",
      "proxy_fidelity.jsonl", lambda: "full {:.3f} against a majority share of 0.68; proxies at {}".format(
          *_probe("mrpc", 2600, 3), _range([v for e in (250, 500, 1000) for v in _probe("mrpc", e, 1)])))
claim("trec.first_full", TREC, "the first full run reached 0.926", "proxy_fidelity.jsonl",
      lambda: f"the first full run reached {_fid_runs('trec', 1500, 3900, 3.0, 0)[0]['score']:.3f}")
claim("s5.spreads", S5, "The lora.yaml configs' scores spread by sd 0.0048 across configs (mean of the two seeds "
      "0.865–0.879) against a seed sd of 0.0055: their order at full fidelity is noise, even on 5,000 rows. The "
      "autopeft.yaml configs spread by 0.027 (mean of the two seeds 0.793–0.877)", "proxy_fidelity.jsonl",
      lambda: _s5_spreads())
claim("s5.cross_kind", S5, "(0.698 vs 0.735 mean), at full fidelity above them (0.873 vs 0.856). From 1,000 examples "
      "on the order of the two groups is right (0.791 vs 0.774; 2,000: 0.815 vs 0.806)", "proxy_fidelity.jsonl",
      lambda: _s5_cross_kind())


def _s5_by_space():
    d = sst2_s5()
    f0 = np.array(d["proxies"]["1000"]["full_scores"])
    f1 = np.array([_fid_runs("sst2", 5000, 10000, 3.0, 1)[i]["score"] for i in range(30)])
    space = np.array(["autopeft", "lora"] * 15)  # configs alternate between the two spaces, autopeft first
    return d, f0, f1, space


def _s5_spreads() -> str:
    d, f0, f1, space = _s5_by_space()
    mean = (f0 + f1) / 2
    lo, ap = space == "lora", space == "autopeft"
    return (f"The lora.yaml configs' scores spread by sd {np.std(mean[lo], ddof=1):.4f} across configs (mean of the two "
            f"seeds {_range(mean[lo])}) against a seed sd of {np.std(f0[lo] - f1[lo], ddof=1) / math.sqrt(2):.4f}: their "
            f"order at full fidelity is noise, even on 5,000 rows. The autopeft.yaml configs spread by "
            f"{np.std(mean[ap], ddof=1):.3f} (mean of the two seeds {_range(mean[ap])})")


def _s5_cross_kind() -> str:
    d, f0, f1, space = _s5_by_space()

    def means(b):
        p = np.array(d["proxies"][b]["proxy_scores"])
        return p[space == "lora"].mean(), p[space == "autopeft"].mean()

    return ("({:.3f} vs {:.3f} mean), at full fidelity above them ({:.3f} vs {:.3f}). From 1,000 examples on the order "
            "of the two groups is right ({:.3f} vs {:.3f}; 2,000: {:.3f} vs {:.3f})").format(
        *means("500"), f0[space == "lora"].mean(), f0[space == "autopeft"].mean(), *means("1000"), *means("2000"))


claim("mf6.config13", MF6, "At the 250-example rung it scored 0.321, and head-only (0 params) scored 0.325",
      "proxy_fidelity.jsonl", lambda: "At the 250-example rung it scored {:.3f}, and head-only ({} params) scored "
      "{:.3f}".format(_fid_runs("trec", 1500, 250, 1.0, 0)[13]["score"], _fid_runs("trec", 1500, 250, 1.0, 0)[24]["params"],
                      _fid_runs("trec", 1500, 250, 1.0, 0)[24]["score"]))


def _s4_first4() -> str:
    old = {r["index"]: r["score"] for r in fidelity_runs().values() if r["task"] == "sst2" and r["head"] == ["classifier"]
           and r["lr"] == "kind" and r["examples"] == 1000}
    new = _fid_runs("sst2", 0, 1000, 1.0, 0)
    order = (1, 0, 2, 3)  # as RESULTS.md lists them
    return ("Their proxies were " + ", ".join(f"{old[i]:.3f}" for i in order[:3]) + f" and {old[order[3]]:.3f}; with "
            "the pooler trained they are " + ", ".join(f"{new[i]['score']:.3f}" for i in order[:3]) +
            f" and {new[order[3]]['score']:.3f}")


# ---- Multi-fidelity, session 6: the noise margin ----------------------------------------------------------------
MF6 = "Multi-fidelity, session 6: promotion with a noise margin"
for _name, _label, _eta, _quoted in (
        ("trec", "TREC log (250/500/1000 → 3900×3)", 2, "| TREC log (250/500/1000 → 3900×3) | 2 | 1,574 s | ∞, reached 2 % | 1,524 s, ratio 1.03, reached 100 % |"),
        ("trec", "TREC log", 3, "| TREC log | 3 | 1,574 s | ∞, reached 0 % | 1,511 s, ratio 1.04, reached 100 % |"),
        ("sst2log", "SST-2 log, session 5 (500/1000/2000 → 10000×3)", 2, "| SST-2 log, session 5 (500/1000/2000 → 10000×3) | 2 | 4,362 s | ∞, reached 26 % | 3,262 s, ratio 1.34, reached 100 % |"),
        ("sst2log", "SST-2 log, session 5", 3, "| SST-2 log, session 5 | 3 | 4,362 s | ∞, reached 1 % | 3,100 s, ratio 1.41, reached 100 % |"),
        ("v2", "`peft_sst2_v2.csv` (250/500/1000 → 2000)", 2, "| `peft_sst2_v2.csv` (250/500/1000 → 2000) | 2 | 716 s | 717 s, ratio 1.00, reached 66 % | 624 s, ratio 1.15, reached 100 % |"),
        ("v2", "`peft_sst2_v2.csv`", 3, "| `peft_sst2_v2.csv` | 3 | 716 s | ∞, reached 4 % | 615 s, ratio 1.16, reached 100 % |"),
        ("v1", "`peft_sst2.csv` (v1, 300 configs; 200 orders)", 3, "| `peft_sst2.csv` (v1, 300 configs; 200 orders) | 3 | 3,898 s | ∞, reached 18 % | 2,647 s, ratio 1.47, reached 100 % |")):
    claim(f"mf6.{_name}.eta{_eta}", MF6, _quoted, f"multifidelity/{_name}_{{top,margin}}_eta{_eta}.json",
          lambda n=_name, lab=_label, e=_eta: f"| {lab} | {e} | {single_cell(f'{n}_margin_eta{e}')()} | "
          f"{margin_cell(f'{n}_top_eta{e}')()} | {margin_cell(f'{n}_margin_eta{e}')()} |")


def _trec_full_seconds(indices=None) -> float:
    return sum(r["seconds"] for r in _fid_runs("trec", 1500, 3900, 3.0, 0).values()
               if indices is None or r["index"] in indices)


def _fid_runs(task, heldout, examples, epochs, seed) -> dict:
    return {r["index"]: r for r in fidelity_runs().values()
            if r["task"] == task and r["heldout"] == heldout and r["examples"] == examples
            and float(r["epochs"]) == epochs and r["seed"] == seed and r["lr"] == "kind" and r["head"] == POOLER
            and r["head_lr"] == 2e-3}


def _oracle_parts() -> tuple[float, list[float], float]:
    need = _trec_full_seconds({24, 13})  # head-only (index 24) and config 13: what the 95 % target needs
    proxies = [sum(r["seconds"] for r in _fid_runs("trec", 1500, b, 1.0, 0).values()) for b in (250, 500, 1000)]
    return need, proxies, _trec_full_seconds()


def _oracle() -> str:
    need, proxies, full = _oracle_parts()
    return (f"{need:.0f} s of full training. It would still pay every config's proxy at its one rung: "
            f"{proxies[0]:.0f} s at 250, {proxies[1]:.0f} s at 500, {proxies[2]:.0f} s at 1,000 examples. Against "
            f"training all 30 at full fidelity ({full:,.0f} s), that is " +
            " / ".join(f"{full / (p + need):.1f}×" for p in proxies) + ".")


claim("mf6.oracle", MF6, "62 s of full training. It would still pay every config's proxy at its one rung: 182 s at "
      "250, 208 s at 500, 298 s at 1,000 examples. Against training all 30 at full fidelity (2,212 s), that is "
      "9.1× / 8.2× / 6.1×.", "proxy_fidelity.jsonl", _oracle)
claim("mf6.ladder", MF6, "the ladder 250/500/1,000 costs 687 s", "proxy_fidelity.jsonl",
      lambda: f"the ladder 250/500/1,000 costs {sum(_oracle_parts()[1]):.0f} s")

# ---- Session 5: held-out scores, second full seed ---------------------------------------------------------------
S5 = "Proxy vs full training, session 5"
_S5B = (500, 1000, 2000)
claim("s5.tau", S5, "| Kendall τ vs the seed-0 full runs (they share the proxy's seed), 30 configs | 0.13 | 0.41 | 0.31 |",
      "proxy_fidelity.jsonl", lambda: "| Kendall τ vs the seed-0 full runs (they share the proxy's seed), 30 configs | "
      + per_budget(sst2_s5, "kendall_tau", _S5B, sep=" | ")() + " |")
claim("s5.by_space", S5, "| τ within autopeft.yaml / within lora.yaml (seed 0) | 0.60 / 0.30 | 0.38 / 0.26 | 0.54 / 0.10 |",
      "proxy_fidelity.jsonl", lambda: "| τ within autopeft.yaml / within lora.yaml (seed 0) | " + " | ".join(
          "{:.2f} / {:.2f}".format(*sst2_s5()["proxies"][str(b)]["kendall_tau_by_space"].values()) for b in _S5B) + " |")
claim("s5.seed1_mean", S5, "| τ with the independent seed-1 full runs / with the mean of both seeds | 0.29 / 0.20 | "
      "0.29 / 0.41 | 0.30 / 0.31 |", "proxy_fidelity.jsonl",
      lambda: "| τ with the independent seed-1 full runs / with the mean of both seeds | " + " | ".join(
          "{:.2f} / {:.2f}".format(sst2_s5()["proxies"][str(b)]["independent"]["kendall_tau"],
                                   sst2_s5()["proxies"][str(b)]["kendall_tau_seed_mean"]) for b in _S5B) + " |")
claim("s5.resolved", S5, "| τ on the 101 of 435 pairs the seed-0 full runs resolve | 0.41 | 0.78 | 0.74 |",
      "proxy_fidelity.jsonl", lambda: "| τ on the {} of 435 pairs the seed-0 full runs resolve | {} |".format(
          sst2_s5()["proxies"]["1000"]["resolved_pairs"], per_budget(sst2_s5, "resolved_tau", _S5B, sep=" | ")()))
claim("s5.loss", S5, "| τ of −(validation loss) instead of accuracy (seed 0) | 0.12 | 0.42 | 0.22 |",
      "proxy_fidelity.jsonl", lambda: "| τ of −(validation loss) instead of accuracy (seed 0) | " +
      per_budget(sst2_s5, "kendall_tau_loss", _S5B, sep=" | ")() + " |")
claim("s5.pareto", S5, "| Pareto Jaccard / recall of the seed-0 full front | 0.43 / 0.60 | 0.33 / 0.60 | 0.33 / 0.60 |",
      "proxy_fidelity.jsonl", lambda: "| Pareto Jaccard / recall of the seed-0 full front | " + " | ".join(
          "{:.2f} / {:.2f}".format(sst2_s5()["proxies"][str(b)]["pareto_jaccard"],
                                   sst2_s5()["proxies"][str(b)]["pareto_recall"]) for b in _S5B) + " |")
claim("s5.hv", S5, "| seed-0 full-fidelity hypervolume the proxy front's configs hold | 96 % | 98 % | 98 % |",
      "proxy_fidelity.jsonl", lambda: "| seed-0 full-fidelity hypervolume the proxy front's configs hold | " + " | ".join(
          f"{100 * sst2_s5()['proxies'][str(b)]['front_hv_share']:.0f} %" for b in _S5B) + " |")
claim("s5.seconds", S5, "| proxy seconds, median (5,000-row scoring included, shared machine) | 15.8 | 18.9 | 26.0 |",
      "proxy_fidelity.jsonl", lambda: "| proxy seconds, median (5,000-row scoring included, shared machine) | " +
      " | ".join(f"{np.median([r['seconds'] for r in _fid_runs('sst2', 5000, b, 1.0, 0).values()]):.1f}" for b in _S5B)
      + " |")
claim("s5.ceiling", S5, "agree at Kendall τ 0.37 (within autopeft.yaml 0.48, within lora.yaml 0.23). One full run's "
      "seed sd is 0.0060; the configs' full scores spread by sd 0.021", "proxy_fidelity.jsonl",
      lambda: "agree at Kendall τ {:.2f} (within autopeft.yaml {:.2f}, within lora.yaml {:.2f}). One full run's seed "
      "sd is {:.4f}; the configs' full scores spread by sd {:.3f}".format(
          sst2_s5()["full_seed_tau"], *sst2_s5()["full_seed_tau_by_space"].values(), sst2_s5()["seed_sd"],
          sst2_s5()["config_sd"]))
claim("s5.margin", S5, "2·√2·0.0060 = 0.017", "proxy_fidelity.jsonl",
      lambda: f"2·√2·{sst2_s5()['seed_sd']:.4f} = {2 * math.sqrt(2) * sst2_s5()['seed_sd']:.3f}")
for _rungs, _q in (("500", "| 500 | 1.06 (877/1000 orders reach the target) | 1.08 (622) |"),
                   ("1000", "| 1,000 | 1.01 (838) | 0.88 (559) |"),
                   ("2000", "| 2,000 | 0.97 (865) | 0.89 (590) |")):
    claim(f"s5.replay.r{_rungs}", S5, _q, f"multifidelity/sst2log_top_r{_rungs}_eta{{2,3}}.json",
          lambda r=_rungs: "| {:,} | {:.2f} ({}{}) | {:.2f} ({}) |".format(
              int(r), replay(f"sst2log_top_r{r}_eta2")["ratio"], replay(f"sst2log_top_r{r}_eta2")["multi_reached"],
              "/1000 orders reach the target" if r == "500" else "", replay(f"sst2log_top_r{r}_eta3")["ratio"],
              replay(f"sst2log_top_r{r}_eta3")["multi_reached"]))
claim("s5.replay.r500-2000", S5, "| 500, 2,000 | 0.91 (534) | — (88/1000) |", "multifidelity/sst2log_top_r500-2000_eta*.json",
      lambda: "| 500, 2,000 | {:.2f} ({}) | {} ({}/1000) |".format(
          replay("sst2log_top_r500-2000_eta2")["ratio"], replay("sst2log_top_r500-2000_eta2")["multi_reached"],
          "—" if not math.isfinite(replay("sst2log_top_r500-2000_eta3")["multi_median_s"]) else "finite",
          replay("sst2log_top_r500-2000_eta3")["multi_reached"]))
claim("s5.replay.single", S5, "Single fidelity needs 4,362 s", "multifidelity/sst2log_top_r500_eta2.json",
      lambda: f"Single fidelity needs {replay('sst2log_top_r500_eta2')['single_median_s']:,.0f} s")

# ---- Session 4 (dev-scored pairs) and RTE ---------------------------------------------------------------------
S4 = "Proxy vs full training (Kendall τ), session 4"
claim("s4.tau", S4, "| Kendall τ, all 30 configs | 0.01 | 0.17 (goal ≥ 0.6: not met) |", "proxy_fidelity.jsonl",
      lambda: "| Kendall τ, all 30 configs | {:.2f} | {:.2f} (goal ≥ 0.6: not met) |".format(
          sst2_s2()["proxies"]["500"]["kendall_tau"], sst2_s4()["proxies"]["1000"]["kendall_tau"]))
claim("s4.by_space", S4, "| τ within autopeft.yaml / within lora.yaml (15 each) | — | 0.34 / 0.06 |", "proxy_fidelity.jsonl",
      lambda: "| τ within autopeft.yaml / within lora.yaml (15 each) | — | {:.2f} / {:.2f} |".format(
          *sst2_s4()["proxies"]["1000"]["kendall_tau_by_space"].values()))
claim("s4.pareto", S4, "| Pareto agreement over (score, params), Jaccard / recall of the full front | 0.22 / 0.33 | 0.33 / 0.75 |",
      "proxy_fidelity.jsonl", lambda: "| Pareto agreement over (score, params), Jaccard / recall of the full front | "
      "{:.2f} / {:.2f} | {:.2f} / {:.2f} |".format(
          sst2_s2()["proxies"]["500"]["pareto_jaccard"], sst2_s2()["proxies"]["500"]["pareto_recall"],
          sst2_s4()["proxies"]["1000"]["pareto_jaccard"], sst2_s4()["proxies"]["1000"]["pareto_recall"]))
claim("s4.hv", S4, "share of the full front's | — | 96 %", "proxy_fidelity.jsonl",
      lambda: f"share of the full front's | — | {100 * sst2_s4()['proxies']['1000']['front_hv_share']:.0f} %")


def _chance(summary, budget) -> int:
    return int((np.array(summary()["proxies"][str(budget)]["proxy_scores"]) < 0.55).sum())


def _range(values, digits=3) -> str:
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}"


claim("s4.chance", S4, "| proxies at chance (< 0.55) | 18 of 30 | 0 of 30 (proxy 0.67–0.79) |", "proxy_fidelity.jsonl",
      lambda: "| proxies at chance (< 0.55) | {} of 30 | {} of 30 (proxy {}) |".format(
          _chance(sst2_s2, 500), _chance(sst2_s4, 1000), _range(sst2_s4()["proxies"]["1000"]["proxy_scores"], 2)))
claim("s4.full", S4, "| full scores | 0.62–0.85 | 0.70–0.856, median 0.837 |", "proxy_fidelity.jsonl",
      lambda: "| full scores | {} | {:.2f}–{:.3f}, median {:.3f} |".format(
          _range(sst2_s2()["proxies"]["500"]["full_scores"], 2), min(sst2_s4()["proxies"]["1000"]["full_scores"]),
          max(sst2_s4()["proxies"]["1000"]["full_scores"]), np.median(sst2_s4()["proxies"]["1000"]["full_scores"])))


def _rte_full() -> str:
    full = np.array(rte_s6()["proxies"]["500"]["full_scores"])
    proxy = rte_s6()["proxies"]["500"]["proxy_scores"]
    return (f"All 30: full {full.min():.3f}–{full.max():.3f} (median {np.median(full):.3f}; {(full > 146 / 277).sum()} "
            f"of 30 above the majority class), proxies {_range(proxy, 2)}, τ {rte_s6()['proxies']['500']['kendall_tau']:.2f}, "
            f"and only {rte_s6()['proxies']['500']['resolved_pairs']} of 435 pairs differs by more than the noise margin "
            f"({2 * math.sqrt(2) * rte_s6()['proxies']['500']['run_sd']:.3f}). Pareto recall "
            f"{rte_s6()['proxies']['500']['pareto_recall']:.2f}")


claim("rte.summary", S4, "All 30: full 0.462–0.552 (median 0.518; 7 of 30 above the majority class), proxies 0.42–0.51, "
      "τ 0.09, and only 1 of 435 pairs differs by more than the noise margin (0.085). Pareto recall 0.25",
      "proxy_fidelity.jsonl", _rte_full)

claim("s4.first4", S4, "Their proxies were 0.509, 0.731, 0.542 and 0.519; with the pooler trained they are 0.734, "
      "0.765, 0.743 and 0.756", "proxy_fidelity.jsonl", _s4_first4)


def _rte_seconds() -> str:
    rs = [r for r in fidelity_runs().values() if r["task"] == "rte"]
    return "the log's 30 runs give a mean of {:.0f} s per full run and {:.0f} s per proxy".format(
        np.mean([r["seconds"] for r in rs if r["examples"] == 2490]), np.mean([r["seconds"] for r in rs if r["examples"] == 500]))


claim("rte.seconds", S4, "the log's 30 runs give a mean of 260 s per full run and 24 s per proxy", "proxy_fidelity.jsonl",
      _rte_seconds)
claim("s4.dev_resolved", S5, "Session 4's dev-scored pairs give τ 1.00 on the 60 of 435 pairs", "proxy_fidelity.jsonl",
      lambda: "Session 4's dev-scored pairs give τ {:.2f} on the {} of 435 pairs".format(
          sst2_s4()["proxies"]["1000"]["resolved_tau"], sst2_s4()["proxies"]["1000"]["resolved_pairs"]))


# ---- Session 2 -----------------------------------------------------------------------------------------------
S2 = "Proxy vs full training (Kendall τ), session 2"
claim("s2.tau", S2, "| Kendall τ (proxy score vs full score) | 0.01 (goal ≥ 0.6: not met) |", "proxy_fidelity.jsonl",
      lambda: f"| Kendall τ (proxy score vs full score) | {sst2_s2()['proxies']['500']['kendall_tau']:.2f} (goal ≥ 0.6: not met) |")
claim("s2.pareto", S2, "| Pareto agreement over (score, params): Jaccard / recall of the full front | 0.22 / 0.33 |",
      "proxy_fidelity.jsonl", lambda: "| Pareto agreement over (score, params): Jaccard / recall of the full front | "
      "{:.2f} / {:.2f} |".format(sst2_s2()["proxies"]["500"]["pareto_jaccard"], sst2_s2()["proxies"]["500"]["pareto_recall"]))


def _s2_chance() -> str:
    full = np.array(sst2_s2()["proxies"]["500"]["full_scores"])
    return f"| proxies at chance (< 0.55) | {_chance(sst2_s2, 500)} of 30 (full scores: {_range(full, 2)}, median " \
           f"{np.median(full):.2f}) |"


claim("s2.chance", S2, "| proxies at chance (< 0.55) | 18 of 30 (full scores: 0.62–0.85, median 0.83) |",
      "proxy_fidelity.jsonl", _s2_chance)


def _s2_above() -> str:
    d = sst2_s2()["proxies"]["500"]
    proxy, full = np.array(d["proxy_scores"]), np.array(d["full_scores"])
    keep = proxy >= 0.55
    return f"| τ among the {keep.sum()} proxies above chance | {kendall(proxy[keep], full[keep]):.2f} |"


claim("s2.above_chance", S2, "| τ among the 12 proxies above chance | 0.03 |", "proxy_fidelity.jsonl", _s2_above)


def _s2_lr() -> str:
    runs = sorted((r for r in fidelity_runs().values() if r["task"] == "sst2" and r["lr"] == "searched"
                   and r["examples"] == 500 and r["seed"] == 0), key=lambda r: r["index"])
    full = {r["index"]: r["score"] for r in fidelity_runs().values() if r["task"] == "sst2" and r["lr"] == "searched"
            and r["examples"] == 5000 and r["seed"] == 0}
    lr = [r["hparams"]["learning_rate"] for r in runs]
    return "| τ(learning rate, proxy score) / τ(learning rate, full score) | {:+.2f} / {:+.2f} |".format(
        kendall(lr, [r["score"] for r in runs]), kendall(lr, [full[r["index"]] for r in runs])).replace("-", "−")


claim("s2.lr", S2, "| τ(learning rate, proxy score) / τ(learning rate, full score) | +0.40 / −0.25 |",
      "proxy_fidelity.jsonl", _s2_lr)

# ---- Analytic memory estimate ---------------------------------------------------------------------------------
MEM = "Analytic memory estimate"
claim("memory.first44", MEM, "first 44 rows: mean |error| 11.4 %, max 20.1 %, biased +10.5 %", V1,
      lambda: "first 44 rows: " + memory_error(table(V1)[:44]))
claim("memory.all300", MEM, "all 300 rows: mean |error| 11.6 %, max 20.8 %, biased +11.3 %", V1,
      lambda: "all 300 rows: " + memory_error(table(V1)))
claim("memory.v2", MEM, "the 100 rows of `peft_sst2_v2.csv`: mean |error| 12.8 %, max 21.8 %, biased +12.4 %", V2,
      lambda: "the 100 rows of `peft_sst2_v2.csv`: " + memory_error(table(V2)))

# ---- Steady-state memory and its parts (issue 14) ------------------------------------------------------------
SSM = "Steady-state memory and its parts"


def device_memory_row(device: str, reference: str) -> str:
    """One row of the device table as RESULTS.md renders it (MiB; parts weights/gradients/optimizer/activations/other)."""
    r = next(r for r in json_file("device_memory_cuda.json")["rows"]
             if r["device"] == device and r["reference"] == reference)
    b = r["breakdown"]
    parts = " / ".join(f"{b[k] / 2**20:.1f}" for k in ("weights", "gradients", "optimizer", "activations", "other"))
    return (f"| {device} | {reference} | {r['trainable']:,} | {r['peak'] / 2**20:.1f} | {parts} | "
            f"{r['optimizer_over_8x_trainable']:.3f} |")


for _device in ("cuda", "cpu"):
    for _ref in ("full fine-tuning", "Houlsby adapter (serial m=64)", "parallel adapter (m=64, s=4)",
                 "prefix tuning (l=30)", "LoRA (r=8, query/value)", "head-only"):
        claim(f"ssm.{_device}.{_ref.split()[0].lower()}", SSM, device_memory_row(_device, _ref),
              "device_memory_cuda.json", functools.partial(device_memory_row, _device, _ref))


def quickstart_reference_ratios() -> str:
    """Optimizer part / (8 B x trainable) and parts / peak of the quickstart's references, worst of each."""
    refs = [t for t in json_file("quickstart_references_s7.json") if t.get("reference")]
    opt = [t["measured"]["memory_breakdown"]["optimizer"] / (8 * t["measured"]["trainable"]) for t in refs]
    parts = [sum(t["measured"]["memory_breakdown"].values()) / t["values"]["memory"] for t in refs]
    return (f"{len(refs)} references: optimizer ÷ (8 B × trainable) {min(opt):.3f}–{max(opt):.3f}, "
            f"parts ÷ peak {min(parts):.4f}–{max(parts):.4f}")


claim("ssm.quickstart", SSM, "5 references: optimizer ÷ (8 B × trainable) 1.000–1.000, parts ÷ peak 1.0000–1.0000",
      "quickstart_references_s7.json", quickstart_reference_ratios)


def cuda_priming() -> str:
    """What priming AdamW without a pass through the model did on CUDA (the first pass's workspaces in the peak)."""
    primed = {r["reference"]: r["peak"] for r in json_file("device_memory_cuda_primed.json")["rows"]}
    stepped = {r["reference"]: r["peak"] for r in json_file("device_memory_cuda.json")["rows"]
               if r["device"] == "cuda"}
    ref = "full fine-tuning"
    gpu = json_file("gpu_check_h200.json")["trials_bf16"]
    return (f"full fine-tuning {primed[ref] / 2**20:.1f} MiB primed vs {stepped[ref] / 2**20:.1f} MiB after a training "
            f"step; the decoder check's first trial (head only) {gpu['head only']['memory_MiB']:.1f} MiB against "
            f"{gpu['LoRA r8 q/v, top 2']['memory_MiB']:.1f} MiB for LoRA on its top 2 layers")


claim("ssm.cuda_priming", SSM, cuda_priming(), "device_memory_cuda_primed.json", cuda_priming)


def gpu_decoder_cache() -> str:
    c = json_file("gpu_check_h200.json")["fp32_cached_vs_uncached"]
    return (f"train loss {c['train_loss'][0]:.7f} cached vs {c['train_loss'][1]:.7f} uncached, score "
            f"{c['score'][0]:.2f} vs {c['score'][1]:.2f}")


claim("ssm.gpu_decoder_cache", SSM, gpu_decoder_cache(), "gpu_check_h200.json", gpu_decoder_cache)


def memory_estimate_errors(key: str) -> str:
    from memory_estimate import summary

    e = summary(json_file("memory_estimate.json")["rows"])[key]
    return f"mean |error| {e['mean_abs_pct']:.1f} %, max {e['max_abs_pct']:.1f} %, bias {e['bias_pct']:+.1f} %"


claim("ssm.estimate.shipped", SSM, "with the shipped constants: mean |error| 3.0 %, max 15.2 %, bias -2.4 %",
      "memory_estimate.json", lambda: "with the shipped constants: " + memory_estimate_errors("test_error_shipped"))
claim("ssm.estimate.fit", SSM, "on the fitting draws: mean |error| 2.7 %, max 12.2 %, bias -0.1 %",
      "memory_estimate.json", lambda: "on the fitting draws: " + memory_estimate_errors("fit_error_fitted"))


# ---- Quickstart, end to end (session 7) ------------------------------------------------------------------------
claim("quickstart.s7", "Quickstart, end to end", "rc=0 elapsed=182", "quickstart_s7.log",
      lambda: (DATA / "quickstart_s7.log").read_text().strip().splitlines()[-1])


# ---- The tabulated PEFT benchmark -----------------------------------------------------------------------------
TAB = "The tabulated PEFT benchmark"


def _precision_stats() -> str:
    rows = table(V1)

    def part(space, prec, f):
        s = column([r for r in rows if r["space"] == space and r["precision"] == prec], "score_2000")
        return f(s)

    mean = lambda s: f"{s.mean():.3f}"  # noqa: E731
    chance = lambda s: f"{100 * (s < 0.55).mean():.0f} %"  # noqa: E731
    return (f"autopeft space mean score_2000 {part('autopeft', 'fp32', mean)} fp32 / {part('autopeft', 'bfloat16', mean)} "
            f"bf16, lora {part('lora', 'fp32', mean)} / {part('lora', 'bfloat16', mean)}; share at chance "
            f"{part('autopeft', 'fp32', chance)} / {part('autopeft', 'bfloat16', chance)} and "
            f"{part('lora', 'fp32', chance)} / {part('lora', 'bfloat16', chance)}")


claim("table.precision", TAB, "autopeft space mean score_2000 0.705 fp32 / 0.735 bf16, lora 0.766 / 0.751; share at "
      "chance 16 % / 6 % and 2 % / 3 %", V1, _precision_stats)
claim("table.fp32_rows", TAB, "Rows 0–111 trained in fp32, rows 112–299", V1, lambda: "Rows 0–{} trained in fp32, rows {}–{}".format(
    max(int(r["row"]) for r in table(V1) if r["precision"] == "fp32"),
    min(int(r["row"]) for r in table(V1) if r["precision"] != "fp32"), max(int(r["row"]) for r in table(V1))))
claim("table.surrogate", TAB, "R² 0.596, Spearman 0.659, MAE 0.033 (score sd 0.075", V1,
      lambda: "R² {r2:.3f}, Spearman {spearman:.3f}, MAE {mae:.3f} (score sd {target_sd:.3f}".format(**surrogate()))

# ---- League -----------------------------------------------------------------------------------------------------
PEFT_BACKENDS = ("gp", "tpe", "nsga2", "random", "mobo", "ax")
SYN_BACKENDS = ("gp", "tpe", "nsga2", "random", "mobo")
LEAGUE_QUOTED = {  # the rows RESULTS.md shows, per problem
    "peft-autopeft": ["| gp | 0.0812 ± 0.0162 | 0.1419 ± 0.0231 | 0.1658 ± 0.0082 | – | 37 | 0.725 | 1.156 |",
                      "| tpe | 0.0885 ± 0.0187 | 0.1321 ± 0.0261 | 0.1546 ± 0.0192 | – | >50 | 0.003 | 0.004 |",
                      "| nsga2 | 0.0761 ± 0.0154 | 0.0999 ± 0.0232 | 0.1267 ± 0.0234 | – | >50 | 0.001 | 0.001 |",
                      "| random | 0.0801 ± 0.0152 | 0.1142 ± 0.0137 | 0.1384 ± 0.0149 | – | >50 | 0.001 | 0.001 |",
                      "| mobo | 0.1380 ± 0.0194 | 0.1677 ± 0.0045 | 0.1759 ± 0.0021 | – | 16 | 0.391 | 0.331 |",
                      "| ax | 0.0980 ± 0.0240 | 0.1388 ± 0.0146 | 0.1574 ± 0.0097 | – | >50 | 11.713 | 20.151 |"],
    "peft-lora": ["| gp | 0.0659 ± 0.0134 | 0.0989 ± 0.0186 | 0.1527 ± 0.0159 | – | 47 | 0.754 | 1.230 |",
                  "| tpe | 0.0612 ± 0.0103 | 0.0827 ± 0.0126 | 0.0964 ± 0.0155 | – | >50 | 0.003 | 0.004 |",
                  "| nsga2 | 0.0595 ± 0.0103 | 0.0694 ± 0.0112 | 0.0807 ± 0.0130 | – | >50 | 0.001 | 0.001 |",
                  "| random | 0.0596 ± 0.0107 | 0.0713 ± 0.0090 | 0.0798 ± 0.0090 | – | >50 | 0.001 | 0.001 |",
                  "| mobo | 0.1281 ± 0.0150 | 0.1548 ± 0.0125 | 0.1657 ± 0.0077 | – | 22 | 0.406 | 0.327 |",
                  "| ax | 0.0593 ± 0.0061 | 0.1403 ± 0.0182 | 0.1598 ± 0.0044 | – | 28 | 10.691 | 18.229 |"],
    "mixed-zdt": ["| gp | 0.6418 ± 0.0256 | 0.7007 ± 0.0224 | 0.7479 ± 0.0107 | 0.0745 ± 0.0099 | 25 | 0.551 | 0.760 |",
                  "| tpe | 0.6300 ± 0.0183 | 0.6998 ± 0.0223 | 0.7405 ± 0.0210 | 0.0742 ± 0.0205 | 26 | 0.005 | 0.007 |",
                  "| nsga2 | 0.6121 ± 0.0238 | 0.6432 ± 0.0273 | 0.6924 ± 0.0217 | 0.0973 ± 0.0158 | >50 | 0.001 | 0.001 |",
                  "| random | 0.6163 ± 0.0166 | 0.6701 ± 0.0133 | 0.6993 ± 0.0163 | 0.1009 ± 0.0101 | >50 | 0.000 | 0.000 |",
                  "| mobo | 0.6588 ± 0.0205 | 0.7278 ± 0.0166 | 0.7778 ± 0.0103 | 0.0515 ± 0.0079 | 18 | 0.252 | 0.188 |"],
    "mixed-dtlz2": ["| gp | 0.2062 ± 0.0881 | 0.2775 ± 0.1008 | 0.3883 ± 0.1210 | 0.3568 ± 0.0707 | >50 | 0.939 | 1.168 |",
                    "| tpe | 0.1688 ± 0.0854 | 0.3671 ± 0.0685 | 0.5548 ± 0.0859 | 0.2438 ± 0.0502 | 39 | 0.005 | 0.006 |",
                    "| nsga2 | 0.1755 ± 0.0913 | 0.2740 ± 0.1077 | 0.4147 ± 0.0919 | 0.3237 ± 0.0534 | >50 | 0.001 | 0.001 |",
                    "| random | 0.1850 ± 0.0869 | 0.3120 ± 0.0697 | 0.4030 ± 0.0486 | 0.3303 ± 0.0367 | >50 | 0.000 | 0.000 |",
                    "| mobo | 0.2144 ± 0.0786 | 0.3545 ± 0.1123 | 0.5293 ± 0.0901 | 0.2879 ± 0.0721 | 44 | 0.324 | 0.272 |"],
}
for _problem, _rows in LEAGUE_QUOTED.items():
    for _row in _rows:
        _backend = _row.split("|")[1].strip()
        claim(f"league.{_problem}.{_backend}", _problem, _row, "league_runs.jsonl",
              lambda p=_problem, b=_backend: normalise(league_rows(
                  p, PEFT_BACKENDS if p.startswith("peft-") else SYN_BACKENDS)[b]))

LEAGUE_END = "mixed-dtlz2"  # the prose after the last league table sits under its heading


def _ax_zdt() -> str:
    zdt = league_selection("mixed-zdt", ("ax",))
    igd = np.array([r["igd_plus"] for r in zdt])
    return (f"mixed-zdt {len(zdt)} seeds, HV@50 {hv50('mixed-zdt', 'ax')}, IGD+ {igd.mean():.4f} ± "
            f"{igd.std(ddof=1):.4f}, {np.mean([r['s_per_suggest'] for r in zdt]):.1f} s per suggestion")


def _ax_dtlz() -> str:
    dtlz = league_selection("mixed-dtlz2", ("ax",))
    return f"mixed-dtlz2 only seeds {dtlz[0]['seed']}–{dtlz[-1]['seed']} ({np.mean([r['hv'][-1] for r in dtlz]):.3f}"


claim("league.ax_zdt", LEAGUE_END, "mixed-zdt 10 seeds, HV@50 0.7512 ± 0.0230, IGD+ 0.0698 ± 0.0190, 6.6 s per "
      "suggestion", "league_runs.jsonl", _ax_zdt)
claim("league.ax_dtlz2", LEAGUE_END, "mixed-dtlz2 only seeds 0–1 (0.332", "league_runs.jsonl", _ax_dtlz)
for _p, _b, _s, _q in (("peft-autopeft", "mobo-constant", None, "| peft-autopeft (surrogate v1) | 0.1690 ± 0.0041 |"),
                       ("peft-autopeft", "mobo-constant", 2, "| peft-autopeft (surrogate v2) | 0.1756 ± 0.0024 | 0.1759 ± 0.0021"),
                       ("peft-lora", "mobo-constant", None, "| peft-lora (surrogate v1) | 0.1602 ± 0.0064 |"),
                       ("peft-lora", "mobo-constant", 2, "| peft-lora (surrogate v2) | 0.1601 ± 0.0114 | 0.1657 ± 0.0077"),
                       ("mixed-zdt", "mobo-constant", 2, "| mixed-zdt | 0.7625 ± 0.0121 | 0.7778 ± 0.0103"),
                       ("mixed-dtlz2", "mobo-constant", 2, "| mixed-dtlz2 | 0.5293 ± 0.0901 | 0.5293 ± 0.0901")):
    claim(f"league.prior.{_p}.v{_s or 1}", LEAGUE_END, _q, "league_runs.jsonl",
          lambda p=_p, b=_b, s=_s, q=_q: "| " + q.split("|")[1].strip() + " | " + (
              f"{hv50(p, b, s)} |" if s is None else f"{hv50(p, b, s)} | {hv50(p, 'mobo', s)}"))
claim("league.gp_v1", LEAGUE_END, "(gp 0.1708 ± 0.0097", "league_runs.jsonl",
      lambda: f"(gp {hv50('peft-autopeft', 'gp', None)}")
def _head_only_rows() -> str:
    s = column([r for r in table(V1) if json.loads(r["config"]) == {}], "score_2000")
    return f"(the table's {len(s)} head-only rows: {s.min():.3f}–{s.max():.3f})"


claim("league.head_only_rows", "League table", "(the table's 6 head-only rows: 0.518–0.526)", V1, _head_only_rows)
claim("league.gp_seed4_v1", "League table", "`trace_backend.py gp --seed 4`: its 0.1812", "league_runs.jsonl",
      lambda: "`trace_backend.py gp --seed 4`: its {:.4f}".format(
          [r for r in league_selection("peft-autopeft", ("gp",), None) if r["seed"] == 4][0]["hv"][-1]))
def _repro() -> dict[tuple[str, str], tuple[bool, float, float]]:
    """(backend, problem) -> (same curve as logged, HV@50 now, HV@50 logged) for the session-7 re-runs."""
    logged = {(r["backend"], r["problem"]): r for p in ("peft-autopeft", "mixed-zdt")
              for r in league_selection(p, ("mobo", "gp", "tpe", "nsga2", "random")) if r["seed"] == 0}
    out = {}
    for line in (DATA / "league_repro_s7.jsonl").read_text().splitlines():
        r = json.loads(line)
        old = logged[(r["backend"], r["problem"])]
        out[(r["backend"], r["problem"])] = (r["hv"] == old["hv"], r["hv"][-1], old["hv"][-1])
    return out


def _repro_same() -> str:
    same = [b for b in ("mobo", "tpe", "nsga2", "random", "gp")
            if all(_repro()[(b, p)][0] for p in ("peft-autopeft", "mixed-zdt"))]
    return ", ".join(same[:-1]) + f" and {same[-1]} reproduce their logged hypervolume curves exactly, on both problems."


claim("league.repro_same", "League table", "mobo, tpe, nsga2 and random reproduce their logged hypervolume curves "
      "exactly, on both problems.", "league_repro_s7.jsonl", _repro_same)
claim("league.repro_gp", "League table", "gp does not: peft-autopeft HV@50 0.1599 against 0.1707 logged, mixed-zdt "
      "0.7471 against 0.7708.", "league_repro_s7.jsonl", lambda: "gp does not: peft-autopeft HV@50 {1:.4f} against "
      "{2:.4f} logged, ".format(*_repro()[("gp", "peft-autopeft")]) + "mixed-zdt {1:.4f} against {2:.4f}.".format(
          *_repro()[("gp", "mixed-zdt")]) if not any(_repro()[("gp", p)][0] for p in ("peft-autopeft", "mixed-zdt"))
      else "gp reproduces")


claim("league.surrogate_v2", "League table", "Held-out accuracy of version 2 (5-fold, score_2000): R² 0.596, Spearman "
      "0.659, MAE 0.033", V1, lambda: "Held-out accuracy of version 2 (5-fold, score_2000): R² {r2:.3f}, Spearman "
      "{spearman:.3f}, MAE {mae:.3f}".format(**surrogate()))


# ---- Warm start (issue 17) -------------------------------------------------------------------------------------
WARM, WS = "Warm start: trials to reach", "warm_start.json"


def _ws(task: str) -> dict:
    return json_file(WS)["tasks"][task]


def _ws_arm(task: str, arm: str) -> dict:
    return _ws(task)["arms"][arm]


def _ws_table(task: str) -> str:
    from warm_start import render_table

    return render_table(json_file(WS), task)


def _ws_slab(task: str, score: float) -> float:
    """HV of a head-only point (0 params: the whole params axis) with this score, in the task's frame."""
    frame = _ws(task)["frame"]
    ref, ideal = frame["reference_values"]["score"], -frame["ideal"][0]
    return (score - ref) / (ideal - ref)


def _ws_noise(task: str, which: str) -> dict:
    return _ws(task)["shared_configurations"][which]


def _ws_signed(x: float, digits: int = 3) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def _ws_delta(task: str, k: int) -> float:
    return _ws_arm(task, "warm_s1")[f"hv@{k}"] - _ws_arm(task, "cold_s1")[f"hv@{k}"]


def _ws_headonly_trec() -> str:
    s3, s1 = _ws_arm("trec", "warm_s3")["head_only"][0], _ws_arm("trec", "cold_s1")["head_only"][0]
    a, b = _ws_slab("trec", s3), _ws_slab("trec", s1)
    lead = _ws_arm("trec", "warm_s3")["hv@30"] - _ws_arm("trec", "cold_s1")["hv@30"]
    return (f"seed 3's head-only scored {s3:.3f}, against {s1:.3f} for seed 1, so that point alone is worth HV "
            f"{a:.3f} against {b:.3f}. That difference, {a - b:.3f}, is {'more' if a - b > lead else 'less'} than "
            f"warm seed 3's whole lead at HV@30 ({lead:.3f}).")


def _ws_headonly_sst2() -> str:
    s2, s1 = _ws_arm("sst2", "cold_s2")["head_only"][0], _ws_arm("sst2", "cold_s1")["head_only"][0]
    cost = _ws_slab("sst2", s1) - _ws_slab("sst2", s2)
    gap = _ws_arm("sst2", "cold_s1")["hv@30"] - _ws_arm("sst2", "cold_s2")["hv@30"]
    return (f"cold seed 2's head-only scored {s2:.3f} against {s1:.3f}, which costs it {cost:.3f}. That is "
            f"{'more' if cost > gap else 'less'} than its whole gap to seed 1 ({gap:.3f}).")


def _ws_paired_reach() -> str:
    w = [_ws_arm(t, "warm_s1")["reaches_cold_s1_hv30_at"] for t in ("sst2", "trec")]
    c = [_ws_arm(t, "cold_s1")["reaches_cold_s1_hv30_at"] for t in ("sst2", "trec")]
    saved = sorted(ci - wi for ci, wi in zip(c, w))
    return (f"It reaches cold seed 1's HV@30 after {w[0]} trials on SST-2 and {w[1]} on TREC-6. Cold seed 1 itself "
            f"got there at {c[0]} and {c[1]}, so the saving is between {_ws_signed(saved[0], 0)} and "
            f"{_ws_signed(saved[1], 0)} trials.")


def _ws_within() -> str:
    a = _ws_arm("sst2", "warm_s1")
    target = _ws("sst2")["cold_s1_hv30"]
    k = next(i + 1 for i in range(len(a["hv"])) if all(target - v < 0.001 for v in a["hv"][i:]))
    return f"within 0.001 of the target from trial {k}"


def _ws_early() -> str:
    n = [_ws_arm(t, "warm_s1")["warm_start"]["ran"] for t in ("sst2", "trec")]
    w = [_ws_arm(t, "warm_s1")["hv"][k - 1] for t, k in zip(("sst2", "trec"), n)]
    c = [_ws_arm(t, "cold_s1")["hv"][k - 1] for t, k in zip(("sst2", "trec"), n)]
    return (f"HV after its {n[0]} / {n[1]} warm trials {w[0]:.3f} / {w[1]:.3f}, against cold seed 1's "
            f"{c[0]:.3f} / {c[1]:.3f} at the same trial.")


def _ws_runtime() -> str:
    d = json_file(WS)
    arms = [a for t in d["tasks"].values() for a in t["arms"].values()]
    walls = [a["wall_s"] / 60 for a in arms]
    secs = sorted(x for a in arms for x in a["seconds"])
    return (f"the {len(arms)} studies took {d['wall_s_total'] / 60:.0f} min of wall time in all: "
            f"{min(walls):.1f}–{max(walls):.1f} min each, {secs[0]:.1f}–{secs[-1]:.1f} s per trial (median "
            f"{float(np.median(secs)):.1f} s)")


def _ws_front(task: str) -> str:
    w = _ws_arm(task, "warm_s1")["warm_start"]
    params = [v[1] for v in w["source_values"]]
    return f"{w['source_front']} front configurations ({min(params):,.0f}–{max(params):,.0f} params)" \
        if task == "sst2" else f"{w['source_front']} ({min(params):,.0f}–{max(params):,.0f} params)"


def _ws_mapped() -> str:
    ws = [_ws_arm(t, a)["warm_start"] for t in ("sst2", "trec") for a in ("warm_s1", "warm_s3")]
    fixed = {f for w in ws for f in w["fixed_params"]}
    space = {w["params_in_space"] for w in ws}
    whole = len(fixed) == 1 and fixed == space and all(w["enqueued"] == w["ran"] == w["source_front"] for w in ws)
    failed = sum(1 for t in ("sst2", "trec") for a in ("warm_s1", "warm_s3") for i in _ws_arm(t, a)["warm_start"]
                 ["trials"] if _ws_arm(t, a)["values"][i] is None)
    return (f"{'Every configuration mapped whole' if whole else 'Not every configuration mapped whole'}: "
            f"{min(fixed)} of {min(space)} parameters (same model and space); none collapsed, "
            f"{'none' if not failed else failed} failed.")


#: the two tables as RESULTS.md shows them
WS_TABLES = {
    "sst2": """| SST-2 | cold, seed 1 | warm, seed 1 | warm, seed 3 | cold, seed 2 |
|---|---|---|---|---|
| warm-start configurations run first | – | 7 (of 7 on TREC-6's front) | 7 (of 7 on TREC-6's front) | – |
| HV@10 | 0.6139 | 0.6424 | 0.6503 | 0.4705 |
| HV@20 | 0.6419 | 0.6503 | 0.6559 | 0.5653 |
| HV@30 | 0.6529 | 0.6596 | 0.6756 | 0.5674 |
| trials to reach cold seed 1's HV@30 (0.6529) | 25 | 27 | 19 | not reached in 30 (HV@30 0.5674) |
| same, head-only trials left out (HV@30 of cold seed 1 in that frame: 0.8091) | 25 | 27 | 23 | 19 |
| best score | 0.770 | 0.770 | 0.760 | 0.780 |
| head-only score (0 params) | 0.662 | 0.662 | 0.664 | 0.622 |
| failed trials | 0 | 0 | 0 | 0 |""",
    "trec": """| TREC-6 | cold, seed 1 | warm, seed 1 | warm, seed 3 | cold, seed 2 |
|---|---|---|---|---|
| warm-start configurations run first | – | 9 (of 9 on SST-2's front) | 9 (of 9 on SST-2's front) | – |
| HV@10 | 0.4128 | 0.4243 | 0.5146 | 0.3583 |
| HV@20 | 0.4611 | 0.4734 | 0.5260 | 0.3765 |
| HV@30 | 0.4759 | 0.4836 | 0.5420 | 0.4007 |
| trials to reach cold seed 1's HV@30 (0.4759) | 27 | 24 | 5 | not reached in 30 (HV@30 0.4007) |
| same, head-only trials left out (HV@30 of cold seed 1 in that frame: 0.7675) | 27 | 24 | 30 | not reached in 30 (HV@30 0.5920) |
| best score | 0.814 | 0.822 | 0.814 | 0.830 |
| head-only score (0 params) | 0.396 | 0.396 | 0.462 | 0.392 |
| failed trials | 0 | 0 | 0 | 0 |"""}
for _task in ("sst2", "trec"):
    claim(f"warm.{_task}.table", WARM, WS_TABLES[_task], WS, functools.partial(_ws_table, _task))
claim("warm.reference", WARM, "accuracy: 0.52 on SST-2, 0.23 on TREC-6; 742,656 params", WS,
      lambda: "accuracy: {:.2f} on SST-2, {:.2f} on TREC-6; {:,.0f} params".format(
          _ws("sst2")["frame"]["reference_values"]["score"], _ws("trec")["frame"]["reference_values"]["score"],
          _ws("sst2")["frame"]["reference_values"]["params"]))
claim("warm.front.sst2", WARM, "on SST-2, TREC's 7 front configurations (0–74,560 params);", WS,
      lambda: f"on SST-2, TREC's {_ws_front('sst2')};")
claim("warm.front.trec", WARM, "on TREC, SST-2's 9 (0–465,984 params).", WS,
      lambda: f"on TREC, SST-2's {_ws_front('trec')}.")
claim("warm.mapped", WARM, "Every configuration mapped whole: 9 of 9 parameters (same model and space); none "
      "collapsed, none failed.", WS, _ws_mapped)
claim("warm.designed", WARM, "The warm study reaches cold seed 1's HV@30 after 19 trials on SST-2 and after 5 on "
      "TREC-6.", WS, lambda: "The warm study reaches cold seed 1's HV@30 after {} trials on SST-2 and after {} on "
      "TREC-6.".format(*(_ws_arm(t, "warm_s3")["reaches_cold_s1_hv30_at"] for t in ("sst2", "trec"))))
claim("warm.designed_noise_floor", WARM, "The second cold seed does not reach it in 30 trials.", WS,
      lambda: "The second cold seed does not reach it in 30 trials." if all(
          _ws_arm(t, "cold_s2")["reaches_cold_s1_hv30_at"] is None for t in ("sst2", "trec")) else "it does")
for _task, _label in (("sst2", "SST-2"), ("trec", "TREC-6")):
    claim(f"warm.noise.{_task}", WARM, {"sst2": "SST-2: by mean 0.021 (29 pairs, max 0.058);",
                                        "trec": "TREC-6: by mean 0.040 (29 pairs, max 0.082)."}[_task], WS,
          functools.partial(lambda t, l: "{}: by mean {mean_abs:.3f} ({pairs} pairs, max {max_abs:.3f}){}".format(
              l, ";" if t == "sst2" else ".", **_ws_noise(t, "different_seed")), _task, _label))
claim("warm.noise.same_seed", WARM, "Under one seed the scores are identical (7 and 8 pairs, max 0.000).", WS,
      lambda: "Under one seed the scores are {} ({} and {} pairs, max {:.3f}).".format(
          "identical" if all(_ws_noise(t, "same_seed")["max_abs"] == 0 for t in ("sst2", "trec")) else "not identical",
          _ws_noise("sst2", "same_seed")["pairs"], _ws_noise("trec", "same_seed")["pairs"],
          max(_ws_noise(t, "same_seed")["max_abs"] for t in ("sst2", "trec"))))
claim("warm.headonly.trec", WARM, "seed 3's head-only scored 0.462, against 0.396 for seed 1, so that point alone is "
      "worth HV 0.387 against 0.277. That difference, 0.110, is more than warm seed 3's whole lead at HV@30 (0.066).",
      WS, _ws_headonly_trec)
claim("warm.headonly.sst2", WARM, "cold seed 2's head-only scored 0.622 against 0.662, which costs it 0.154. That is "
      "more than its whole gap to seed 1 (0.086).", WS, _ws_headonly_sst2)
claim("warm.adapters_only", WARM, "cold seed 2 reaches cold seed 1 on SST-2 after 19 trials, and warm seed 3 on "
      "TREC-6 only at trial 30.", WS, lambda: "cold seed 2 reaches cold seed 1 on SST-2 after {} trials, and warm seed "
      "3 on TREC-6 only at trial {}.".format(_ws_arm("sst2", "cold_s2")["adapters_only"]["reaches_cold_s1_hv30_at"],
                                             _ws_arm("trec", "warm_s3")["adapters_only"]["reaches_cold_s1_hv30_at"]))
claim("warm.paired.hv10", WARM, "HV@10: +0.028 on SST-2, +0.011 on TREC-6;", WS,
      lambda: f"HV@10: {_ws_signed(_ws_delta('sst2', 10))} on SST-2, {_ws_signed(_ws_delta('trec', 10))} on TREC-6;")
claim("warm.paired.hv30", WARM, "HV@30: +0.007 and +0.008.", WS,
      lambda: f"HV@30: {_ws_signed(_ws_delta('sst2', 30))} and {_ws_signed(_ws_delta('trec', 30))}.")
claim("warm.paired.reach", WARM, "It reaches cold seed 1's HV@30 after 27 trials on SST-2 and 24 on TREC-6. Cold seed "
      "1 itself got there at 25 and 27, so the saving is between −2 and +3 trials.", WS, _ws_paired_reach)
claim("warm.paired.within", WARM, "within 0.001 of the target from trial 21", WS, _ws_within)
claim("warm.overlap", WARM, "So 2 of the 7 TREC configurations given to SST-2, and 3 of the 9 SST-2 ones given to "
      "TREC,", WS, lambda: "So {} of the {} TREC configurations given to SST-2, and {} of the {} SST-2 ones given to "
      "TREC,".format(*(_ws_arm(t, "warm_s1")["warm_start"][k] for t in ("sst2", "trec")
                       for k in ("also_run_by_cold_s1", "ran"))))
claim("warm.early", WARM, "HV after its 7 / 9 warm trials 0.638 / 0.424, against cold seed 1's 0.609 / 0.413 at the "
      "same trial.", WS, _ws_early)
claim("warm.spread", WARM, "(HV@30 0.653 vs 0.567 on SST-2, 0.476 vs 0.401 on TREC-6)", WS,
      lambda: "(HV@30 {:.3f} vs {:.3f} on SST-2, {:.3f} vs {:.3f} on TREC-6)".format(
          *(_ws_arm(t, a)["hv@30"] for t in ("sst2", "trec") for a in ("cold_s1", "cold_s2"))))
claim("warm.runtime", WARM, "the 8 studies took 38 min of wall time in all: 3.5–6.5 min each, 0.4–22.1 s per trial "
      "(median 8.5 s)", WS, _ws_runtime)


# ------------------------------------------------------------------------------------------------ the check
def sections(text: str) -> dict[str, str]:
    """'### heading' -> its body (up to the next ## or ### heading), normalised."""
    out, heading, body = {}, None, []
    for line in text.splitlines():
        if line.startswith("## ") or line.startswith("### "):
            if heading is not None:
                out[heading] = normalise("\n".join(body))
            heading, body = (line[4:].strip() if line.startswith("### ") else None), []
        elif heading is not None:
            body.append(line)
    if heading is not None:
        out[heading] = normalise("\n".join(body))
    return out


NUMBER = re.compile(r"[-−+]?\d[\d,]*\.?\d*")


def numbers(text: str) -> list[float]:
    return [float(m.replace(",", "").replace("−", "-")) for m in NUMBER.findall(text)]


def check_claim(c: Claim, secs: dict[str, str]) -> str | None:
    """None when the claim holds, else what is wrong."""
    where = [h for h in secs if h.startswith(c.section)]
    if len(where) != 1:
        return f"section '{c.section}' matches {len(where)} headings in RESULTS.md"
    quoted = normalise(c.quoted)
    if quoted not in secs[where[0]]:
        return f"the quoted text is not in section '{where[0]}': {quoted!r}"
    try:
        got = normalise(c.compute())
    except Exception as exc:  # a figure that cannot be recomputed fails, it does not stop the check
        return f"recomputing it from {c.file} failed: {type(exc).__name__}: {exc}"
    if c.tol is None:
        if got != quoted:
            return f"RESULTS.md quotes {quoted!r}; {c.file} gives {got!r}"
        return None
    a, b = numbers(quoted), numbers(got)
    if len(a) != len(b) or any(abs(x - y) > c.tol for x, y in zip(a, b)):
        return f"RESULTS.md quotes {quoted!r}; {c.file} gives {got!r} (tolerance {c.tol})"
    return None


def audit(secs: dict[str, str], claims: list[Claim]) -> list[str]:
    """Sections with no registered figure must mark their numbers as not reproducible."""
    out = []
    for heading, body in secs.items():
        if any(heading.startswith(c.section) for c in claims):
            continue
        if UNBACKED_MARK not in body.lower():
            out.append(f"section '{heading}' has no figure in the registry and does not say its numbers are "
                       f"'{UNBACKED_MARK} (no data file)'")
    return out


def main(argv: list[str] | None = None) -> int:
    global RECOMPUTE_REPLAYS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    ap.add_argument("--list", action="store_true", help="print the registry (id, section, file, quoted) and exit")
    ap.add_argument("--only", nargs="+", metavar="ID_PREFIX", help="check only these figures (no section audit)")
    ap.add_argument("--replay", action="store_true", help="re-run every multi-fidelity replay from its CSV / log "
                    "(minutes) instead of reading its saved result in benchmarks/data/multifidelity/")
    args = ap.parse_args(argv)
    RECOMPUTE_REPLAYS = args.replay
    if args.list:
        for c in CLAIMS:
            print(f"{c.id}\t{c.section}\t{c.file}\t{c.quoted}")
        return 0
    secs = sections(args.results.read_text())
    claims = [c for c in CLAIMS if not args.only or any(c.id.startswith(p) for p in args.only)]
    failures = []
    for c in claims:
        problem = check_claim(c, secs)
        if problem:
            failures.append(f"FAIL {c.id}: {problem}")
    if not args.only:
        failures += [f"FAIL audit: {p}" for p in audit(secs, CLAIMS)]
    for line in failures:
        print(line)
    print(f"{len(claims)} figures checked against benchmarks/data/, {len(secs)} sections audited: "
          f"{'all hold' if not failures else f'{len(failures)} failure(s)'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
