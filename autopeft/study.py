"""A study: the YAML, its search space and objectives, an Optuna study in a storage, and the proxy runs."""
from __future__ import annotations

import logging
import warnings
import zlib
from collections import Counter
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from ._version import __version__
from .candidate import Budget, Candidate
from .config import StudyConfig, load_study_config, parse_size
from .errors import ConfigError, StorageError
from .loop import TrialRunner
from .objectives import Objective, directions_of
from .optimizers import SamplerContext, derive_reference_point, make_sampler
from .pareto import check_reference_point, pick
from .records import StatusReport, TrialRecord, ValidationReport, front_of, trial_records
from .space import SearchSpace
from .storage import default_storage, lost_storage_error, mask_url, open_storage, storage_exists
from .workers import StaleTrials, counted_trials, progress, replaced_numbers, run_local_workers, trial_kind
from .warmstart import enqueue_front, load_source

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)
#: seconds a worker waits after claiming a reference before checking for a simultaneous claim by another
REFERENCE_SETTLE_S = 1.0

# ask/tell with heartbeats is deliberate here: the heartbeat thread is run around each trial (see loop.py)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used", category=UserWarning)


class Study:
    """Python API behind the CLI: ``Study.from_yaml(path).optimize()``, ``.pareto_front()``, ``.export()``."""

    def __init__(self, cfg: StudyConfig, storage: str | None = None, joined: bool = False):
        """``joined``: this process is a worker spawned after the storage was made; it never creates the storage
        again (a vanished SQLite file must not be replaced by an empty one) and any failure to open it is a lost
        storage."""
        self.cfg = cfg
        self.joined = joined
        self.storage_url = storage or default_storage(cfg.storage, cfg.name)
        self.objectives: list[Objective] = with_score_direction(cfg.objective_list, cfg)
        if not cfg.proxy.measure_memory and "memory" in [o.name for o in self.objectives]:
            raise ConfigError("proxy.measure_memory is false but 'memory' is an objective",
                              "drop measure_memory: false, or use memory_estimate instead of memory")
        self._space_spec = cfg.space_spec
        self._trainer = None
        self._space: SearchSpace | None = None
        self._budget: Budget | None = None

    @classmethod
    def from_yaml(cls, path: str | Path, storage: str | None = None) -> "Study":
        return cls(load_study_config(path), storage)

    # ------------------------------------------------------------------ set-up
    @property
    def trainer(self):
        """Model, tokenizer and encoded data, loaded once (this validates model and data)."""
        if self._trainer is None:
            from .logs import adopt_library_loggers, live_progress
            from .trainers import make_trainer

            self._trainer = t = make_trainer(self.cfg.trainer_config())
            adopt_library_loggers()  # transformers & co. are imported by now: their notices go to the -v log
            t.on_step = live_progress()  # on a terminal: step, loss and seconds left inside each run
            kind = "prompt/response pairs" if self.cfg.task.type == "causal_lm" else "regression" \
                if t.task.regression else f"{t.task.num_labels} labels"
            logger.info("loaded %s (%d layers, %s parameters); %d train / %d validation rows, %s", self.cfg.model,
                        t.info.num_layers, f"{t.info.base_params:,}", len(t.train), len(t.validation), kind)
        return self._trainer

    @property
    def space(self) -> SearchSpace:
        if self._space is None:
            info = self.trainer.info
            space = SearchSpace.from_spec(self._space_spec, info.num_layers)
            space.check_against(info)
            self._space = space
        return self._space

    @property
    def budget(self) -> Budget:
        """The hard budgets (constraints) judged on candidates before they train."""
        if self._budget is None:
            c = self.cfg.constraints
            self._budget = Budget(c.params_limit(self.trainer.info.base_params), c.memory_limit(), self.trainer)
        return self._budget

    def runner(self) -> TrialRunner:
        """What runs this study's trials (search, references, refinement); see loop.py."""
        return TrialRunner(self.cfg, self.objectives, self.trainer, self.space, self.budget)

    def validate(self) -> ValidationReport:
        """Check YAML, model, data and space together without writing anything."""
        from .metrics import get_metric

        if self.cfg.task.type != "causal_lm":  # its metrics are checked with the YAML
            get_metric(self.cfg.task.metric or ("pearson" if self.cfg.task.type == "regression" else "accuracy"))
        space, trainer = self.space, self.trainer
        make_sampler(self.cfg.optimizer.name, self._sampler_context(self.cfg.seed))
        lo, hi = space.param_range(trainer.info)
        return ValidationReport(space.num_configurations(), space.dimensions(), lo, hi, trainer.info.base_params,
                                trainer.info.num_layers, len(trainer.train), len(trainer.validation),
                                trainer.task.num_labels, [o.name for o in self.objectives],
                                len(trainer.test) if trainer.test is not None else 0, trainer.task.splits)

    # ------------------------------------------------------------------ storage
    def _open_storage(self) -> optuna.storages.RDBStorage:
        try:
            return open_storage(self.storage_url, create=not self.joined, heartbeat=self.cfg.recovery.heartbeat,
                                grace=self.cfg.recovery.grace)
        except StorageError as err:
            if not self.joined:
                raise
            raise lost_storage_error(self.storage_url, err) from None

    def _create_or_load(self) -> optuna.Study:
        storage = self._open_storage()
        directions = [o.direction for o in self.objectives]
        study = optuna.create_study(storage=storage, study_name=self.cfg.name, directions=directions,
                                    load_if_exists=True)
        stored = study.user_attrs.get("objectives")
        names = [o.name for o in self.objectives]
        if stored is None:
            study.set_user_attr("objectives", names)
            study.set_user_attr("model", self.cfg.model)
            study.set_user_attr("num_labels", self.trainer.task.num_labels)
            study.set_user_attr("search_space", self._space_spec)
            study.set_user_attr("seed", self.cfg.seed)
            study.set_user_attr("autopeft_version", __version__)
            study.set_user_attr("data_splits", self.trainer.task.splits)  # where train/validation/test rows come from
            study.set_user_attr("num_layers", self.trainer.info.num_layers)  # maps its configs when warm-starting
        elif stored != names:
            raise StorageError(f"study '{self.cfg.name}' in {mask_url(self.storage_url)} optimises {stored}, "
                               f"this file asks for {names}", "give the study a new name or use another storage")
        elif study.user_attrs.get("data_splits", self.trainer.task.splits) != self.trainer.task.splits:
            logger.warning("the data splits differ from those the study was started with (%s); its trials were "
                           "scored on other rows", study.user_attrs["data_splits"])
        return study

    def load(self) -> optuna.Study:
        """The stored study, for read-only commands (pareto, export, status)."""
        if not storage_exists(self.storage_url):
            raise StorageError(f"no storage at '{mask_url(self.storage_url)}'",
                               "run 'autopeft run STUDY' first, or pass --storage URL")
        storage = open_storage(self.storage_url, create=False)
        try:
            return optuna.load_study(study_name=self.cfg.name, storage=storage)
        except KeyError:
            raise StorageError(f"no study named '{self.cfg.name}' in '{mask_url(self.storage_url)}'",
                               "run 'autopeft run STUDY' first, or pass the right --storage") from None

    # ------------------------------------------------------------------ search
    def warm_start(self, source: str) -> int:
        """Enqueue the Pareto configurations of another study (its YAML file or storage URL, see warmstart.py) as
        this study's next trials, mapped into this study's space; returns how many. Once per study: a resumed
        study that was warm-started already is left alone."""
        origin = load_source(source)
        space = self.space
        study = self._create_or_load()
        done = study.user_attrs.get("warm_start")
        if done:
            logger.info("study '%s' was warm-started from %s already", self.cfg.name, done["source"])
            return 0
        n = enqueue_front(study, origin, space)
        study.set_user_attr("warm_start", {"source": origin.label, "configurations": n})
        logger.info("warm start: the %d Pareto configuration%s of %s run first", n, "" if n == 1 else "s",
                    origin.label)
        return n

    def optimize(self, n_trials: int | None = None, timeout: float | None = None, workers: int = 1,
                 worker: str | None = None) -> list[TrialRecord]:
        """Run trials until the study holds ``n_trials`` counted ones (budget.trials by default; see workers.py).

        Resumes: trials already in the storage count. ``workers`` > 1 runs that many processes on this machine;
        ``worker`` names this process when others share the storage (``autopeft worker``) and seeds its sampler
        apart from theirs. Returns the Pareto front.
        """
        self.space  # validates model, data and space before anything is written
        make_sampler(self.cfg.optimizer.name, self._sampler_context(self.cfg.seed))  # bad name: no storage
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1 (got {workers})", "pass --workers 1 or more")
        target = n_trials or self.cfg.budget.trials
        timeout = timeout if timeout is not None else self.cfg.budget.seconds
        study = self._create_or_load()
        if self.cfg.references:
            self.run_references(settle=REFERENCE_SETTLE_S if worker else 0.0)
        if workers > 1:
            run_local_workers(partial(work, self.cfg, self.storage_url, target, timeout), self.storage_url, workers,
                              self.cfg.proxy.threads)
            if self.cfg.refine.auto and progress(study).finished >= target:
                return self.refine()  # here, once, not in every worker
            return self.pareto_front(self.load())
        stale = StaleTrials(self.cfg.recovery.grace, self.cfg.recovery.retries)
        stale.check(study)
        self.budget.learn_from(study)
        done = progress(study).finished
        if done >= target:
            logger.info("study '%s' already has %d/%d trials; nothing to run", self.cfg.name, done, target)
            return self.pareto_front(study)
        seed = self.cfg.seed + len(study.trials) + (zlib.crc32(worker.encode()) if worker else 0)
        study.sampler = make_sampler(self.cfg.optimizer.name, self._sampler_context(seed, study))
        if done:
            logger.info("resuming study '%s': %d/%d trials done", self.cfg.name, done, target)
        self.runner().search(study, target, timeout, seed, worker, stale)
        if self.cfg.refine.auto and worker is None and progress(study).finished >= target:
            return self.refine()  # workers leave it to 'autopeft refine' or the parent of local workers
        return self.pareto_front(study)

    def _known(self, values: dict[str, Any]) -> dict[str, float]:
        """Objectives computable without training, exactly, for flat ``values``."""
        return Candidate.decode(self.space, self.trainer.info, values).known(self.trainer)

    def _feasible(self, values: dict[str, Any]) -> bool:
        return self.budget.violation(Candidate.decode(self.space, self.trainer.info, values)) is None

    def _sampler_context(self, seed: int, study: optuna.Study | None = None) -> SamplerContext:
        """What the optimizer backend gets; with ``study``, the reference point fixed in (or now stored to) it."""
        names = tuple(o.name for o in self.objectives)
        given = check_reference_point(self.cfg.optimizer.options.get("reference_point"), names)
        ref = None
        if study is not None:
            ref = study.user_attrs.get("reference_point")
            if ref is None:
                ref = derive_reference_point(self.space, names, [o.direction for o in self.objectives], self._known,
                                             given, worst={"score": self.trainer.chance})
                study.set_user_attr("reference_point", ref)
            elif given and any(ref.get(k) != v for k, v in given.items()):
                logger.warning("keeping the reference point stored with the study (%s); the YAML's differs", ref)
        return SamplerContext(dict(self.cfg.optimizer.options), seed, self.cfg.optimizer.initial_trials, self.space,
                              names, tuple(o.direction for o in self.objectives), self._known, self._feasible, ref)

    # ------------------------------------------------------------------ refinement
    def refine(self, seeds: int | None = None) -> list[TrialRecord]:
        """Re-train every Pareto point at full fidelity (``train`` block) with ``seeds`` seeds (``refine.seeds``).

        Stores mean ± sd of the score per point in the study (``refined_<trial>``); already refined points
        with as many seeds are skipped, so an interrupted refinement resumes. Returns the refined front.
        """
        seeds = seeds or self.cfg.refine.seeds
        study = self.load()
        self.runner().refine(study, self.pareto_front(study), seeds)
        return self.pareto_front(study)

    # ------------------------------------------------------------------ references
    @property
    def references_name(self) -> str:
        return f"{self.cfg.name}.references"

    def run_references(self, settle: float = 0.0) -> list[TrialRecord]:
        """Train the hand-made reference configs not yet stored (at the proxy fidelity); see references.py and
        TrialRunner.references. They live in the sibling study ``<name>.references``, which samplers never see."""
        study = optuna.create_study(storage=self._open_storage(), study_name=self.references_name,
                                    directions=[o.direction for o in self.objectives], load_if_exists=True)
        self.runner().references(study, settle)
        return self.references(study)

    def references(self, study: optuna.Study | None = None) -> list[TrialRecord]:
        """Completed reference trials (empty when the study has none)."""
        if study is None:
            try:
                study = optuna.load_study(study_name=self.references_name,
                                          storage=open_storage(self.storage_url, create=False))
            except (KeyError, StorageError):
                return []
        return [r for r in self.trials(study) if r.state == "COMPLETE"]

    # ------------------------------------------------------------------ results
    def trials(self, study: optuna.Study | None = None) -> list[TrialRecord]:
        return trial_records(study or self.load(), [o.name for o in self.objectives])

    def status(self, target: int | None = None) -> StatusReport:
        """Counts by kind, failure reasons and running trials of the stored study (read-only)."""
        trials = self.load().get_trials(deepcopy=False)
        replaced = replaced_numbers(trials)
        kinds: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        for t in trials:
            kind = trial_kind(t, replaced)
            kinds[kind] += 1
            if kind in ("fail", "retried", "interrupted") and t.user_attrs.get("fail_reason"):
                reasons[t.user_attrs["fail_reason"]] += 1
        now = datetime.now()
        running = [(t.number, t.user_attrs.get("worker"), (now - t.datetime_start).total_seconds())
                   for t in trials if t.state == TrialState.RUNNING and t.datetime_start]
        counted = sum(1 for t in counted_trials(trials) if t.state != TrialState.RUNNING)
        return StatusReport(self.cfg.name, len(trials), counted, target or self.cfg.budget.trials, dict(kinds),
                            dict(reasons.most_common()), running)

    def pareto_front(self, study: optuna.Study | None = None) -> list[TrialRecord]:
        """Completed trials no other completed trial dominates, sorted by score (best first)."""
        return front_of(self.trials(study), self.objectives)

    def trial(self, number: int, study: optuna.Study | None = None) -> TrialRecord:
        for r in self.trials(study):
            if r.number == number:
                return r
        raise StorageError(f"trial {number} does not exist in study '{self.cfg.name}'",
                           "see 'autopeft pareto STUDY' for trial numbers")

    def pick(self, rule: str) -> TrialRecord:
        """The completed trial chosen by ``rule``: knee | max-score | 'params<=N' | 'memory<=N' (see pareto.pick)."""
        done = [r for r in self.trials() if r.state == "COMPLETE" and r.values]
        names = list(done[0].values) if done else [o.name for o in self.objectives]
        values = np.array([[r.values[n] for n in names] for r in done], dtype=float).reshape(-1, len(names))
        return done[pick(rule, values, names, directions_of(names, self.objectives), parse_size=parse_size)]


def work(cfg: StudyConfig, storage: str, target: int, timeout: float | None, worker: str) -> None:
    """What one local worker process runs (see workers.run_local_workers): this study, joined, as ``worker``."""
    Study(cfg, storage, joined=True).optimize(target, timeout, worker=worker)


def with_score_direction(objectives: list[Objective], cfg: StudyConfig) -> list[Objective]:
    """The objectives with the score's direction following the task's metric (loss and perplexity: minimise)."""
    from dataclasses import replace

    from .causal_lm import score_direction

    direction = score_direction(cfg.task.type, cfg.task.metric)
    return [replace(o, direction=direction) if o.name == "score" else o for o in objectives]
