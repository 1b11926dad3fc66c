"""Objectives a study can optimise, behind one registry, and the check of an objective set read from YAML."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np

from .errors import ConfigError, suggest

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


def directions_of(names: Sequence[str], study: Sequence[Objective] = ()) -> list[Direction]:
    """The direction of each named objective: as in ``study`` (a study's objectives, where the score's direction
    follows the task's metric), else as registered; unknown names are minimised."""
    own = {o.name: o.direction for o in study}
    return [own.get(n) or (OBJECTIVES[n].direction if n in OBJECTIVES else "minimize") for n in names]


def objective_set(spec: Any, where: str = "objectives",
                  locate: Callable[[tuple], str | None] = lambda path: None) -> list[Objective]:
    """An objective set as read from YAML: a list of names / {name, direction}, or {objectives: [...]}.

    ``where`` names the set in messages (``objectives``, or the file it came from); ``locate(key path)`` gives the
    ``file:line`` of a key path inside ``spec``, for errors that point at the line (see config.StudyConfig).
    """
    at: tuple = ()
    if isinstance(spec, dict) and "objectives" in spec:
        spec, at = spec["objectives"], ("objectives",)
    if not isinstance(spec, list):
        raise ConfigError(f"{where} must be a list of objectives", "e.g. objectives: [score, params, memory]",
                          locate(at))
    result: list[Objective] = []
    for i, item in enumerate(spec):
        name, direction = (item, None) if isinstance(item, str) else (
            (item.get("name"), item.get("direction")) if isinstance(item, dict) else (None, None))
        if name not in OBJECTIVES:
            raise ConfigError(f"unknown objective '{name}' in {where}", suggest(name, OBJECTIVES, "known objectives"),
                              locate(at + (i, "name")))
        obj = OBJECTIVES[name]
        if direction not in (None, obj.direction):
            raise ConfigError(f"objective '{name}' can only be {obj.direction}d", f"write direction: {obj.direction}",
                              locate(at + (i, "direction")))
        result.append(obj)
    names = [o.name for o in result]
    again = next((i for i, n in enumerate(names) if n in names[:i]), None)
    if again is not None:
        raise ConfigError(f"{where} lists an objective twice", "list each objective once", locate(at + (again,)))
    if not 2 <= len(result) <= 3:
        raise ConfigError(f"{where} has {len(result)} objectives", "choose 2 or 3 (e.g. score, params, memory)",
                          locate(at))
    if "score" not in names:
        raise ConfigError(f"{where} does not include 'score'", "add score: without it no training is compared",
                          locate(at))
    return result
