"""The report's figures: one ``draw_*`` function per plot, building a ``plotly.graph_objects.Figure`` from the
data objects of :mod:`.data` (no storage access here)."""
from __future__ import annotations

import html
import json
import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..objectives import format_value
from .data import (
    EffectInfo,
    HypervolumeInfo,
    LayerInfo,
    ParallelInfo,
    ParetoInfo,
    Point,
    _log_axis,
    _unit,
    memory_breakdown_text,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

COLORS = {"front": "#1f77b4", "dominated": "#9aa5b1", "reference": "#d62728"}
#: marker of the trials a warm start enqueued, in the 2-D and 3-D Pareto plots (a symbol both draw)
WARM_START_SYMBOL = "square"


def _axis(name: str, points: Sequence[Point] = ()) -> dict[str, Any]:
    label, _ = _unit(name)
    if _log_axis(name) and any(p.values[name] <= 0 for p in points):
        label += " (0 drawn at 1)"
    return {"title": {"text": label}, **({"type": "log"} if _log_axis(name) else {})}


def _scaled(p: Point, name: str) -> float:
    value = p.values[name] * _unit(name)[1]
    # a log axis cannot show 0 (a head-only configuration adds no parameters): draw it at 1, hover tells the truth
    return max(value, 1.0) if _log_axis(name) else value


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
    """(legend name, points, marker style) for Pareto, dominated and hand-made reference points, then one group
    per warm-start source: its own symbol, filled like the front where on it and faded like a dominated point
    where not."""
    warm = [p for p in points if p.warm_start and p.reference is None]
    front = [p for p in points if p.on_front and p.reference is None and not p.warm_start]
    dominated = [p for p in points if not p.on_front and p.reference is None and not p.warm_start]
    refs = [p for p in points if p.reference is not None]
    groups = [
        ("Pareto front", front, {"color": COLORS["front"], "opacity": 0.95, "symbol": "circle",
                                 "line": {"width": 1, "color": "#0b3c5d"}}),
        ("dominated", dominated, {"color": COLORS["dominated"], "opacity": 0.35, "symbol": "circle"}),
        ("hand-made references", refs, {"color": COLORS["reference"], "opacity": 0.9, "symbol": "diamond",
                                        "line": {"width": 1, "color": "#7f0000"}}),
    ]
    for source in sorted({p.warm_source for p in warm}):
        pts = [p for p in warm if p.warm_source == source]
        colors = [_rgba(COLORS["front"], 0.95) if p.on_front else _rgba(COLORS["dominated"], 0.35) for p in pts]
        groups.append((html.escape(f"warm start: {source}"), pts,
                       {"color": colors, "symbol": WARM_START_SYMBOL, "line": {"width": 1, "color": "#0b3c5d"}}))
    return groups


def _rgba(color: str, alpha: float) -> str:
    """``#rrggbb`` with an alpha: per-point opacity (Scatter3d takes no opacity per point)."""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def draw_pareto(info: ParetoInfo, names: Sequence[str]) -> "go.Figure":
    """2-D (or 3-D) scatter of the objectives; dominated points faded, marker size = fidelity, warm-started
    trials drawn as squares with a legend entry per source."""
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
