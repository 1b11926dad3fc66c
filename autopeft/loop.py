"""The trial loop: ask the sampler, run the candidate through the proxy at its rungs, tell the storage.

:class:`TrialRunner` holds what a run of trials needs (the study's settings, objectives, trainer, space and hard
budgets) and runs the three loops a study has: the search (:meth:`TrialRunner.search`), the hand-made references
(:meth:`TrialRunner.references`) and the full-fidelity refinement of the front (:meth:`TrialRunner.refine`).
It reads and writes only the Optuna study it is given; :class:`autopeft.study.Study` opens the storage.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

from .adapters import PEFTConfig
from .candidate import Budget, Candidate, random_feasible
from .config import StudyConfig
from .errors import AutoPEFTError, OverBudget, TrialFailed
from .objectives import Objective, format_value
from .optuna_private import suggest, trial_id
from .records import TrialRecord, format_duration, front_of, mean_sd, score_sign, trial_records
from .references import reference_config, references_for
from .rungs import noise_margin, promote
from .space import SearchSpace
from .storage import storage_lost
from .workers import (POLL_S, StaleTrials, duplicate_of, heartbeat, interrupts_deferred, is_surplus,
                      mark_interrupted, mark_uncounted, progress)

logger = logging.getLogger(__name__)

#: consecutive over-budget proposals after which a random feasible config is enqueued instead
MAX_INFEASIBLE_STREAK = 5
#: consecutive proposals of a configuration another trial holds after which the sampler gets its way
MAX_DUPLICATE_STREAK = 5


class TrialRunner:
    """Runs trials of one study: search, references and refinement, each recorded in the Optuna study given."""

    def __init__(self, cfg: StudyConfig, objectives: Sequence[Objective], trainer, space: SearchSpace,
                 budget: Budget):
        self.cfg = cfg
        self.objectives = list(objectives)
        self.names = [o.name for o in self.objectives]
        self.trainer = trainer
        self.space = space
        self.budget = budget

    # ------------------------------------------------------------------ search
    def search(self, study: optuna.Study, target: int, timeout: float | None, seed: int, worker: str | None,
               stale: StaleTrials) -> None:
        """Ask, run and tell trials until ``study`` holds ``target`` counted ones or ``timeout`` seconds pass."""
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
                    beating.enter_context(heartbeat(study, trial_id(trial)))
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
                    study.enqueue_trial(random_feasible(self.space, self.trainer.info, self.budget, rng))
                    infeasible_streak = 0
                continue
            infeasible_streak = 0
            durations.append(study.trials[trial.number].duration.total_seconds())
            self._log_progress(study, trial.number, progress(study).finished, target, durations)

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
            suggest(trial, name, distribution)  # what study.ask(distributions) does, after the heartbeat started
        twin = None if duplicate_ok else duplicate_of(study, trial, self.space)
        if twin is not None:
            mark_uncounted(study, trial, "duplicate", f"not run: trial {twin} holds the same configuration")
            return "duplicate"
        return self._run_trial(study, trial)

    def _run_trial(self, study: optuna.Study, trial: optuna.Trial) -> str:
        """Decode, check budgets, train, tell. Returns 'complete' | 'failed' | 'pruned' | 'infeasible' (the estimate
        breaks a budget: nothing ran, the trial does not count) | 'over_budget' (the measurement did: it counts)."""
        candidate = Candidate.decode(self.space, self.trainer.info, trial.params)
        config, hparams = candidate.config, candidate.hparams
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("hyperparameters", hparams)
        reason = self.budget.violation(candidate)
        if reason:
            trial.set_user_attr("fail_reason", reason)
            trial.set_user_attr("infeasible", True)
            study.tell(trial, state=TrialState.PRUNED)
            logger.debug("trial %d skipped: %s", trial.number, reason)
            return "infeasible"
        proxy = self.trainer.settings(hparams)
        trial.set_user_attr("proxy", proxy.model_dump(mode="json"))
        trial.set_user_attr("fidelity", self.fidelity(proxy))
        rungs = sorted(r for r in proxy.rungs if r < min(proxy.train_examples, len(self.trainer.train)) * proxy.epochs)
        reached: dict[str, float] = {}

        def at_rung(n: int, score: float) -> bool:
            reached[str(n)] = score
            trial.set_user_attr("rungs", reached)  # peers read it as soon as it is written
            return promote(self._rung_vector(score, candidate), self._rung_peers(study, trial.number, str(n)),
                           [o.direction for o in self.objectives], proxy.reduction_factor, self.names.index("score"),
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
                estimate = self.trainer.estimate_memory(config, candidate.params, proxy)
                trial.set_user_attr("measured", {"memory": exc.measured.peak, "memory_estimate": estimate,
                                                 "memory_breakdown": exc.measured.breakdown})
                self.budget.learn(exc.measured.peak, estimate)
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
        measured["params_pct"] = 100.0 * result.params / self.trainer.info.base_params
        trial.set_user_attr("measured", measured)
        if result.memory is not None:
            self.budget.learn(result.memory, result.memory_estimate)
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
        if score_sign(self.objectives) * (result.score - result.chance) <= 1e-9:
            logger.warning("trial %d scored %.4f, at chance level (%.4f): the proxy may be too short or the "
                           "learning rate off", trial.number, result.score, result.chance)
        values = [result.objectives()[o.name] for o in self.objectives]
        if any(v is None or not math.isfinite(v) for v in values):
            return self._fail(study, trial, f"objective values not finite: {values}")
        study.tell(trial, [float(v) for v in values])
        return "complete"

    # ------------------------------------------------------------------ rungs
    def _rung_margin(self, score: float, proxy) -> float:
        """How much better another trial's rung score must be to stop this one: ``proxy.rung_margin``, else the
        sampling noise of a difference of two scores on the validation rows."""
        if proxy.rung_margin is not None:
            return proxy.rung_margin
        return noise_margin(self.trainer.metric_name, score, len(self.trainer.validation))

    def _rung_vector(self, score: float, candidate: Candidate) -> list[float]:
        """Objective vector at a rung: the rung's score, the rest as known before training
        (measured memory stands in as its analytic estimate, since the peers' measurements differ in time)."""
        known = candidate.known(self.trainer)
        values = {**known, "score": score, "memory": known["memory_estimate"]}
        return [values[n] for n in self.names]

    def _rung_peers(self, study: optuna.Study, number: int, rung: str) -> list[list[float]]:
        """Objective vectors at ``rung`` of the other trials that reached it (score, then known objectives)."""
        peers = []
        for t in study.get_trials(deepcopy=False):
            score = t.user_attrs.get("rungs", {}).get(rung)
            if t.number == number or score is None:
                continue
            peers.append(self._rung_vector(score, Candidate.stored(t.user_attrs, self.trainer.info)))
        return peers

    # ------------------------------------------------------------------ bookkeeping
    def _fail(self, study: optuna.Study, trial: optuna.Trial, reason: str) -> str:
        trial.set_user_attr("fail_reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        logger.warning("trial %d failed: %s", trial.number, reason)
        return "failed"

    def fidelity(self, proxy) -> str:
        """What a proxy score was trained on, as the records and tables name it."""
        return f"proxy: {min(proxy.train_examples, len(self.trainer.train))} examples x {proxy.epochs:g} epoch(s)"

    def _log_progress(self, study: optuna.Study, number: int, done: int, target: int, durations: list[float]) -> None:
        t = study.trials[number]
        records = trial_records(study, self.names)
        front = front_of(records, self.objectives)
        sign = score_sign(self.objectives)
        best = sign * max((sign * r.values["score"] for r in records if r.state == "COMPLETE"),
                          default=float("nan"))
        eta = np.mean(durations) * (target - done)
        if t.state == TrialState.COMPLETE:
            vals = " ".join(f"{k}={format_value(k, v)}" for k, v in zip(self.names, t.values))
        else:
            vals = f"{t.state.name.lower()} ({t.user_attrs.get('fail_reason', '')})"
        logger.info("trial %d/%d (#%d) %s  %.1fs | Pareto %d | best score %.4f | ETA %s", done, target, number,
                    vals, durations[-1], len(front), best, format_duration(eta))

    # ------------------------------------------------------------------ references
    def references(self, study: optuna.Study, settle: float = 0.0) -> None:
        """Train the hand-made reference configs not yet stored in ``study`` (at the proxy fidelity).

        Safe with several workers starting together: a reference is claimed by a running trial (kept alive by
        heartbeats) before it is trained; ``settle`` seconds later (time for simultaneous claims to land) the
        lowest-numbered claim trains it and the others withdraw. A claim whose worker died is failed by the
        stale check and trained again by whoever looks next.
        """
        stale = StaleTrials(self.cfg.recovery.grace, retries=0)
        info = self.trainer.info
        for ref in references_for(info, self.cfg.full_finetune_reference):
            stale.check(study)
            if ref.name in reference_claims(study):
                continue
            config = Candidate.of(PEFTConfig.from_dict(reference_config(ref, info)), None, info).config
            with warnings.catch_warnings():  # the heartbeat is run around the trial below, not by study.optimize
                warnings.simplefilter("ignore", UserWarning)
                trial = study.ask()
            with heartbeat(study, trial_id(trial)):
                trial.set_user_attr("reference", ref.name)
                time.sleep(settle)
                first = min(reference_claims(study).get(ref.name, []), default=trial.number)
                if first != trial.number:  # another worker claimed it a moment earlier
                    trial.set_user_attr("withdrawn", f"trial {first} runs this reference")
                    study.tell(trial, state=TrialState.PRUNED)
                    continue
                trial.set_user_attr("config", config.to_dict() if not ref.full_finetune else {"full_finetune": True})
                trial.set_user_attr("hyperparameters", ref.hyperparameters or {})
                proxy = self.trainer.settings(ref.hyperparameters)
                trial.set_user_attr("fidelity", self.fidelity(proxy))
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
                study.tell(trial, [float(result.objectives()[n]) for n in self.names])
            logger.info("reference %-32s %s  %.1fs", ref.name, " ".join(
                f"{n}={format_value(n, result.objectives()[n])}" for n in self.names), result.seconds)

    # ------------------------------------------------------------------ refinement
    def refine(self, study: optuna.Study, front: list[TrialRecord], seeds: int) -> None:
        """Re-train every point of ``front`` at full fidelity (``train`` block) with ``seeds`` seeds.

        Stores mean ± sd of the score per point in the study (``refined_<trial>``); already refined points
        with as many seeds are skipped, so an interrupted refinement resumes.
        """
        train = self.cfg.train
        for i, record in enumerate(front, 1):
            done = record.attrs.get("refined", {})
            if len(done.get("scores", [])) >= seeds:
                continue
            config = Candidate.of(PEFTConfig.from_dict(record.config), None, self.trainer.info).config
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
            summary: dict[str, Any] = {**mean_sd(scores),
                                       "fidelity": f"full: {min(examples, len(self.trainer.train))} examples x "
                                                   f"{proxy.epochs:g} epoch(s), {len(scores)} seeds"}
            if test_scores:
                summary["test"] = {**mean_sd(test_scores), "rows": len(test)}
            study.set_user_attr(f"refined_{record.number}", summary)
            logger.info("refined %d/%d: trial %d validation score %.4f ± %.4f%s (proxy %.4f)", i, len(front),
                        record.number, summary["mean"], summary["sd"],
                        f", test score {summary['test']['mean']:.4f} ± {summary['test']['sd']:.4f}"
                        if test_scores else "", record.values.get("score", float("nan")))


def reference_claims(study: optuna.Study) -> dict[str, list[int]]:
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
