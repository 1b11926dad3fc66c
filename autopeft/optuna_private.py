"""Every use of Optuna's private API, in one place.

Optuna has no public API for these (ask/tell under our own heartbeat, the stale-trial query, the heartbeat-less
running trials, its exact hypervolume), so a new Optuna release that moves them should break here and nowhere else.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.trial import TrialState


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage object behind ``study``."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    return study._study_id


def trial_id(trial: optuna.Trial) -> int:
    """The storage's id of a running trial (its heartbeat and state are keyed by it)."""
    return trial._trial_id


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """What ``study.ask(distributions)`` does for one parameter, for a trial that already exists (and beats)."""
    return trial._suggest(name, distribution)


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """Ids of running trials whose last heartbeat is older than the storage's grace period."""
    return storage_of(study)._get_stale_trial_ids(study._study_id)


def compute_hypervolume(loss_vals: np.ndarray, reference_point: np.ndarray) -> float:
    """Optuna's exact hypervolume of minimised ``loss_vals`` below ``reference_point`` (see pareto.hypervolume)."""
    from optuna._hypervolume import compute_hypervolume as hv

    return hv(loss_vals, reference_point)


def never_beaten_ids(study: optuna.Study) -> set[int]:
    """Ids of running trials of ``study`` without a heartbeat row (an RDB storage's tables; empty otherwise)."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    storage = storage_of(study)
    backend = getattr(storage, "_backend", storage)
    if not hasattr(backend, "scoped_session"):
        return set()
    with _create_scoped_session(backend.scoped_session) as session:
        rows = (session.query(models.TrialModel.trial_id)
                .outerjoin(models.TrialHeartbeatModel,
                           models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
                .filter(models.TrialModel.study_id == study._study_id,
                        models.TrialModel.state == TrialState.RUNNING,
                        models.TrialHeartbeatModel.trial_heartbeat_id.is_(None))
                .all())
    return {r[0] for r in rows}
