"""Objectives a study can optimise, behind one registry, and objective sets loaded from YAML."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

from .errors import ConfigError
from .yamlio import load_yaml

Direction = Literal["maximize", "minimize"]


def _count(v: float) -> str:
    return f"{v:,.0f}"


def _mib(v: float) -> str:
    return f"{v / 2**20:.1f}MiB"


def _plain(v: float) -> str:
    return f"{v:.4f}"


@dataclass(frozen=True)
class Objective:
    """A named objective and everything the other modules need to know about it.

    ``known`` objectives are computed for any config without training; ``estimated_by`` names the known objective
    that estimates a measured one before training. ``scale`` maps raw values to the scale hypervolume and the knee
    are computed on (log10 for counts and bytes, which span decades); ``unit`` and ``display`` give the axis
    title and the factor to its unit; ``fmt`` formats one value for a table or log line; ``limit`` says whether a
    ``<name><=N`` pick rule or constraint reads N as a size ('500MB') or a number ('1e5').
    """

    name: str
    direction: Direction
    known: bool
    description: str
    unit: str = ""
    display: float = 1.0
    scale: Literal["linear", "log10"] = "linear"
    fmt: Callable[[float], str] = _plain
    estimated_by: str | None = None
    limit: Literal["number", "size"] = "number"
    log_axis: bool = False

    def scaled(self, values: np.ndarray) -> np.ndarray:
        """Raw values -> the comparison scale (0 is drawn at 1 on a log10 scale: head-only adds no parameters)."""
        values = np.asarray(values, dtype=float)
        return np.log10(np.maximum(values, 1.0)) if self.scale == "log10" else values

    def unscaled(self, values: np.ndarray) -> np.ndarray:
        """The comparison scale -> raw values."""
        values = np.asarray(values, dtype=float)
        return 10.0 ** values if self.scale == "log10" else values

    def format(self, value: float) -> str:
        return self.fmt(float(value))


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("score", "maximize", False, "task metric on the validation split after the proxy run",
                  unit="score"),
        Objective("params", "minimize", True, "parameters the adapters add (what PEFT counts on the export; task "
                  "head and pooler excluded, see trainable)", unit="adapter parameters", scale="log10", fmt=_count,
                  log_axis=True),
        Objective("trainable", "minimize", True, "every parameter a trial trains: the adapters plus the task head "
                  "(and BERT's pooler)", unit="trainable parameters", scale="log10", fmt=_count, log_axis=True),
        Objective("memory", "minimize", False, "measured peak memory of a steady-state fp32 training step on the "
                  "widest batch (bytes)", unit="peak memory (MiB)", display=2.0**-20, scale="log10", fmt=_mib,
                  estimated_by="memory_estimate", limit="size"),
        Objective("memory_estimate", "minimize", True, "analytic peak memory of that step (bytes)",
                  unit="estimated memory (MiB)", display=2.0**-20, scale="log10", fmt=_mib, limit="size"),
    )
}


#: measured objectives that have an analytic estimate among the known ones (``memory`` -> ``memory_estimate``)
ESTIMATED_BY: dict[str, str] = {o.name: o.estimated_by for o in OBJECTIVES.values() if o.estimated_by}


def get_objective(name: str) -> Objective | None:
    """The registered objective ``name`` (None for names the registry does not know, e.g. in old storages)."""
    return OBJECTIVES.get(name)


def format_value(name: str, value: float) -> str:
    """``value`` of objective ``name`` as tables and log lines show it."""
    obj = OBJECTIVES.get(name)
    return obj.format(value) if obj else f"{float(value):.4f}"


def directions_of(names: Sequence[str]) -> list[Direction]:
    """The direction of each named objective (unknown names are minimised)."""
    return [OBJECTIVES[n].direction if n in OBJECTIVES else "minimize" for n in names]


def load_objectives(spec: str | list | dict, resolve=lambda p: Path(p)) -> list[Objective]:
    """An objective set: a path to YAML, a list of names / {name, direction}, or {objectives: [...]}."""
    where = "objectives"
    if isinstance(spec, str):
        path = resolve(spec)
        spec, _ = load_yaml(path, "objectives file")
        where = str(path)
    if isinstance(spec, dict):
        spec = spec.get("objectives", spec)
    if not isinstance(spec, list):
        raise ConfigError(f"{where} must be a list of objectives", "e.g. objectives: [score, params, memory]")
    result: list[Objective] = []
    for item in spec:
        name, direction = (item, None) if isinstance(item, str) else (
            (item.get("name"), item.get("direction")) if isinstance(item, dict) else (None, None))
        if name not in OBJECTIVES:
            import difflib

            close = difflib.get_close_matches(str(name), OBJECTIVES, n=1)
            fix = f"did you mean '{close[0]}'?" if close else f"known objectives: {', '.join(OBJECTIVES)}"
            raise ConfigError(f"unknown objective '{name}' in {where}", fix)
        obj = OBJECTIVES[name]
        if direction not in (None, obj.direction):
            raise ConfigError(f"objective '{name}' can only be {obj.direction}d", f"write direction: {obj.direction}")
        result.append(obj)
    names = [o.name for o in result]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where} lists an objective twice", "list each objective once")
    if not 2 <= len(result) <= 3:
        raise ConfigError(f"{where} has {len(result)} objectives", "choose 2 or 3 (e.g. score, params, memory)")
    if "score" not in names:
        raise ConfigError(f"{where} does not include 'score'", "add score: without it no training is compared")
    return result
