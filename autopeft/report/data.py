"""The report's data: plain objects computed from a study's storage, one ``get_*_info`` function per plot.

Optuna's visualization style: each ``get_*_info`` function computes what a plot shows (no plotting here, easy to
test); :mod:`.figures` turns that into plotly figures and :mod:`.page` assembles the page.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..objectives import get_objective
from ..pareto import (
    REFERENCE_MARGIN,
    HypervolumeFrame,
    hypervolume,
    hypervolume_frame,
    hypervolume_history,
    pareto_mask,
    reference_from_attrs,
)

if TYPE_CHECKING:
    import optuna

    from ..study import Study

#: user attrs of a trial that name the group it belongs to when a study compares optimizers or seeds
GROUP_ATTRS = ("optimizer", "seed")


# ============================================================================ data objects
@dataclass
class Point:
    """One completed trial as the report shows it."""

    number: int
    values: dict[str, float]
    config: dict[str, Any]
    hyperparameters: dict[str, Any]
    params: dict[str, Any]  # the flat search parameters (empty for hand-made reference trials)
    fidelity: str | None = None
    examples_seen: float | None = None  # training examples x epochs: the fidelity as a number
    on_front: bool = False
    reference: str | None = None  # name of a hand-made reference configuration, None for searched trials
    group: str = ""
    params_pct: float | None = None
    trainable: int | None = None  # every trained parameter (adapters + head), whether or not an objective
    memory_breakdown: dict[str, int] = field(default_factory=dict)  # bytes alive at the measured memory peak
    warm_start: str | None = None  # "<other study> trial N" when a warm start enqueued this configuration

    @property
    def warm_source(self) -> str | None:
        """The study a warm start took this configuration from: ``warm_start`` without its " trial N" (the
        label warmstart.enqueue_front stores)."""
        if not self.warm_start:
            return None
        match = re.fullmatch(r"(.+) trial \d+", self.warm_start)
        return match.group(1) if match else self.warm_start


@dataclass
class ParetoInfo:
    """Points of a 2-D or 3-D Pareto plot: ``axes`` names the objectives on x, y (and z)."""

    axes: tuple[str, ...]
    points: list[Point]


@dataclass
class HypervolumeInfo:
    """Hypervolume after each trial, one series per group, all in one fixed frame."""

    frame: HypervolumeFrame
    series: dict[str, tuple[list[int], list[float]]]  # group -> (trial numbers, hypervolume)
    references: float | None  # hypervolume of the hand-made reference configurations alone
    source: str  # where the reference point came from, said in the plot


@dataclass
class LayerInfo:
    """Which layers carry which module kind for each Pareto point: ``sizes[kind]`` is (points, layers)."""

    trials: list[str]  # row labels: "trial N", or the name of a hand-made reference
    num_layers: int
    kinds: list[str]
    sizes: dict[str, np.ndarray]


@dataclass
class ParallelInfo:
    """Parallel coordinates: ``dimensions`` are (label, values, tick labels or None for numbers)."""

    dimensions: list[tuple[str, list[float], list[str] | None]]
    color: list[float]
    color_label: str


@dataclass
class EffectInfo:
    """Spearman rank correlation of each search parameter with each objective (NaN where undefined)."""

    parameters: list[str]
    objectives: list[str]
    rho: np.ndarray  # (objectives, parameters)
    n: int


# ============================================================================ compute the info
def get_points(study: "Study", optuna_study: "optuna.Study") -> list[Point]:
    """Completed trials of the study and of its hand-made references, with the Pareto flag set."""
    from optuna.trial import TrialState

    names = optuna_study.user_attrs.get("objectives") or [o.name for o in study.objectives]
    done = optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    # a study that compares optimizers or seeds tags its trials; only tags that vary make groups
    varying = [k for k in GROUP_ATTRS if len({str(t.user_attrs.get(k)) for t in done if k in t.user_attrs}) > 1]
    points = []
    for t in done:
        p = _point(t, names)
        p.group = ", ".join(f"{k}={t.user_attrs.get(k)}" for k in varying)
        points.append(p)
    points += _reference_points(study, optuna_study, names)
    directions = _directions(study, names)
    if points:
        mask = pareto_mask(np.array([[p.values[n] for n in names] for p in points]), directions)
        for p, keep in zip(points, mask):
            p.on_front = bool(keep)
    return points


def _point(trial: "optuna.trial.FrozenTrial", names: Sequence[str]) -> Point:
    attrs = trial.user_attrs
    measured = attrs.get("measured") or {}
    seen = None
    if measured.get("examples") is not None:
        seen = float(measured["examples"]) * float(measured.get("epochs") or 1.0)
    elif isinstance(attrs.get("proxy"), dict):
        proxy = attrs["proxy"]
        seen = float(proxy.get("train_examples", 0)) * float(proxy.get("epochs", 1.0)) or None
    reference = attrs.get("reference")
    if reference is not None and not isinstance(reference, str):
        reference = (attrs.get("reference_name") or attrs.get("name") or f"reference #{trial.number}") \
            if reference else None
    return Point(trial.number, dict(zip(names, trial.values)), attrs.get("config") or {},
                 attrs.get("hyperparameters") or {}, dict(trial.params), attrs.get("fidelity"), seen,
                 reference=reference, params_pct=measured.get("params_pct"), trainable=measured.get("trainable"),
                 memory_breakdown=measured.get("memory_breakdown") or {}, warm_start=attrs.get("warm_start"))


def _reference_points(study: "Study", optuna_study: "optuna.Study", names: Sequence[str]) -> list[Point]:
    """Trials of the sibling study ``<name>.references`` (hand-made configurations), when it exists."""
    import optuna
    from optuna.trial import TrialState

    name = f"{optuna_study.study_name}.references"
    storage = study.storage_url
    if name not in {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}:
        return []
    sibling = optuna.load_study(study_name=name, storage=storage)
    points = []
    for t in sibling.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.values is None or len(t.values) != len(names):
            continue
        p = _point(t, names)
        p.reference = p.reference or t.user_attrs.get("name") or f"reference #{t.number}"
        p.number = -1 - t.number  # never mistaken for a trial of the study
        points.append(p)
    return points


def _directions(study: "Study", names: Sequence[str]) -> list[str]:
    known = {o.name: o.direction for o in study.objectives}
    from ..objectives import OBJECTIVES

    return [known.get(n) or (OBJECTIVES[n].direction if n in OBJECTIVES else "minimize") for n in names]


def get_pareto_infos(points: Sequence[Point], names: Sequence[str]) -> list[ParetoInfo]:
    """One 2-D plot per pair of objectives, and a 3-D plot when there are three."""
    infos = [ParetoInfo(pair, list(points)) for pair in combinations(names, 2)]
    if len(names) == 3:
        infos.append(ParetoInfo(tuple(names), list(points)))
    return infos


def get_hypervolume_info(series_points: dict[str, Sequence[Point]], names: Sequence[str],
                         directions: Sequence[str], reference_point: Any = None) -> HypervolumeInfo:
    """Hypervolume after each trial of each series (trial order), in the frame of the stored reference point
    (raw units, see :func:`pareto.reference_from_attrs`) or, when there is none, one derived from all points."""
    searched = {g: sorted((p for p in pts if p.reference is None), key=lambda p: p.number)
                for g, pts in series_points.items()}
    everything = [p for pts in series_points.values() for p in pts]
    all_values = np.array([[p.values[n] for n in names] for p in everything], dtype=float).reshape(-1, len(names))
    ref = reference_from_attrs(reference_point, names)
    frame = hypervolume_frame(all_values, names, directions, ref)
    if ref is not None:
        source = "the study's fixed reference point"
    else:
        source = f"a reference point derived from the data (worst value + {REFERENCE_MARGIN:.0%} of the range)"
    series = {}
    for group, pts in searched.items():
        if pts:
            values = np.array([[p.values[n] for n in names] for p in pts], dtype=float)
            series[group] = ([p.number for p in pts], hypervolume_history(values, frame).tolist())
    refs = [p for p in everything if p.reference is not None]
    ref_hv = hypervolume(np.array([[p.values[n] for n in names] for p in refs]), frame) if refs else None
    return HypervolumeInfo(frame, series, ref_hv, source)


def get_layer_info(points: Sequence[Point], num_layers: int | None = None) -> LayerInfo:
    """Module sizes per layer (0 = absent) for the Pareto points, best score first."""
    front = sorted((p for p in points if p.on_front), key=lambda p: -p.values.get("score", 0.0))
    layers_of = [_layer_sizes(p.config) for p in front]
    kinds = sorted({k for sizes in layers_of for k in sizes})
    seen = [i for sizes in layers_of for per in sizes.values() for i in per]
    n = max([num_layers or 0, *(i + 1 for i in seen)]) or 1
    sizes = {k: np.array([[per.get(k, {}).get(i, 0) for i in range(n)] for per in layers_of], dtype=float)
             .reshape(len(front), n) for k in kinds}
    return LayerInfo([p.reference or f"trial {p.number}" for p in front], n, kinds, sizes)


def _layer_sizes(config: dict[str, Any]) -> dict[str, dict[int, int]]:
    out: dict[str, dict[int, int]] = {}
    for kind, body in (config or {}).items():
        if not isinstance(body, dict):  # e.g. {"full_finetune": true} of the full fine-tuning reference
            continue
        layers = body.get("layers")
        if isinstance(layers, dict):
            out[kind] = {int(k): int(v) for k, v in layers.items()}
        elif isinstance(layers, list):
            out[kind] = {int(i): int(body.get("size", 1)) for i in layers}
    return out


def _numeric(values: Sequence[Any]) -> tuple[list[float], list[str] | None]:
    """Numbers as they are; anything else as indices into its sorted distinct values (with labels)."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], None
    labels = sorted({str(v) for v in values})
    return [float(labels.index(str(v))) for v in values], labels


def get_parallel_info(points: Sequence[Point], names: Sequence[str]) -> ParallelInfo:
    """Search parameters of the searched trials (those with every parameter), then the objectives."""
    pts = [p for p in points if p.reference is None and p.params]
    keys = sorted({k for p in pts for k in p.params}, key=_param_order)
    pts = [p for p in pts if all(k in p.params for k in keys)]
    dims = []
    for k in keys:
        values, labels = _numeric([p.params[k] for p in pts])
        if len(set(values)) > 1:  # a constant axis says nothing
            dims.append((k, values, labels))
    for n in names:
        label, scale = _unit(n)
        values = [p.values[n] * scale for p in pts]
        if _log_axis(n):
            values, label = [math.log10(max(v, 1.0)) for v in values], f"log10 {label}"
        dims.append((label, values, None))
    color_name = "score" if "score" in names else names[0]
    return ParallelInfo(dims, [p.values[color_name] for p in pts], color_name)


def _param_order(name: str) -> tuple:
    """Adapter sizes first, then options, layer bits in layer order, hyperparameters last."""
    parts = name.split(".")
    rank = 3 if name.startswith("hp.") else 2 if parts[0] in ("layer", "layers") else 1 if len(parts) == 2 else 0
    return (rank, parts[0], int(parts[-1]) if parts[-1].isdigit() else -1, name)


def get_effect_info(points: Sequence[Point], names: Sequence[str]) -> EffectInfo:
    """How each search parameter moves each objective: Spearman's rho over the searched trials."""
    from scipy.stats import spearmanr

    pts = [p for p in points if p.reference is None and p.params]
    keys = sorted({k for p in pts for k in p.params}, key=_param_order)
    rho = np.full((len(names), len(keys)), np.nan)
    for j, k in enumerate(keys):
        have = [p for p in pts if k in p.params]
        x, _ = _numeric([p.params[k] for p in have])
        if len(have) < 3 or len(set(x)) < 2:
            continue
        for i, n in enumerate(names):
            y = [p.values[n] for p in have]
            if len(set(y)) > 1:
                rho[i, j] = spearmanr(x, y).statistic
    return EffectInfo(keys, list(names), rho, len(pts))


# ============================================================================ units and text
def _unit(name: str) -> tuple[str, float]:
    """Axis title and the factor from raw values to its unit (the objective registry's)."""
    obj = get_objective(name)
    return (obj.unit or name, obj.display) if obj else (name, 1.0)


def _log_axis(name: str) -> bool:
    obj = get_objective(name)
    return bool(obj and obj.log_axis)


def memory_breakdown_text(breakdown: dict[str, int]) -> str:
    """``weights 86.9 + gradients 0.0 + ... MiB``: the parts of a measured memory peak, in MiB."""
    from ..memory import MEMORY_PARTS

    return " + ".join(f"{k} {breakdown.get(k, 0) / 2**20:.1f}" for k in MEMORY_PARTS) + " MiB" if breakdown else ""


def _num_layers(optuna_study: "optuna.Study") -> int | None:
    """Number of layers from the flat parameters (``layer.<i>`` or ``<kind>.<size>.<i>``), if any say it."""
    found = [int(k.rsplit(".", 1)[1]) for t in optuna_study.get_trials(deepcopy=False)
             for k in t.params if k.rsplit(".", 1)[-1].isdigit()]
    return max(found) + 1 if found else None
