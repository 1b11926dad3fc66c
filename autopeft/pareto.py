"""The scaled objective frame, dominance, the hypervolume reference point, hypervolume, and pick rules over
objective vectors: pure functions over (n, m) arrays of raw objective values, and the one home of each (the BO
backend, the rungs, the study, the report and the benchmarks compose them).

Layering: imports only :mod:`.objectives` and :mod:`.errors` (never config, study, optimizers or proxy); what it
would need from those is passed in (a space's extreme points, the size parser of the pick rules).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np

from .errors import ConfigError, suggest
from .objectives import ESTIMATED_BY, get_objective


# ---------------------------------------------------------------------------------------------- the frame
def scale_values(name: str, values: np.ndarray) -> np.ndarray:
    """Raw values of objective ``name`` on the scale hypervolume, the knee and the BO engine's acquisition are
    computed on (the registry's: log10 for counts and bytes, which span decades; identity for unknown names)."""
    obj = get_objective(name)
    return obj.scaled(values) if obj else np.asarray(values, dtype=float)


def to_minimisation(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """(n, m) values -> (n, m) losses: maximised columns are negated."""
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return np.asarray(values, dtype=float) * signs


def to_frame(values: np.ndarray, names: Sequence[str], directions: Sequence[str],
             sense: Literal["minimize", "maximize"] = "minimize") -> np.ndarray:
    """(n, m) raw values of objectives ``names`` -> (n, m) values on their scales (:func:`scale_values`), signed so
    that every column is minimised (``sense="minimize"``: the losses hypervolume and the knee are computed on) or
    maximised (``sense="maximize"``: what the BO engine's acquisition takes)."""
    values = np.asarray(values, dtype=float).reshape(-1, len(names))
    scaled = np.column_stack([scale_values(n, values[:, j]) for j, n in enumerate(names)]) \
        if len(names) else values
    if sense == "minimize":
        return to_minimisation(scaled, directions)
    if sense == "maximize":
        return scaled * np.array([1.0 if d == "maximize" else -1.0 for d in directions])
    raise ValueError(f"sense {sense!r} is neither 'minimize' nor 'maximize'")


def range_normalise(losses: np.ndarray) -> np.ndarray:
    """(n, m) losses -> the same scaled to [0, 1] per column over the rows' own range (0 = best row; a constant
    column -> 0): the frame of the knee, and of the benchmarks' multi-fidelity replays."""
    lo, hi = losses.min(axis=0), losses.max(axis=0)
    return (losses - lo) / np.where(hi > lo, hi - lo, 1.0)


# ---------------------------------------------------------------------------------------------- dominance
def _dominated_by(losses: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
    """(k, n) bool for (n, m) ``losses``: [i, j] is True where row j dominates row i of ``losses[rows]`` (no worse
    in every column and better in one)."""
    target = losses[rows][:, None, :]
    return (losses[None, :, :] <= target).all(-1) & (losses[None, :, :] < target).any(-1)


def pareto_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """(n, m) values -> (n,) bool, True where no other row dominates (duplicates all kept)."""
    losses = to_minimisation(values, directions)
    mask = np.ones(len(losses), dtype=bool)
    for start in range(0, len(losses), 256):  # blocks of rows: memory O(256 n m), not O(n^2 m), for large studies
        mask[start:start + 256] = ~_dominated_by(losses, slice(start, start + 256)).any(1)
    return mask


def nondominated_ranks(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """(n, m) -> (n,) front index per row (0 = non-dominated, as :func:`pareto_mask`), by repeated peeling."""
    losses = to_minimisation(values, directions)
    n = len(losses)
    ranks = np.full(n, -1)
    # dominated_by[i, j]: row j dominates row i (once, as a matrix: peeling row by row in Python made a study's
    # rung decisions, and the multi-fidelity replay of 300 configurations, take minutes)
    dominated_by = _dominated_by(losses)
    remaining = np.ones(n, dtype=bool)
    front = 0
    while remaining.any():
        current = remaining & ~dominated_by[:, remaining].any(1)
        ranks[current] = front
        remaining &= ~current
        front += 1
    return ranks


# ---------------------------------------------------------------------------------------------- reference point
#: fraction of the observed range the derived reference point lies beyond the worst value
REFERENCE_MARGIN = 0.1
#: the reference point of a measured objective with a known estimate (``memory``) lies this factor above the
#: worst estimate (measured peaks run a little higher)
ESTIMATE_MARGIN = 1.5


def check_reference_point(given: Any, objectives: tuple[str, ...] | list[str]) -> dict[str, float]:
    """Validate ``optimizer.options.reference_point`` (a partial mapping objective -> number)."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise ConfigError("optimizer.options.reference_point must map objectives to numbers",
                          f"e.g. reference_point: {{{objectives[0] if objectives else 'score'}: 0.5}}")
    out = {}
    for k, v in given.items():
        if k not in objectives:
            raise ConfigError(f"optimizer.options.reference_point names '{k}', which is not an objective",
                              suggest(k, objectives, "the study's objectives"))
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"optimizer.options.reference_point.{k}: {v!r} is not a finite number",
                              "write a number, e.g. 0.5 or 2.0e+6")
        out[str(k)] = float(v)
    return out


def derive_reference_point(points: Iterable[Mapping[str, Any]], objectives: Sequence[str],
                           directions: Sequence[str],
                           known: Callable[[Mapping[str, Any]], Mapping[str, float]] | None,
                           given: Mapping[str, float] | None = None,
                           worst: Mapping[str, float] | None = None) -> dict[str, float]:
    """The reference point (raw objective units), fixed when a study starts.

    Per objective, the first that applies: ``given`` (the YAML), the worst value of a known objective over
    ``points`` (flat values where the known objectives peak: a study passes its space's extreme points, see
    ``autopeft.optimizers.derive_reference_point``), :data:`ESTIMATE_MARGIN` x the worst estimate for a measured
    objective with a known estimate, ``worst`` (e.g. the chance-level score). Raises ConfigError if none does.
    ``points`` is iterated only when ``known`` is given and some objective is not in ``given``.
    """
    given, worst = dict(given or {}), dict(worst or {})
    ref: dict[str, float] = {}
    need_known = [o for o in objectives if o not in given]
    bounds: dict[str, float] = {}
    if known is not None and need_known:
        for point in points:
            try:
                vals = known(point)
            except ConfigError:
                continue  # a point the space allows but the model cannot take has no objective value
            for k, v in vals.items():
                bounds[k] = max(bounds.get(k, -math.inf), float(v))
    for name, direction in zip(objectives, directions):
        if name in given:
            ref[name] = float(given[name])
        elif name in bounds and direction == "minimize":
            ref[name] = bounds[name]
        elif ESTIMATED_BY.get(name) in bounds and direction == "minimize":
            ref[name] = ESTIMATE_MARGIN * bounds[ESTIMATED_BY[name]]
        elif name in worst:
            ref[name] = float(worst[name])
        else:
            raise ConfigError(f"no reference point for objective '{name}'",
                              f"set optimizer.options.reference_point.{name} to its worst acceptable value")
    return ref


def reference_from_attrs(stored: Any, names: Sequence[str]) -> np.ndarray | None:
    """(m,) raw reference values from a study's ``reference_point`` user attr, or None if absent or unusable.

    Accepted forms: ``{objective: value}`` or a list aligned with the objectives, in the objectives' own
    units (score, parameter count, bytes).
    """
    if isinstance(stored, dict):
        stored = stored.get("values", stored)
    if isinstance(stored, dict) and all(n in stored for n in names):
        stored = [stored[n] for n in names]
    if isinstance(stored, (list, tuple)) and len(stored) == len(names):
        try:
            ref = np.array([float(v) for v in stored])
        except (TypeError, ValueError):
            return None
        return ref if np.all(np.isfinite(ref)) else None
    return None


# ---------------------------------------------------------------------------------------------- hypervolume
@dataclass(frozen=True)
class HypervolumeFrame:
    """A fixed frame to measure hypervolume in: losses are scaled so ``ideal`` -> 0 and ``reference`` -> 1.

    ``ideal`` and ``reference`` are (m,) losses on the comparison scale; ``derived`` says whether the
    reference point came from the data (True) or from the study (False).
    """

    names: tuple[str, ...]
    directions: tuple[str, ...]
    ideal: np.ndarray
    reference: np.ndarray
    derived: bool

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """(n, m) raw values -> (n, m) normalised losses (0 = ideal, 1 = reference point)."""
        span = np.where(self.reference > self.ideal, self.reference - self.ideal, 1.0)
        return (to_frame(values, self.names, self.directions) - self.ideal) / span

    def reference_values(self) -> dict[str, float]:
        """The reference point in the objectives' own units (what a user would write)."""
        raw = to_minimisation(self.reference[None, :], self.directions)[0]
        return {n: float(get_objective(n).unscaled(v) if get_objective(n) else v) for n, v in zip(self.names, raw)}


def hypervolume_frame(values: np.ndarray, names: Sequence[str], directions: Sequence[str],
                      reference_point: Sequence[float] | None = None) -> HypervolumeFrame:
    """The frame for ``values`` (n, m): ideal = best observed per objective; reference = ``reference_point``
    (raw units) when given, else the worst observed value plus ``REFERENCE_MARGIN`` of the range."""
    losses = to_frame(values, names, directions)
    m = len(names)
    ideal = losses.min(axis=0) if len(losses) else np.zeros(m)
    if reference_point is not None:
        reference = to_frame(np.asarray(reference_point, dtype=float)[None, :], names, directions)[0]
        ideal = np.minimum(ideal, reference)
        return HypervolumeFrame(tuple(names), tuple(directions), ideal, reference, False)
    worst = losses.max(axis=0) if len(losses) else np.ones(m)
    span = np.where(worst > ideal, worst - ideal, 1.0)
    return HypervolumeFrame(tuple(names), tuple(directions), ideal, worst + REFERENCE_MARGIN * span, True)


def fixed_frame(names: Sequence[str], directions: Sequence[str], ideal: Sequence[float],
                reference: Sequence[float]) -> HypervolumeFrame:
    """The frame from ``ideal`` (the best each objective can be) to the reference point ``reference``, both in raw
    units aligned with ``names`` (the benchmark problems' fixed frames)."""
    losses = to_frame(np.array([ideal, reference], dtype=float), names, directions)
    return HypervolumeFrame(tuple(names), tuple(directions), losses[0], losses[1], derived=False)


def hypervolume(values: np.ndarray, frame: HypervolumeFrame) -> float:
    """Fraction of the box [ideal, reference] that the points ``values`` (n, m) dominate, in [0, 1].

    Points not better than the reference point in every objective add nothing.
    """
    from .optuna_private import compute_hypervolume

    values = np.asarray(values, dtype=float).reshape(-1, len(frame.names))
    # strictly better than the reference in every objective (a degenerate box, reference == ideal, holds nothing)
    inside = np.all(to_frame(values, frame.names, frame.directions) < frame.reference, axis=1)
    if not inside.any():
        return 0.0
    losses = np.clip(frame.normalise(values[inside]), 0.0, 1.0)
    return float(compute_hypervolume(losses, np.ones(losses.shape[1])))


def hypervolume_history(values: np.ndarray, frame: HypervolumeFrame) -> np.ndarray:
    """(n,) hypervolume of the first k rows of ``values`` (n, m), for k = 1..n (rows in trial order)."""
    values = np.asarray(values, dtype=float).reshape(-1, len(frame.names))
    losses = to_minimisation(values, frame.directions)
    out = np.zeros(len(values))
    front: list[int] = []
    current = 0.0
    for k in range(len(values)):
        # a point weakly dominated by the front so far adds nothing: skip the (costly) recomputation
        if front and np.any(np.all(losses[front] <= losses[k], axis=1)):
            out[k] = current
            continue
        front = [i for i in front if not np.all(losses[k] <= losses[i])] + [k]
        current = out[k] = hypervolume(values[front], frame)
    return out


def hypervolume_2d(losses: np.ndarray, reference: Sequence[float]) -> float:
    """Area that the (n, 2) ``losses`` (both minimised, in any frame) dominate up to ``reference``; points not
    strictly better than it in both add nothing.

    An exact sweep, vectorised for the benchmarks' multi-fidelity replays (recomputed after every trial of 300
    configurations x 50 orders). :func:`hypervolume` measures the same area with optuna's algorithm, which can
    differ in the last digits; the replays' published figures were computed with this one.
    """
    pts = losses[(losses[:, 0] < reference[0]) & (losses[:, 1] < reference[1])]
    if not len(pts):
        return 0.0
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]  # by x, ties by y
    # sweep in x: each point adds the strip between its y and the lowest y seen so far (vectorised: the
    # per-trial recomputation over 300 configurations x 50 orders was minutes in a Python loop)
    best_before = np.minimum.accumulate(np.concatenate([[reference[1]], pts[:, 1]]))[:-1]
    gain = np.clip(best_before - pts[:, 1], 0.0, None)
    return float(((reference[0] - pts[:, 0]) * gain).sum())


# ---------------------------------------------------------------------------------------------- pick rules
def knee_index(values: np.ndarray, names: Sequence[str], directions: Sequence[str]) -> int:
    """Index of the knee of the front in ``values`` (n, m): the Pareto point closest (Euclidean) to the ideal
    point once each objective is scaled to [0, 1] over the front (log10 params).

    Closest-to-ideal rather than farthest-from-the-extremes'-hyperplane: with three objectives the
    hyperplane rule often picks an extreme point (e.g. the smallest, worst-scoring adapter)."""
    values = np.asarray(values, dtype=float)
    front = np.flatnonzero(pareto_mask(values, directions))
    norm = range_normalise(to_frame(values[front], names, directions))
    distance = np.sqrt((norm**2).sum(axis=1))
    best = np.flatnonzero(np.isclose(distance, distance.min()))
    return int(front[_best_score(values[front[best]], names, directions, best)])


def max_score_index(values: np.ndarray, names: Sequence[str], directions: Sequence[str]) -> int:
    """Index of the best score (ties broken by the other objectives, in order)."""
    return _best_score(np.asarray(values, dtype=float), names, directions, np.arange(len(values)))


def _best_score(values: np.ndarray, names: Sequence[str], directions: Sequence[str], index: np.ndarray) -> int:
    """``index[i]`` of the row with the best score, then best other objectives (lexicographic)."""
    losses = to_minimisation(values, directions)
    order = [names.index("score")] if "score" in names else []
    order += [j for j in range(len(names)) if j not in order]
    # np.lexsort sorts by the last key first
    return int(index[np.lexsort([losses[:, j] for j in reversed(order)])[0]])


def _parse_limit(name: str, text: str, parse_size: Callable[[str], float]) -> float:
    text = text.strip()
    obj = get_objective(name)
    size = obj is not None and obj.limit == "size"
    try:
        return parse_size(text) if size else float(text.replace("_", ""))
    except ValueError:
        example = "500MB" if size else "1e5"
        raise ConfigError(f"'{text}' is not a limit for {name}", f"write e.g. '{name}<={example}'") from None


#: named pick rules; constraint rules ``<objective><=N`` are parsed by :func:`pick`
PICK_RULES: dict[str, Callable[[np.ndarray, Sequence[str], Sequence[str]], int]] = {
    "knee": knee_index,
    "max-score": max_score_index,
}
_LIMIT_RULE = re.compile(r"^\s*([a-z_]+)\s*<=\s*(.+?)\s*$")


def pick(rule: str, values: np.ndarray, names: Sequence[str], directions: Sequence[str], *,
         parse_size: Callable[[str], float]) -> int:
    """Index (into ``values`` (n, m)) chosen by ``rule``: ``knee``, ``max-score`` or ``<objective><=N``
    (the best score among points within the limit, e.g. ``params<=1e5``, ``memory<=500MB``). ``parse_size`` reads
    N for an objective whose limit is a size (``autopeft.config.parse_size``: '500MB' -> 5e8).

    Raises ConfigError for an unknown rule, and when no point meets a limit.
    """
    values = np.asarray(values, dtype=float).reshape(-1, len(names))
    if not len(values):
        raise ConfigError("the study has no completed trials to pick from", "run 'autopeft run STUDY' first")
    rule = rule.strip()
    if rule in PICK_RULES:
        return PICK_RULES[rule](values, names, directions)
    match = _LIMIT_RULE.match(rule)
    minimised = [n for n, d in zip(names, directions) if d == "minimize"]
    if not match or match.group(1) not in minimised:
        limits = " | ".join(f"'{n}<=N'" for n in minimised)
        raise ConfigError(f"unknown pick rule '{rule}'", f"use {' | '.join(PICK_RULES)} | {limits}")
    name, limit = match.group(1), _parse_limit(match.group(1), match.group(2), parse_size)
    column = values[:, list(names).index(name)]
    within = np.flatnonzero(column <= limit)
    if not len(within):
        raise ConfigError(f"no completed trial has {name} <= {limit:g} (smallest: {column.min():g})",
                          "raise the limit or run more trials")
    return _best_score(values[within], names, directions, within)
