"""The report page: :func:`build_report` gathers the data and figures of a study into a :class:`ReportData`;
:func:`render_html` puts it into the page template of ``autopeft/resources/dashboards/`` with plotly.js inlined (no
external requests). The live dashboard (``dashboard.py``) serves the same data as JSON and the same page polls it.
"""
from __future__ import annotations

import html
import json
import logging
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..objectives import format_value
from .data import (
    Point,
    _directions,
    _num_layers,
    get_effect_info,
    get_hypervolume_info,
    get_layer_info,
    get_parallel_info,
    get_pareto_infos,
    get_points,
    memory_breakdown_text,
)
from .figures import draw_effects, draw_hypervolume, draw_layers, draw_parallel, draw_pareto

if TYPE_CHECKING:
    from ..study import Study

logger = logging.getLogger(__name__)


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
            from ..errors import StorageError

            raise StorageError(f"no study named '{other}' to compare with in this storage",
                               "give a study name stored beside this one (see optuna-dashboard or the YAML names)") \
                from None
        if list(other_study.user_attrs.get("objectives") or names) != names:
            from ..errors import StorageError

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
    from ..records import summarise_config

    if p.reference is not None:
        return p.reference
    return summarise_config(p.config, p.hyperparameters)


def plotly_js() -> str:
    """plotly.js from plotly's own offline bundle (inlined: the page makes no external requests)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _template(name: str) -> str:
    """A file of the report page (template, CSS, JS), shipped as package data in autopeft/resources/dashboards."""
    from ..resources import read_text

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
    from ..errors import ConfigError

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
