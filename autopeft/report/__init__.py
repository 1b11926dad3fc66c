"""The study report, in three layers: :mod:`.data` computes plain data objects from the storage (one
``get_*_info`` per plot, no plotting), :mod:`.figures` draws a plotly figure from each (one ``draw_*`` per plot),
and :mod:`.page` gathers them into a :class:`ReportData` and renders the self-contained HTML page (template of
``autopeft/resources/dashboards/``, plotly.js inlined). The live dashboard (``dashboard.py``) serves the same data.

It builds only on the layers below it (study, pareto, objectives, memory, resources, errors), never on the CLI.
Here: the names the rest of autopeft and the tests import.
"""
from __future__ import annotations

from .data import get_effect_info, get_hypervolume_info, get_layer_info, get_pareto_infos, get_points
from .page import ReportData, build_report, plotly_js, render_html, write_report

__all__ = [
    "ReportData",
    "build_report",
    "get_effect_info",
    "get_hypervolume_info",
    "get_layer_info",
    "get_pareto_infos",
    "get_points",
    "plotly_js",
    "render_html",
    "write_report",
]
