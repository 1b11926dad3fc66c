"""The study report: compute plain data objects from the storage, then draw plotly figures from them.

Optuna's visualization style: each ``get_*_info`` function computes what a plot shows (no plotting
there, easy to test), each ``draw_*`` function turns that into a ``plotly.graph_objects.Figure``.
:func:`build_report` gathers both into a :class:`ReportData`; :func:`render_html` puts it into the page
template of ``autopeft/resources/dashboards/`` with plotly.js inlined (no external requests). The live dashboard
(``dashboard.py``) serves the same data as JSON and the same page polls it.
"""
from __future__ import annotations

import html
import json
import logging
import math
import shlex
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .objectives import format_value, get_objective
from .pareto import (
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
    import plotly.graph_objects as go

    from .study import Study

logger = logging.getLogger(__name__)

#: user attrs of a trial that name the group it belongs to when a study compares optimizers or seeds
GROUP_ATTRS = ("optimizer", "seed")
COLORS = {"front": "#1f77b4", "dominated": "#9aa5b1", "reference": "#d62728"}


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


@dataclass
class ReportData:
    """Everything the page shows; ``to_json`` is what the template and the live dashboard consume."""

    title: str
    summary: list[tuple[str, str]]
    figures: list[tuple[str, str, str, Any]]  # (id, title, description, plotly figure)
    table_columns: list[str]
    table_rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)
    version: str = ""

    def to_json(self) -> str:
        import plotly.io as pio

        figures = [{"id": fid, "title": t, "description": d, "figure": json.loads(pio.to_json(fig, validate=False))}
                   for fid, t, d, fig in self.figures]
        return json.dumps({"title": self.title, "summary": self.summary, "figures": figures,
                           "table": {"columns": self.table_columns, "rows": self.table_rows},
                           "notes": self.notes, "version": self.version}, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


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
    from .objectives import OBJECTIVES

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


# ============================================================================ draw it
def _unit(name: str) -> tuple[str, float]:
    """Axis title and the factor from raw values to its unit (the objective registry's)."""
    obj = get_objective(name)
    return (obj.unit or name, obj.display) if obj else (name, 1.0)


def _log_axis(name: str) -> bool:
    obj = get_objective(name)
    return bool(obj and obj.log_axis)


def _axis(name: str, points: Sequence[Point] = ()) -> dict[str, Any]:
    label, _ = _unit(name)
    if _log_axis(name) and any(p.values[name] <= 0 for p in points):
        label += " (0 drawn at 1)"
    return {"title": {"text": label}, **({"type": "log"} if _log_axis(name) else {})}


def _scaled(p: Point, name: str) -> float:
    value = p.values[name] * _unit(name)[1]
    # a log axis cannot show 0 (a head-only configuration adds no parameters): draw it at 1, hover tells the truth
    return max(value, 1.0) if _log_axis(name) else value


def memory_breakdown_text(breakdown: dict[str, int]) -> str:
    """``weights 86.9 + gradients 0.0 + ... MiB``: the parts of a measured memory peak, in MiB."""
    from .memory import MEMORY_PARTS

    return " + ".join(f"{k} {breakdown.get(k, 0) / 2**20:.1f}" for k in MEMORY_PARTS) + " MiB" if breakdown else ""


def _hover(p: Point, names: Sequence[str]) -> str:
    head = f"<b>{html.escape(p.reference)}</b>" if p.reference else f"<b>trial {p.number}</b>"
    lines = [head + (" (Pareto)" if p.on_front else " (dominated)")]
    lines += [f"{n}: {format_value(n, p.values[n])}" for n in names]
    if p.params_pct is not None:
        lines.append(f"params: {p.params_pct:.3f}% of the model")
    if p.trainable is not None and "trainable" not in names:
        lines.append(f"trainable (adapters + head): {p.trainable:,}")
    if p.memory_breakdown:
        lines.append(f"memory at the peak: {memory_breakdown_text(p.memory_breakdown)}")
    lines.append(f"fidelity: {html.escape(p.fidelity or 'unknown')}")
    if p.group:
        lines.append(html.escape(p.group))
    if p.warm_start:
        lines.append(html.escape(f"warm start: {p.warm_start}"))
    config = json.dumps(p.config, sort_keys=True) if p.config else "(no adapters: head only)"
    lines += [html.escape(chunk) for chunk in _wrap(f"config: {config}", 90)]
    if p.hyperparameters:
        lines.append(html.escape("hyperparameters: " + json.dumps(p.hyperparameters, sort_keys=True, default=str)))
    return "<br>".join(lines)


def _wrap(text: str, width: int) -> list[str]:
    return [text[i:i + width] for i in range(0, len(text), width)] or [""]


def _sizes(points: Sequence[Point]) -> list[float]:
    """Marker sizes from the fidelity (training examples seen): 7 px for the least, 16 for the most."""
    seen = [p.examples_seen for p in points]
    known = [s for s in seen if s]
    if not known or min(known) == max(known):
        return [10.0] * len(points)
    lo, hi = math.sqrt(min(known)), math.sqrt(max(known))
    return [7.0 + 9.0 * (math.sqrt(s) - lo) / (hi - lo) if s else 7.0 for s in seen]


def _groups(points: Sequence[Point]) -> list[tuple[str, list[Point], dict[str, Any]]]:
    """(legend name, points, marker style) for Pareto, dominated and hand-made reference points."""
    front = [p for p in points if p.on_front and p.reference is None]
    dominated = [p for p in points if not p.on_front and p.reference is None]
    refs = [p for p in points if p.reference is not None]
    return [
        ("Pareto front", front, {"color": COLORS["front"], "opacity": 0.95, "symbol": "circle",
                                 "line": {"width": 1, "color": "#0b3c5d"}}),
        ("dominated", dominated, {"color": COLORS["dominated"], "opacity": 0.35, "symbol": "circle"}),
        ("hand-made references", refs, {"color": COLORS["reference"], "opacity": 0.9, "symbol": "diamond",
                                        "line": {"width": 1, "color": "#7f0000"}}),
    ]


def draw_pareto(info: ParetoInfo, names: Sequence[str]) -> "go.Figure":
    """2-D (or 3-D) scatter of the objectives; dominated points faded, marker size = fidelity."""
    import plotly.graph_objects as go

    fig = go.Figure()
    three = len(info.axes) == 3
    for label, pts, style in _groups(info.points):
        if not pts and label != "Pareto front":
            continue
        marker = dict(style, size=_sizes(pts))
        coords = {axis: [_scaled(p, n) for p in pts] for axis, n in zip("xyz", info.axes)}
        common = dict(mode="markers", name=label, marker=marker, text=[_hover(p, names) for p in pts],
                      hovertemplate="%{text}<extra></extra>")
        if three:
            marker["size"] = [s * 0.6 for s in marker["size"]]  # 3-D markers render larger
            fig.add_trace(go.Scatter3d(**coords, **common))
        else:
            fig.add_trace(go.Scatter(**coords, **common))
    if three:
        scene = {f"{a}axis": _axis(n, info.points) for a, n in zip("xyz", info.axes)}
        fig.update_layout(scene=scene, height=560)
    else:
        fig.update_layout(xaxis=_axis(info.axes[0], info.points), yaxis=_axis(info.axes[1], info.points), height=420)
    fig.update_layout(margin={"l": 60, "r": 20, "t": 30, "b": 50}, legend={"orientation": "h", "y": -0.18},
                      hoverlabel={"align": "left"})
    return fig


def draw_hypervolume(info: HypervolumeInfo) -> "go.Figure":
    """Hypervolume (fraction of the [ideal, reference] box) after each trial; one line per series."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for group, (numbers, hv) in info.series.items():
        fig.add_trace(go.Scatter(x=numbers, y=hv, mode="lines+markers", name=group or "search", line={"shape": "hv"},
                                 hovertemplate="trial %{x}<br>hypervolume %{y:.4f}<extra>" + (group or "search")
                                 + "</extra>"))
    if info.references is not None and info.series:
        xs = [n for numbers, _ in info.series.values() for n in numbers]
        fig.add_trace(go.Scatter(x=[min(xs), max(xs)], y=[info.references] * 2, mode="lines",
                                 name="hand-made references", line={"dash": "dash", "color": COLORS["reference"]}))
    fig.update_layout(xaxis={"title": {"text": "trial"}}, yaxis={"title": {"text": "hypervolume (normalised)"},
                                                                  "rangemode": "tozero"},
                      height=380, margin={"l": 60, "r": 20, "t": 30, "b": 50}, legend={"orientation": "h", "y": -0.2})
    return fig


def draw_layers(info: LayerInfo) -> "go.Figure":
    """Heat map per module kind: rows = Pareto trials (best score on top), columns = layers, cell = size."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    kinds = info.kinds or ["(no adapters)"]
    fig = make_subplots(rows=1, cols=len(kinds), shared_yaxes=True, subplot_titles=kinds, horizontal_spacing=0.03)
    rows = info.trials
    for c, kind in enumerate(kinds, start=1):
        z = info.sizes.get(kind, np.zeros((len(rows), info.num_layers)))
        fig.add_trace(go.Heatmap(
            z=np.where(z > 0, z, np.nan).tolist(), x=list(range(info.num_layers)), y=rows, colorscale="Blues",
            showscale=False, xgap=2, ygap=2, texttemplate="%{z}", zmin=0,
            hovertemplate=f"{kind}<br>%{{y}}, layer %{{x}}: size %{{z}}<extra></extra>"), row=1, col=c)
        fig.update_xaxes(title_text="layer", dtick=1, row=1, col=c)
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(height=max(240, 60 + 26 * len(rows)), margin={"l": 80, "r": 20, "t": 40, "b": 50},
                      plot_bgcolor="#f4f6f8")
    return fig


def draw_parallel(info: ParallelInfo) -> "go.Figure":
    """Parallel coordinates over the search parameters and objectives, coloured by score."""
    import plotly.graph_objects as go

    dims = []
    for label, values, ticks in info.dimensions:
        dim: dict[str, Any] = {"label": label, "values": values}
        if ticks is not None:
            dim.update(tickvals=list(range(len(ticks))), ticktext=ticks)
        dims.append(dim)
    line = {"color": info.color, "colorscale": "Viridis", "showscale": True,
            "colorbar": {"title": {"text": info.color_label}}}
    fig = go.Figure(go.Parcoords(dimensions=dims, line=line, labelangle=-30, labelside="bottom"))
    fig.update_layout(height=460, margin={"l": 60, "r": 60, "t": 40, "b": 110})
    return fig


def draw_effects(info: EffectInfo) -> "go.Figure":
    """Heat map of Spearman's rho (parameter x objective): red raises the objective, blue lowers it."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(
        z=np.where(np.isnan(info.rho), None, np.round(info.rho, 3)).tolist(), x=info.parameters, y=info.objectives,
        zmin=-1, zmax=1, colorscale="RdBu", reversescale=True, xgap=1, ygap=1,
        colorbar={"title": {"text": "rho"}},
        hovertemplate="%{x} vs %{y}<br>Spearman rho %{z}<extra></extra>"))
    fig.update_layout(height=260 + 10 * max((len(p) for p in info.parameters), default=0), xaxis={"tickangle": -45},
                      margin={"l": 80, "r": 20, "t": 20, "b": 40})
    return fig


# ============================================================================ the report
def build_report(study: "Study", compare: Sequence[str] = ()) -> ReportData:
    """Read the study (and the studies named in ``compare``, same storage) and compute every figure."""
    import optuna


    optuna_study = study.load()
    names = list(optuna_study.user_attrs.get("objectives") or [o.name for o in study.objectives])
    directions = _directions(study, names)
    points = get_points(study, optuna_study)
    trials = optuna_study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for t in trials:
        state = "infeasible" if t.user_attrs.get("infeasible") or t.user_attrs.get("over_budget") \
            else t.state.name.lower()
        counts[state] = counts.get(state, 0) + 1

    series: dict[str, list[Point]] = {}
    for p in points:
        series.setdefault(p.group or study.cfg.name, []).append(p)
    for other in compare:
        try:
            other_study = optuna.load_study(study_name=other, storage=study.storage_url)
        except KeyError:
            from .errors import StorageError

            raise StorageError(f"no study named '{other}' to compare with in this storage",
                               "give a study name stored beside this one (see optuna-dashboard or the YAML names)") \
                from None
        if list(other_study.user_attrs.get("objectives") or names) != names:
            from .errors import StorageError

            raise StorageError(f"study '{other}' optimises other objectives than '{study.cfg.name}'",
                               "compare studies with the same objectives")
        series[other] = get_points(study, other_study)
    ref_attr = optuna_study.user_attrs.get("reference_point")
    hv = get_hypervolume_info(series, names, directions, ref_attr)

    figures: list[tuple[str, str, str, Any]] = []
    fidelity_note = "Marker size shows the fidelity (training examples seen); hover for trial, objectives, config."
    for info in get_pareto_infos(points, names):
        if len(info.axes) == 3:
            figures.append(("pareto-3d", "Pareto front in 3-D", "Drag to rotate. " + fidelity_note,
                            draw_pareto(info, names)))
        else:
            title = f"{info.axes[1]} vs {info.axes[0]}"
            figures.append((f"pareto-{info.axes[0]}-{info.axes[1]}", title,
                            "Dominated points are faded; the front is over all objectives. " + fidelity_note,
                            draw_pareto(info, names)))
    ref_text = ", ".join(f"{n} {format_value(n, v)}" for n, v in hv.frame.reference_values().items())
    figures.append(("hypervolume", "Hypervolume vs trial",
                    f"Fraction of the box between the best values seen and {hv.source} ({ref_text}), with log10 "
                    "parameters and memory; one line per optimizer, seed or compared study.", draw_hypervolume(hv)))
    num_layers = _num_layers(optuna_study)
    figures.append(("layers", "Layer placement of the Pareto points",
                    "Which layers carry which module kind (cell = size, empty = absent); best score on top.",
                    draw_layers(get_layer_info(points, num_layers))))
    parallel = get_parallel_info(points, names)
    if parallel.color:
        figures.append(("parallel", "Parallel coordinates",
                        "Search parameters (constant ones hidden) and objectives of every completed searched trial; "
                        "drag along an axis to filter.", draw_parallel(parallel)))
    effects = get_effect_info(points, names)
    if effects.parameters:
        figures.append(("effects", "Parameter effects",
                        f"Spearman's rank correlation of each parameter with each objective over {effects.n} "
                        "trials: red raises the objective, blue lowers it; blank = undefined (constant).",
                        draw_effects(effects)))

    study_arg = shlex.quote(study.cfg.source) if study.cfg.source != "<inline>" else "STUDY"
    front = sorted((p for p in points if p.on_front), key=lambda p: -p.values.get("score", 0.0))
    columns = ["trial", *names, "% of model", *([] if "trainable" in names else ["trainable"]),
               "memory at the peak", "fidelity", "configuration", "export"]
    rows = []
    for p in front:
        export = "(hand-made reference)" if p.reference else \
            f"autopeft export {study_arg} --trial {p.number} -o export/trial-{p.number}"
        rows.append([p.reference or p.number, *[p.values[n] for n in names],
                     None if p.params_pct is None else round(p.params_pct, 4),
                     *([] if "trainable" in names else [p.trainable]), memory_breakdown_text(p.memory_breakdown),
                     p.fidelity or "",
                     _summary(p), export])
    last = max((t.datetime_complete.timestamp() for t in trials if t.datetime_complete), default=0.0)
    summary = [("study", study.cfg.name), ("model", str(optuna_study.user_attrs.get("model", study.cfg.model))),
               ("objectives", ", ".join(f"{n} ({d[:3]})" for n, d in zip(names, directions))),
               ("trials", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none yet"),
               ("Pareto points", str(len(front))),
               ("hypervolume", ", ".join(f"{g or 'search'} {s[1][-1]:.4f}" for g, s in hv.series.items()) or "-")]
    notes = []
    if hv.frame.derived:
        notes.append("The study stores no reference point: hypervolume uses one derived from the data shown, "
                     "so numbers are comparable within this report only.")
    version = f"{len(trials)}:{last:.3f}:{sum(counts.values())}"
    return ReportData(f"autopeft report — {study.cfg.name}", summary, figures, columns, rows, notes, version)


def _summary(p: Point) -> str:
    from .records import summarise_config

    if p.reference is not None:
        return p.reference
    return summarise_config(p.config, p.hyperparameters)


def _num_layers(optuna_study: "optuna.Study") -> int | None:
    """Number of layers from the flat parameters (``layer.<i>`` or ``<kind>.<size>.<i>``), if any say it."""
    found = [int(k.rsplit(".", 1)[1]) for t in optuna_study.get_trials(deepcopy=False)
             for k in t.params if k.rsplit(".", 1)[-1].isdigit()]
    return max(found) + 1 if found else None


def plotly_js() -> str:
    """plotly.js from plotly's own offline bundle (inlined: the page makes no external requests)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _template(name: str) -> str:
    """A file of the report page (template, CSS, JS), shipped as package data in autopeft/resources/dashboards."""
    from .resources import read_text

    return read_text("dashboards", name)


def render_html(data: ReportData, live: dict[str, Any] | None = None, inline_plotly: bool = True) -> str:
    """The report page: template + CSS + our JS + plotly.js (inlined unless served beside it) + the data."""
    page = _template("report.template.html")
    script = f"<script>{plotly_js()}</script>" if inline_plotly else '<script src="plotly.min.js"></script>'
    replacements = {
        "{{title}}": html.escape(data.title),
        "{{css}}": _template("report.css"),
        "{{plotly}}": script,
        "{{report_js}}": _template("report.js"),
        # "</" inside JSON would end the script element early
        "{{data}}": data.to_json().replace("</", "<\\/"),
        "{{live}}": json.dumps(live or None),
        "{{generated}}": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for key, value in replacements.items():
        page = page.replace(key, value)
    return page


def write_report(study: "Study", output: str | Path, compare: Sequence[str] = ()) -> Path:
    """Build the report of ``study`` and write it as one self-contained HTML file."""
    from .errors import ConfigError

    output = Path(output)
    if output.exists() and output.is_dir():
        raise ConfigError(f"'{output}' is a directory", "give a file name such as report.html")
    data = build_report(study, compare)
    text = render_html(data)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write '{output}' ({exc.strerror})", "choose a writable path") from None
    logger.debug("report of '%s' written to %s (%d figures)", study.cfg.name, output, len(data.figures))
    return output
