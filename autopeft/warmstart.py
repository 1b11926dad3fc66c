"""Warm start: a new study first runs the Pareto configurations another study found (another task or model).

The other study is named by its study file or by a storage URL (``sqlite:///runs/a.db``, ``...#study_name`` when
the storage holds several). Its Pareto trials' search parameters are mapped into the new study's space by name:
a per-layer parameter (``lora.rank.7``, ``layer.7``) takes the value of the layer at the same relative depth when
the models differ in layer count, ``layers.top_k`` is scaled, a size missing from the new choices becomes the
nearest one, and a parameter the other study did not have is left to the sampler. It works best when both
studies search the same space.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from .errors import ConfigError, StorageError
from .pareto import pareto_mask
from .storage import default_storage, mask_url, open_storage, storage_exists

if TYPE_CHECKING:
    from .space import SearchSpace

logger = logging.getLogger(__name__)

#: user attribute of a trial enqueued by a warm start: where its configuration comes from
WARM_ATTR = "warm_start"
_PER_LAYER = re.compile(r"^(?P<prefix>.+)\.(?P<layer>\d+)$")


@dataclass
class WarmSource:
    """The other study: a label for messages, its model's layer count and its Pareto trials."""

    label: str
    name: str
    num_layers: int | None
    front: list[FrozenTrial]


def load_source(spec: str) -> WarmSource:
    """The Pareto trials of the study named by ``spec``: a study YAML file, or a storage URL (``#name`` picks a
    study when the storage holds several). One-line errors when it cannot be read."""
    name = None
    if "://" in spec:
        url, _, name = spec.partition("#")
        name = name or None
    else:
        from .config import load_study_config

        if not Path(spec).is_file():
            raise ConfigError(f"--warm-start '{spec}' is neither a study file nor a storage URL",
                              "give the other study's YAML file, or its storage (sqlite:///runs/NAME.db)")
        cfg = load_study_config(spec, sub_files=False)  # only its name and storage are needed
        url, name = default_storage(cfg.storage, cfg.name), cfg.name
    if not storage_exists(url):
        raise StorageError(f"no storage at '{mask_url(url)}' to warm-start from", "run the other study first")
    storage = open_storage(url, create=False)
    names = [s for s in optuna.get_all_study_names(storage) if not s.endswith(".references")]
    if name is None:
        if len(names) != 1:
            raise StorageError(f"'{mask_url(url)}' holds {len(names)} studies ({', '.join(names) or 'none'})",
                               "name one: --warm-start 'URL#study_name'")
        name = names[0]
    if name not in names:
        raise StorageError(f"no study named '{name}' in '{mask_url(url)}'", f"studies there: {', '.join(names)}")
    study = optuna.load_study(study_name=name, storage=storage)
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not done:
        raise StorageError(f"study '{name}' has no completed trial to warm-start from", "run it first")
    mask = pareto_mask(np.array([t.values for t in done]), [d.name.lower() for d in study.directions])
    front = [t for t, keep in zip(done, mask) if keep]
    return WarmSource(f"{name} ({mask_url(url)})", name, _layers_of(study, done), front)


def _layers_of(study: optuna.Study, trials: list[FrozenTrial]) -> int | None:
    """The other model's layer count: stored with the study, else read off per-layer parameter names."""
    stored = study.user_attrs.get("num_layers")
    if stored:
        return int(stored)
    indices = [int(m["layer"]) for t in trials for n in t.params if (m := _PER_LAYER.match(n))]
    return max(indices) + 1 if indices else None


def map_params(params: dict[str, Any], source_layers: int | None, space: "SearchSpace") -> dict[str, Any]:
    """``params`` of the other study as values of ``space``'s parameters (see the module docstring); parameters
    that cannot be mapped are left out, for the sampler to choose."""
    target_layers = space.num_layers
    source_layers = source_layers or target_layers
    out: dict[str, Any] = {}
    for p in space.params:
        name = p.name
        m = _PER_LAYER.match(name)
        if m:  # the layer at the same relative depth
            j = min(source_layers - 1, int((int(m["layer"]) + 0.5) * source_layers / target_layers))
            name = f"{m['prefix']}.{j}"
        if name not in params:
            continue
        value = params[name]
        if p.name == "layers.top_k":
            value = round(value * target_layers / source_layers)
        value = _fit(value, p.distribution)
        if value is not None:
            out[p.name] = value
    return out


def _fit(value: Any, dist) -> Any:
    """``value`` as a value of ``dist``: the nearest numeric choice, clipped into a range; None if impossible."""
    if isinstance(dist, CategoricalDistribution):
        if value in dist.choices:
            return value
        numeric = [c for c in dist.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and numeric:
            return min(numeric, key=lambda c: (abs(c - value), c))
        return None
    if isinstance(dist, (IntDistribution, FloatDistribution)) and isinstance(value, (int, float)):
        clipped = min(max(value, dist.low), dist.high)
        return int(round(clipped)) if isinstance(dist, IntDistribution) else float(clipped)
    return None


def enqueue_front(study: optuna.Study, source: WarmSource, space: "SearchSpace") -> int:
    """Enqueue ``source``'s Pareto configurations, mapped into ``space``, as ``study``'s next trials (each marked
    with where it comes from); returns how many. Configurations that map to the same point are enqueued once."""
    seen: list[dict[str, Any]] = []
    for t in sorted(source.front, key=lambda t: t.number):
        params = map_params(t.params, source.num_layers, space)
        if not params or params in seen:
            continue
        seen.append(params)
        study.enqueue_trial(params, user_attrs={WARM_ATTR: f"{source.name} trial {t.number}"})
    return len(seen)
