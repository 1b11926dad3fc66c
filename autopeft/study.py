"""A study: the YAML, its search space and objectives, an Optuna study in a storage, and the proxy runs."""
from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from ._version import __version__
from .adapters import PEFTConfig, count_adapter_params, normalise_config
from .config import StudyConfig, load_study_config
from .errors import AutoPEFTError, ConfigError, OverBudget, StorageError, TrialFailed
from .objectives import Objective, directions_of, format_value, load_objectives
from .optimizers import SamplerContext, check_reference_point, derive_reference_point, make_sampler
from .pareto import pareto_mask
from .rungs import noise_margin, promote
from .space import SearchSpace
from .storage import default_storage, lost_storage_error, mask_url, open_storage, storage_exists, storage_lost
from .workers import (POLL_S, StaleTrials, counted_trials, duplicate_of, heartbeat, interrupts_deferred, is_surplus,
                      mark_interrupted, mark_uncounted, progress, replaced_numbers, run_local_workers, trial_kind)
from .yamlio import load_yaml

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)
#: seconds a worker waits after claiming a reference before checking for a simultaneous claim by another
REFERENCE_SETTLE_S = 1.0

# ask/tell with heartbeats is deliberate here: the heartbeat thread is run around each trial below
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used", category=UserWarning)

#: consecutive over-budget proposals after which a random feasible config is enqueued instead
MAX_INFEASIBLE_STREAK = 5
#: consecutive proposals of a configuration another trial holds after which the sampler gets its way
MAX_DUPLICATE_STREAK = 5


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


class Study:
    """Python API behind the CLI: ``Study.from_yaml(path).optimize()``, ``.pareto_front()``, ``.export()``."""

    def __init__(self, cfg: StudyConfig, storage: str | None = None, joined: bool = False):
        """``joined``: this process is a worker spawned after the storage was made; it never creates the storage
        again (a vanished SQLite file must not be replaced by an empty one) and any failure to open it is a lost
        storage."""
        self.cfg = cfg
        self.joined = joined
        self.storage_url = storage or default_storage(cfg.storage, cfg.name)
        self.objectives: list[Objective] = with_score_direction(
            load_objectives(cfg.objectives, lambda p: cfg.resolve_file(p, "objectives")), cfg)
        if not cfg.proxy.measure_memory and "memory" in [o.name for o in self.objectives]:
            raise ConfigError("proxy.measure_memory is false but 'memory' is an objective",
                              "drop measure_memory: false, or use memory_estimate instead of memory")
        self._space_spec = self._load_space_spec()
        self._trainer = None
        self._space: SearchSpace | None = None
        self._memory_ratio: float | None = None

    def directions_of(self, names: list[str]) -> list[str]:
        """The direction of each named objective in this study (the score's follows the task's metric)."""
        own = {o.name: o.direction for o in self.objectives}
        return [own.get(n) or directions_of([n])[0] for n in names]

    @property
    def _score_sign(self) -> float:
        """+1 when a higher score is better, -1 when lower is (loss, perplexity)."""
        return 1.0 if next(o for o in self.objectives if o.name == "score").direction == "maximize" else -1.0

    @classmethod
    def from_yaml(cls, path: str | Path, storage: str | None = None) -> "Study":
        return cls(load_study_config(path), storage)

    # ------------------------------------------------------------------ set-up
    def _load_space_spec(self) -> dict[str, Any]:
        spec = self.cfg.search_space
        if isinstance(spec, str):
            spec, _ = load_yaml(self.cfg.resolve_file(spec, "search_spaces"), "search space file")
        if not isinstance(spec, dict):
            raise ConfigError("search_space must be a mapping, a path to one or a shipped space's name",
                              "e.g. search_space: autopeft (or lora, mixed)")
        return spec

    @property
    def trainer(self):
        """Model, tokenizer and encoded data, loaded once (this validates model and data)."""
        if self._trainer is None:
            from .logs import adopt_library_loggers, live_progress
            from .proxy import make_trainer

            self._trainer = t = make_trainer(self.cfg)
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
        from .warmstart import enqueue_front, load_source

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
        space = self.space  # validates model, data and space before anything is written
        make_sampler(self.cfg.optimizer.name, self._sampler_context(self.cfg.seed))  # bad name: no storage
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1 (got {workers})", "pass --workers 1 or more")
        target = n_trials or self.cfg.budget.trials
        timeout = timeout if timeout is not None else self.cfg.budget.seconds
        study = self._create_or_load()
        if self.cfg.references:
            self.run_references(settle=REFERENCE_SETTLE_S if worker else 0.0)
        if workers > 1:
            run_local_workers(self.cfg, self.storage_url, target, timeout, workers)
            if self.cfg.refine.auto and progress(study).finished >= target:
                return self.refine()  # here, once, not in every worker
            return self.pareto_front(self.load())
        stale = StaleTrials(self.cfg.recovery.grace, self.cfg.recovery.retries)
        stale.check(study)
        self._memory_ratio = self._memory_ratio_from(study)
        done = progress(study).finished
        if done >= target:
            logger.info("study '%s' already has %d/%d trials; nothing to run", self.cfg.name, done, target)
            return self.pareto_front(study)
        seed = self.cfg.seed + len(study.trials) + (zlib.crc32(worker.encode()) if worker else 0)
        study.sampler = make_sampler(self.cfg.optimizer.name, self._sampler_context(seed, study))
        if done:
            logger.info("resuming study '%s': %d/%d trials done", self.cfg.name, done, target)
        start = time.monotonic()
        durations: list[float] = []
        infeasible_streak = duplicate_streak = 0
        rng = np.random.default_rng(seed)
        waiting = False
        while True:
            stale.check(study)
            now = progress(study)
            if now.finished >= target:
                break
            if timeout is not None and time.monotonic() - start > timeout:
                logger.info("time budget of %.0fs reached after %d trials", timeout, now.finished)
                break
            if now.finished + now.running >= target:
                # the last trials run elsewhere; stay, so that one whose worker dies is retried here
                if not waiting:
                    logger.info("waiting for trial(s) %s, running in other workers",
                                ", ".join(map(str, now.running_numbers)))
                waiting = True
                time.sleep(POLL_S)
                continue
            waiting = False
            with contextlib.ExitStack() as beating:
                # a Ctrl-C/SIGTERM while the trial is created waits until it exists and beats, to be marked below
                with interrupts_deferred() as pending, warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # heartbeats are run here, not by study.optimize
                    trial = study.ask()  # parameters are suggested under the heartbeat: the sampler may take a while
                    # lets other workers fail the trial if we die
                    beating.enter_context(heartbeat(study, trial._trial_id))
                try:
                    pending.deliver()
                    outcome = self._start_trial(study, trial, target, worker,
                                                duplicate_ok=duplicate_streak >= MAX_DUPLICATE_STREAK)
                except KeyboardInterrupt:
                    mark_interrupted(study, trial)
                    raise
            duplicate_streak = duplicate_streak + 1 if outcome == "duplicate" else 0
            if outcome in ("surplus", "duplicate"):
                continue
            if outcome == "infeasible":
                infeasible_streak += 1
                if infeasible_streak >= MAX_INFEASIBLE_STREAK:
                    study.enqueue_trial(self._random_feasible(rng))
                    infeasible_streak = 0
                continue
            infeasible_streak = 0
            durations.append(study.trials[trial.number].duration.total_seconds())
            self._log_progress(study, trial.number, progress(study).finished, target, durations)
        if self.cfg.refine.auto and worker is None and progress(study).finished >= target:
            return self.refine()  # workers leave it to 'autopeft refine' or the parent of local workers
        return self.pareto_front(study)

    def _start_trial(self, study: optuna.Study, trial: optuna.Trial, target: int, worker: str | None,
                     duplicate_ok: bool = False) -> str:
        """Suggest the parameters and run the trial, unless workers raced: for the last slot ('surplus') or, with
        samplers that ran at once and so could not see each other's proposal, for one configuration ('duplicate')."""
        if is_surplus(study, trial.number, target):
            mark_uncounted(study, trial, "surplus", f"not run: other workers had already taken the {target} trials")
            return "surplus"
        if worker:
            trial.set_user_attr("worker", worker)
        for name, distribution in self.space.distributions.items():
            trial._suggest(name, distribution)  # what study.ask(distributions) does, after the heartbeat started
        twin = None if duplicate_ok else duplicate_of(study, trial)
        if twin is not None:
            mark_uncounted(study, trial, "duplicate", f"not run: trial {twin} holds the same configuration")
            return "duplicate"
        return self._run_trial(study, trial)

    def _run_trial(self, study: optuna.Study, trial: optuna.Trial) -> str:
        """Decode, check budgets, train, tell. Returns 'complete' | 'failed' | 'pruned' | 'infeasible' (the estimate
        breaks a budget: nothing ran, the trial does not count) | 'over_budget' (the measurement did: it counts)."""
        config, hparams = self.space.decode(trial.params)
        info = self.trainer.info
        config = normalise_config(config, info)
        params = count_adapter_params(config, info)
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("hyperparameters", hparams)
        reason = self._over_budget(config, params, hparams)
        if reason:
            trial.set_user_attr("fail_reason", reason)
            trial.set_user_attr("infeasible", True)
            study.tell(trial, state=TrialState.PRUNED)
            logger.debug("trial %d skipped: %s", trial.number, reason)
            return "infeasible"
        proxy = self.trainer.settings(hparams)
        trial.set_user_attr("proxy", proxy.model_dump(mode="json"))
        trial.set_user_attr("fidelity", self._fidelity(proxy))
        rungs = sorted(r for r in proxy.rungs if r < min(proxy.train_examples, len(self.trainer.train)) * proxy.epochs)
        reached: dict[str, float] = {}
        names = [o.name for o in self.objectives]

        def at_rung(n: int, score: float) -> bool:
            reached[str(n)] = score
            trial.set_user_attr("rungs", reached)  # peers read it as soon as it is written
            return promote(self._rung_vector(score, config, params, proxy),
                           self._rung_peers(study, trial.number, str(n)),
                           [o.direction for o in self.objectives], proxy.reduction_factor, names.index("score"),
                           self._rung_margin(score, proxy))

        try:
            result = self.trainer.run(config, hparams, seed=self.cfg.seed, eval_at=rungs,
                                      on_eval=at_rung if rungs else None,
                                      memory_limit=self.cfg.constraints.memory_limit())
        except OverBudget as exc:
            # measured before any training; it cost a profiled step, so unlike a trial the estimate rejects, it
            # counts toward the budget
            trial.set_user_attr("fail_reason", exc.reason)
            trial.set_user_attr("over_budget", True)
            if exc.measured is not None:
                estimate = self.trainer.estimate_memory(config, params, proxy)
                trial.set_user_attr("measured", {"memory": exc.measured.peak, "memory_estimate": estimate,
                                                 "memory_breakdown": exc.measured.breakdown})
                self._learn_memory_ratio(exc.measured.peak, estimate)
            study.tell(trial, state=TrialState.PRUNED)
            return "over_budget"
        except TrialFailed as exc:
            return self._fail(study, trial, str(exc))
        except AutoPEFTError:
            raise
        except Exception as exc:  # a bug or a library error in one trial must not end the study
            if storage_lost(exc):  # ... but a lost database does (at a rung): the trial is not at fault
                raise
            logger.debug("trial %d raised", trial.number, exc_info=True)  # the reason is logged by _fail
            return self._fail(study, trial, f"{type(exc).__name__}: {exc}")
        measured = result.to_dict()
        measured["params_pct"] = 100.0 * result.params / info.base_params
        trial.set_user_attr("measured", measured)
        if result.memory is not None:
            self._learn_memory_ratio(result.memory, result.memory_estimate)
        if result.stopped_at is not None:
            trial.set_user_attr("fail_reason", f"stopped at rung {result.stopped_at} examples: score "
                                               f"{result.score:.4f} not in the top 1/{proxy.reduction_factor:g}, "
                                               f"and beaten by more than "
                                               f"{self._rung_margin(result.score, proxy):.4f} by a trial no "
                                               f"worse on the other objectives")
            trial.set_user_attr("rung", result.stopped_at)
            study.tell(trial, state=TrialState.PRUNED)
            logger.info("trial %d stopped at rung %d (score %.4f)", trial.number, result.stopped_at, result.score)
            return "pruned"
        if self._score_sign * (result.score - result.chance) <= 1e-9:
            logger.warning("trial %d scored %.4f, at chance level (%.4f): the proxy may be too short or the "
                           "learning rate off", trial.number, result.score, result.chance)
        values = [result.objectives()[o.name] for o in self.objectives]
        if any(v is None or not math.isfinite(v) for v in values):
            return self._fail(study, trial, f"objective values not finite: {values}")
        study.tell(trial, [float(v) for v in values])
        return "complete"

    def _rung_margin(self, score: float, proxy) -> float:
        """How much better another trial's rung score must be to stop this one: ``proxy.rung_margin``, else the
        sampling noise of a difference of two scores on the validation rows."""
        if proxy.rung_margin is not None:
            return proxy.rung_margin
        return noise_margin(self.trainer.metric_name, score, len(self.trainer.validation))

    def _rung_vector(self, score: float, config: PEFTConfig, params: int, proxy) -> list[float]:
        """Objective vector at a rung: the rung's score, the rest as known before training
        (measured memory stands in as its analytic estimate, since the peers' measurements differ in time)."""
        memory = float(self.trainer.estimate_memory(config, params, proxy))
        values = {"score": score, "params": float(params), "trainable": float(params + self.trainer.head_params()),
                  "memory": memory, "memory_estimate": memory}
        return [values[o.name] for o in self.objectives]

    def _rung_peers(self, study: optuna.Study, number: int, rung: str) -> list[list[float]]:
        """Objective vectors at ``rung`` of the other trials that reached it (score, then known objectives)."""
        peers = []
        for t in study.get_trials(deepcopy=False):
            score = t.user_attrs.get("rungs", {}).get(rung)
            if t.number == number or score is None:
                continue
            config = normalise_config(PEFTConfig.from_dict(t.user_attrs["config"]), self.trainer.info)
            proxy = self.trainer.settings(t.user_attrs.get("hyperparameters"))
            peers.append(self._rung_vector(score, config, count_adapter_params(config, self.trainer.info), proxy))
        return peers

    def _fail(self, study: optuna.Study, trial: optuna.Trial, reason: str) -> str:
        trial.set_user_attr("fail_reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        logger.warning("trial %d failed: %s", trial.number, reason)
        return "failed"

    def _over_budget(self, config: PEFTConfig, params: int, hparams: dict[str, Any]) -> str | None:
        """Why ``config`` breaks a hard budget before training (None when it may fit).

        Memory is judged on the estimate times the largest measured/estimated ratio the study has seen, so that
        once a measurement shows the estimate running low, configurations like it are not measured again; the
        measured value is checked after the profiled step in any case (see ProxyTrainer.fit).
        """
        limit = self.cfg.constraints.params_limit(self.trainer.info.base_params)
        if limit is not None and params > limit:
            return f"infeasible: {params} params > max_params {limit:.0f}"
        mem_limit = self.cfg.constraints.memory_limit()
        if mem_limit is not None:
            estimate = self.trainer.estimate_memory(config, params, self.trainer.settings(hparams))
            expected = estimate * (self._memory_ratio or 1.0)
            if expected > mem_limit:
                how = "estimated" if self._memory_ratio is None else \
                    f"estimated ({estimate} B x {self._memory_ratio:.3f}, the largest measured/estimated ratio so far)"
                return f"infeasible: {how} memory {expected:.0f} B > max_memory {mem_limit:.0f} B"
        return None

    def _learn_memory_ratio(self, measured: float, estimate: float) -> None:
        if estimate > 0:
            self._memory_ratio = max(self._memory_ratio or 0.0, measured / estimate)

    def _memory_ratio_from(self, study: optuna.Study) -> float | None:
        """The largest measured/estimated memory ratio of the stored trials (None before any was measured)."""
        ratios = [m["memory"] / m["memory_estimate"] for t in study.get_trials(deepcopy=False)
                  if (m := t.user_attrs.get("measured") or {}).get("memory") and m.get("memory_estimate")]
        return max(ratios, default=None)

    def _known(self, values: dict[str, Any]) -> dict[str, float]:
        """Objectives computable without training, exactly, for flat ``values``."""
        config, hparams = self.space.decode(values)
        config = normalise_config(config, self.trainer.info)
        params = count_adapter_params(config, self.trainer.info)
        return {"params": float(params), "trainable": float(params + self.trainer.head_params()),
                "memory_estimate": float(
            self.trainer.estimate_memory(config, params, self.trainer.settings(hparams)))}

    def _feasible(self, values: dict[str, Any]) -> bool:
        config, hparams = self.space.decode(values)
        config = normalise_config(config, self.trainer.info)
        return self._over_budget(config, count_adapter_params(config, self.trainer.info), hparams) is None

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

    def _random_feasible(self, rng: np.random.Generator, tries: int = 2000) -> dict[str, Any]:
        """A random point that meets the hard budgets (rejection sampling; known objectives are cheap)."""
        from optuna.distributions import CategoricalDistribution, IntDistribution

        for _ in range(tries):
            values = {}
            for p in self.space.params:
                d = p.distribution
                if isinstance(d, CategoricalDistribution):
                    values[p.name] = d.choices[rng.integers(len(d.choices))]
                elif isinstance(d, IntDistribution):
                    values[p.name] = int(rng.integers(d.low, d.high + 1))
                else:
                    lo, hi = (np.log(d.low), np.log(d.high)) if d.log else (d.low, d.high)
                    x = rng.uniform(lo, hi)
                    values[p.name] = float(np.exp(x) if d.log else x)
            config, hparams = self.space.decode(values)
            config = normalise_config(config, self.trainer.info)
            if not self._over_budget(config, count_adapter_params(config, self.trainer.info), hparams):
                return values
        raise ConfigError("no configuration in the search space meets the constraints",
                          "raise constraints.max_params / max_memory or allow smaller sizes")

    def _log_progress(self, study: optuna.Study, number: int, done: int, target: int, durations: list[float]) -> None:
        t = study.trials[number]
        front = self.pareto_front(study)
        best = self._score_sign * max((self._score_sign * r.values["score"] for r in self.trials(study)
                                       if r.state == "COMPLETE"), default=float("nan"))
        eta = np.mean(durations) * (target - done)
        if t.state == TrialState.COMPLETE:
            vals = " ".join(f"{k}={format_value(k, v)}" for k, v in zip([o.name for o in self.objectives], t.values))
        else:
            vals = f"{t.state.name.lower()} ({t.user_attrs.get('fail_reason', '')})"
        logger.info("trial %d/%d (#%d) %s  %.1fs | Pareto %d | best score %.4f | ETA %s", done, target, number,
                    vals, durations[-1], len(front), best, format_duration(eta))

    # ------------------------------------------------------------------ refinement
    def refine(self, seeds: int | None = None) -> list[TrialRecord]:
        """Re-train every Pareto point at full fidelity (``train`` block) with ``seeds`` seeds (``refine.seeds``).

        Stores mean ± sd of the score per point in the study (``refined_<trial>``); already refined points
        with as many seeds are skipped, so an interrupted refinement resumes. Returns the refined front.
        """
        seeds = seeds or self.cfg.refine.seeds
        study = self.load()
        front = self.pareto_front(study)
        train = self.cfg.train
        for i, record in enumerate(front, 1):
            done = record.attrs.get("refined", {})
            if len(done.get("scores", [])) >= seeds:
                continue
            config = normalise_config(PEFTConfig.from_dict(record.config), self.trainer.info)
            hparams = dict(record.hyperparameters)
            if train.epochs:
                hparams["epochs"] = train.epochs
            examples = train.train_examples or len(self.trainer.train)
            proxy = self.trainer.settings(hparams)
            scores, test_scores = [], []
            test = self.trainer.test  # task.data.test: scored here and by export --train only
            for seed in range(self.cfg.seed, self.cfg.seed + seeds):
                try:
                    model, result = self.trainer.fit(config, hparams, seed=seed, train_examples=examples)
                except TrialFailed as exc:
                    logger.warning("refining trial %d, seed %d failed: %s", record.number, seed, exc)
                    continue
                scores.append(result.score)
                if test is not None:
                    test_scores.append(self.trainer.evaluate(model, test))
                del model
            if not scores:
                continue
            summary = {**_mean_sd(scores),
                       "fidelity": f"full: {min(examples, len(self.trainer.train))} examples x "
                                   f"{proxy.epochs:g} epoch(s), {len(scores)} seeds"}
            if test_scores:
                summary["test"] = {**_mean_sd(test_scores), "rows": len(test)}
            study.set_user_attr(f"refined_{record.number}", summary)
            logger.info("refined %d/%d: trial %d validation score %.4f ± %.4f%s (proxy %.4f)", i, len(front),
                        record.number, summary["mean"], summary["sd"],
                        f", test score {summary['test']['mean']:.4f} ± {summary['test']['sd']:.4f}"
                        if test_scores else "", record.values.get("score", float("nan")))
        return self.pareto_front(study)

    # ------------------------------------------------------------------ references
    @property
    def references_name(self) -> str:
        return f"{self.cfg.name}.references"

    def run_references(self, settle: float = 0.0) -> list[TrialRecord]:
        """Train the hand-made reference configs not yet stored (at the proxy fidelity); see references.py.

        Safe with several workers starting together: a reference is claimed by a running trial (kept alive by
        heartbeats) before it is trained; ``settle`` seconds later (time for simultaneous claims to land) the
        lowest-numbered claim trains it and the others withdraw. A claim whose worker died is failed by the
        stale check and trained again by whoever looks next.
        """
        from .adapters import PEFTConfig
        from .references import reference_config, references_for

        storage = self._open_storage()
        study = optuna.create_study(storage=storage, study_name=self.references_name,
                                    directions=[o.direction for o in self.objectives], load_if_exists=True)
        stale = StaleTrials(self.cfg.recovery.grace, retries=0)
        info = self.trainer.info
        for ref in references_for(info, self.cfg.full_finetune_reference):
            stale.check(study)
            if ref.name in _reference_claims(study):
                continue
            config = normalise_config(PEFTConfig.from_dict(reference_config(ref, info)), info)
            with warnings.catch_warnings():  # the heartbeat is run around the trial below, not by study.optimize
                warnings.simplefilter("ignore", UserWarning)
                trial = study.ask()
            with heartbeat(study, trial._trial_id):
                trial.set_user_attr("reference", ref.name)
                time.sleep(settle)
                first = min(_reference_claims(study).get(ref.name, []), default=trial.number)
                if first != trial.number:  # another worker claimed it a moment earlier
                    trial.set_user_attr("withdrawn", f"trial {first} runs this reference")
                    study.tell(trial, state=TrialState.PRUNED)
                    continue
                trial.set_user_attr("config", config.to_dict() if not ref.full_finetune else {"full_finetune": True})
                trial.set_user_attr("hyperparameters", ref.hyperparameters or {})
                proxy = self.trainer.settings(ref.hyperparameters)
                trial.set_user_attr("fidelity", self._fidelity(proxy))
                try:
                    result = self.trainer.run(config, ref.hyperparameters, seed=self.cfg.seed,
                                              full_finetune=ref.full_finetune)
                except TrialFailed as exc:
                    self._fail(study, trial, str(exc))
                    continue
                except KeyboardInterrupt:
                    mark_interrupted(study, trial)
                    raise
                measured = result.to_dict()
                measured["params_pct"] = 100.0 * result.params / info.base_params
                trial.set_user_attr("measured", measured)
                study.tell(trial, [float(result.objectives()[o.name]) for o in self.objectives])
            logger.info("reference %-32s %s  %.1fs", ref.name, " ".join(
                f"{o.name}={format_value(o.name, result.objectives()[o.name])}" for o in self.objectives),
                result.seconds)
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

    def _fidelity(self, proxy) -> str:
        return f"proxy: {min(proxy.train_examples, len(self.trainer.train))} examples x {proxy.epochs:g} epoch(s)"

    # ------------------------------------------------------------------ results
    def trials(self, study: optuna.Study | None = None) -> list[TrialRecord]:
        study = study or self.load()
        names = study.user_attrs.get("objectives") or [o.name for o in self.objectives]
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
        study = study or self.load()
        done = [r for r in self.trials(study) if r.state == "COMPLETE"]
        if not done:
            return []
        names = list(done[0].values)
        mask = pareto_mask(np.array([[r.values[n] for n in names] for r in done]), self.directions_of(names))
        front = [r for r, keep in zip(done, mask) if keep]
        return sorted(front, key=lambda r: -self._score_sign * r.values.get("score", 0.0))

    def trial(self, number: int, study: optuna.Study | None = None) -> TrialRecord:
        for r in self.trials(study):
            if r.number == number:
                return r
        raise StorageError(f"trial {number} does not exist in study '{self.cfg.name}'",
                           "see 'autopeft pareto STUDY' for trial numbers")

    def pick(self, rule: str) -> TrialRecord:
        """The completed trial chosen by ``rule``: knee | max-score | 'params<=N' | 'memory<=N' (see pareto.pick)."""
        from .export import pick_trial

        return pick_trial(self, rule)

    def export(self, number: int, directory: str | Path, train: bool = False) -> Path:
        """Write the recipe and adapter config of trial ``number`` to ``directory``; with ``train``, train it at
        full fidelity and save the weights too (see export.py)."""
        from .export import export_trial

        return export_trial(self, self.trial(number), Path(directory), train=train)


def _mean_sd(scores: list[float]) -> dict[str, Any]:
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


def with_score_direction(objectives: list[Objective], cfg: StudyConfig) -> list[Objective]:
    """The objectives with the score's direction following the task's metric (loss and perplexity: minimise)."""
    from dataclasses import replace

    from .causal_lm import score_direction

    direction = score_direction(cfg.task.type, cfg.task.metric)
    return [replace(o, direction=direction) if o.name == "score" else o for o in objectives]


def _reference_claims(study: optuna.Study) -> dict[str, list[int]]:
    """Reference name -> numbers of the trials that have it done or are training it.

    Done means completed, or failed for a reason of its own (a NaN loss would fail again); a reference whose
    worker was lost is free to be trained again.
    """
    claims: dict[str, list[int]] = {}
    for t in study.get_trials(deepcopy=False):
        ref = t.user_attrs.get("reference")
        lost = t.state == TrialState.FAIL and str(t.user_attrs.get("fail_reason", "")).startswith("worker lost")
        if ref and (t.state in (TrialState.COMPLETE, TrialState.RUNNING) or t.state == TrialState.FAIL and not lost):
            claims.setdefault(ref, []).append(t.number)
    return claims
