"""Objectives a study can optimise, behind one registry, and objective sets loaded from YAML."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError
from .yamlio import load_yaml

Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class Objective:
    """A named objective. ``known`` objectives are computed for any config without training."""

    name: str
    direction: Direction
    known: bool
    description: str


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("score", "maximize", False, "task metric on the validation split after the proxy run"),
        Objective("params", "minimize", True, "trainable parameters the adapters add (task head excluded)"),
        Objective("memory", "minimize", False, "measured peak memory of one proxy training step (bytes)"),
        Objective("memory_estimate", "minimize", True, "analytic peak training memory (bytes)"),
    )
}


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


def objective_values(objectives: list[Objective], measured: dict[str, Any]) -> list[float]:
    return [float(measured[o.name]) for o in objectives]
