"""What the user sees of a study: trial records, the reports of ``validate`` and ``status``, and their one-line
formatting. Read from a stored Optuna study; nothing here trains or writes."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import optuna

from .objectives import Objective, directions_of
from .pareto import pareto_mask


@dataclass
class TrialRecord:
    """One trial as the user sees it."""

    number: int
    state: str
    values: dict[str, float]
    config: dict[str, Any]
    hyperparameters: dict[str, Any]
    duration: float | None
    fail_reason: str | None = None
    fidelity: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        measured = self.attrs.get("measured", {})
        loss = measured.get("validation_loss")
        extra = {k: measured[k] for k in ("params", "trainable", "memory_breakdown", "memory_batch")
                 if measured.get(k) not in (None, {})}
        return {"trial": self.number, "state": self.state, "values": self.values, "config": self.config,
                "hyperparameters": self.hyperparameters, "duration_s": self.duration,
                "fidelity": self.fidelity, **({"fail_reason": self.fail_reason} if self.fail_reason else {}),
                **({"validation_loss": loss} if loss is not None else {}),
                **({"measured": extra} if extra else {}),
                **({"reference": self.attrs["reference"]} if self.attrs.get("reference") else {}),
                **({"warm_start": self.attrs["warm_start"]} if self.attrs.get("warm_start") else {})}


@dataclass
class ValidationReport:
    num_configurations: int
    dimensions: dict[str, int]
    params_min: int
    params_max: int
    base_params: int
    num_layers: int
    train_examples: int
    validation_examples: int
    num_labels: int
    objectives: list[str]
    test_examples: int = 0
    splits: dict[str, str] = field(default_factory=dict)  # where each split's rows come from


@dataclass
class StatusReport:
    """What ``autopeft status`` prints: trials by kind (see workers.trial_kind) and why they failed."""

    name: str
    total: int
    counted: int  # finished trials that count toward ``target``
    target: int
    kinds: dict[str, int]
    reasons: dict[str, int]  # failure reason -> trials, most frequent first
    running: list[tuple[int, str | None, float]]  # (trial, worker, seconds since it started)


def trial_records(study: optuna.Study, names: Sequence[str]) -> list[TrialRecord]:
    """Every trial of ``study`` as a record; ``names`` are the objectives when the study does not store them."""
    names = study.user_attrs.get("objectives") or list(names)
    records = []
    for t in study.get_trials(deepcopy=False):
        values = dict(zip(names, t.values)) if t.values else {}
        attrs = dict(t.user_attrs)
        refined = study.user_attrs.get(f"refined_{t.number}")  # finished trials are immutable in Optuna
        if refined:
            attrs["refined"] = refined
        records.append(TrialRecord(
            t.number, t.state.name, values, t.user_attrs.get("config", {}),
            t.user_attrs.get("hyperparameters", {}), t.duration.total_seconds() if t.duration else None,
            t.user_attrs.get("fail_reason"), t.user_attrs.get("fidelity"), attrs))
    return records


def front_of(records: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[TrialRecord]:
    """The completed records no other completed record dominates, best score first (the score's direction is the
    study's, see ``objectives``)."""
    done = [r for r in records if r.state == "COMPLETE"]
    if not done:
        return []
    names = list(done[0].values)
    mask = pareto_mask(np.array([[r.values[n] for n in names] for r in done]), directions_of(names, objectives))
    front = [r for r, keep in zip(done, mask) if keep]
    sign = score_sign(objectives)
    return sorted(front, key=lambda r: -sign * r.values.get("score", 0.0))


def score_sign(objectives: Sequence[Objective]) -> float:
    """+1 when a higher score is better, -1 when lower is (loss, perplexity)."""
    return 1.0 if directions_of(["score"], objectives)[0] == "maximize" else -1.0


def mean_sd(scores: list[float]) -> dict[str, Any]:
    """``{"scores", "mean", "sd"}`` of a refined point's scores (sd 0 for one seed)."""
    return {"scores": scores, "mean": float(np.mean(scores)),
            "sd": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0}


def summarise_config(config: dict, hparams: dict) -> str:
    """A configuration in one short line: ``serial=8@0,1 lora{0:4,1:2} lr=1.0e-03``."""
    parts = []
    for kind, body in config.items():
        size = body.get("size")
        layers = body.get("layers")
        if isinstance(layers, dict):
            parts.append(f"{kind}{{{','.join(f'{k}:{v}' for k, v in layers.items())}}}")
        else:
            parts.append(f"{kind}={size}@{','.join(map(str, layers))}")
    if "learning_rate" in hparams:
        parts.append(f"lr={hparams['learning_rate']:.1e}")
    return " ".join(parts) or "(no adapters: head only)"


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
