"""Two mixed-variable multi-objective problems with known Pareto fronts.

Both keep the shape of a PEFT space: continuous, integer, ordinal and categorical dimensions, and a
module that can be switched off (size 0) whose own parameters are then inactive. The distance
function ``g`` is a mean/sum of per-variable penalties that are all zero at one hidden setting, so
the front is that of the continuous originals.

* ``mixed-zdt`` (ZDT1-like, 2 objectives, minimise): ``f1 = x0`` is *known* (cheap, like ``params``),
  ``f2 = g (1 - sqrt(f1 / g))``; front ``f2 = 1 - sqrt(f1)``.
* ``mixed-dtlz2`` (DTLZ2-like, 3 objectives, minimise, all black-box): position from a float and an
  ordinal, ``f = (1 + g) * (cos cos, cos sin, sin)``; front: the arcs of the unit sphere's
  positive octant that the 9 ordinal values reach.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from autopeft.space import Param

from . import Problem, register_problem


@dataclass
class FlatSpace:
    """A space given directly as flat parameters (what the optimizers need of a SearchSpace)."""

    params: list[Param] = field(default_factory=list)


CAT_PENALTY = (0.0, 0.25, 0.5, 1.0)  # by distance of the choice from the hidden best one


def _cat(value: str, choices: str, best: str) -> float:
    return CAT_PENALTY[(choices.index(value) - choices.index(best)) % len(choices)]


# ---------------------------------------------------------------------------- mixed-zdt
ZDT_SPACE = FlatSpace([
    Param("x0", FloatDistribution(0.0, 1.0), role="option"),
    Param("n1", IntDistribution(0, 10), role="option"),
    Param("n2", IntDistribution(0, 10), role="option"),
    Param("n3", IntDistribution(0, 10), role="option"),
    Param("c1", CategoricalDistribution(list("abcd")), role="option"),
    Param("c2", CategoricalDistribution(list("abcd")), role="option"),
    Param("z1", FloatDistribution(0.0, 1.0), role="option"),
    Param("z2", FloatDistribution(0.0, 1.0), role="option"),
    Param("block", CategoricalDistribution([0, 1, 2, 4]), role="size"),
    Param("block.kind", CategoricalDistribution(list("uvw")), ("block",), "option"),
    Param("block.scale", FloatDistribution(0.1, 10.0, log=True), ("block",), "option"),
])


def zdt_g(v: Mapping[str, Any]) -> float:
    pens = [((v["n1"] - 3) / 10) ** 2, ((v["n2"] - 7) / 10) ** 2, ((v["n3"] - 5) / 10) ** 2,
            _cat(v["c1"], "abcd", "c") / 2, _cat(v["c2"], "abcd", "a") / 2,
            (v["z1"] - 0.2) ** 2, (v["z2"] - 0.8) ** 2]
    if v["block"] == 0:
        pens.append(0.25)  # the module off: a mediocre, not a hopeless, setting
    else:
        pens.append({"u": 0.3, "v": 0.0, "w": 0.15}[v["block.kind"]] + 0.2 * (math.log10(v["block.scale"]) - 0.5) ** 2
                    + 0.05 * abs(math.log2(v["block"]) - 1))
    return 1.0 + 3.0 * float(np.mean(pens))


def zdt_evaluate(v: Mapping[str, Any]) -> dict[str, float]:
    f1 = float(v["x0"])
    g = zdt_g(v)
    return {"f1": f1, "f2": g * (1.0 - math.sqrt(f1 / g))}


@register_problem("mixed-zdt")
def mixed_zdt() -> Problem:
    f1 = np.linspace(0.0, 1.0, 1001)
    return Problem("mixed-zdt", "ZDT1-like, 11 mixed dims with an on/off block, f1 known", ZDT_SPACE,
                   ("f1", "f2"), ("minimize", "minimize"), zdt_evaluate,
                   reference_point={"f1": 1.1, "f2": 2.0}, bounds={"f1": 0.0, "f2": 0.0},
                   known=lambda v: {"f1": float(v["x0"])},
                   true_front=np.stack([f1, 1.0 - np.sqrt(f1)], axis=1))


# ---------------------------------------------------------------------------- mixed-dtlz2
DTLZ_SPACE = FlatSpace([
    Param("p1", FloatDistribution(0.0, 1.0), role="option"),
    Param("p2", CategoricalDistribution(list(range(9))), role="option"),
    Param("i1", IntDistribution(0, 8), role="option"),
    Param("i2", IntDistribution(0, 8), role="option"),
    Param("c1", CategoricalDistribution(list("rgby")), role="option"),
    Param("c2", CategoricalDistribution(list("rgby")), role="option"),
    Param("z1", FloatDistribution(0.0, 1.0), role="option"),
    Param("z2", FloatDistribution(0.0, 1.0), role="option"),
    Param("z3", FloatDistribution(0.0, 1.0), role="option"),
    Param("head", CategoricalDistribution([0, 1]), role="size"),
    Param("head.width", IntDistribution(1, 16, log=True), ("head",), "option"),
    Param("head.act", CategoricalDistribution(["relu", "gelu", "tanh"]), ("head",), "option"),
])


def dtlz_g(v: Mapping[str, Any]) -> float:
    pens = [(v["i1"] / 8 - 0.25) ** 2, (v["i2"] / 8 - 0.75) ** 2,
            _cat(v["c1"], "rgby", "b") / 4, _cat(v["c2"], "rgby", "g") / 4,
            (v["z1"] - 0.5) ** 2, (v["z2"] - 0.5) ** 2, (v["z3"] - 0.5) ** 2]
    if v["head"] == 0:
        pens.append(0.15)
    else:
        pens.append((math.log2(v["head.width"]) - 3) ** 2 / 16 + {"relu": 0.1, "gelu": 0.0, "tanh": 0.2}[v["head.act"]])
    return float(sum(pens))


def dtlz_evaluate(v: Mapping[str, Any]) -> dict[str, float]:
    a, b = float(v["p1"]) * math.pi / 2, v["p2"] / 8 * math.pi / 2
    r = 1.0 + dtlz_g(v)
    return {"f1": r * math.cos(a) * math.cos(b), "f2": r * math.cos(a) * math.sin(b), "f3": r * math.sin(a)}


@register_problem("mixed-dtlz2")
def mixed_dtlz2() -> Problem:
    # p2 takes 9 values, so the reachable front is 9 arcs of the sphere, not all of it
    a, b = np.meshgrid(np.linspace(0, np.pi / 2, 200), np.arange(9) / 8 * np.pi / 2)
    front = np.stack([np.cos(a) * np.cos(b), np.cos(a) * np.sin(b), np.sin(a)], axis=-1).reshape(-1, 3)
    return Problem("mixed-dtlz2", "DTLZ2-like, 12 mixed dims with an on/off block, 3 black-box objectives",
                   DTLZ_SPACE, ("f1", "f2", "f3"), ("minimize",) * 3, dtlz_evaluate,
                   reference_point={"f1": 1.75, "f2": 1.75, "f3": 1.75}, bounds={"f1": 0.0, "f2": 0.0, "f3": 0.0},
                   true_front=front)
