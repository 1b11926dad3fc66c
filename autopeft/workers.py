"""Many workers on one storage: which trials count toward the budget, stale and interrupted trials, and
``K`` local worker processes.

A trial *counts* toward ``budget.trials`` when it is running or finished, unless it says nothing about its
configuration: skipped as over budget (``infeasible``), stopped by Ctrl-C (``interrupted``), asked after the
budget was already met by other workers (``surplus``), proposed while another worker held the same
configuration (``duplicate``: two samplers that ran at once cannot see each other's proposal), or replaced by a
retry. Workers stop when the counted trials reach the target, so K workers end at exactly N trials.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from . import errors
from .logs import setup_logging
from . import optuna_private as private
from .space import identity_of
from .storage import lost_storage_error, storage_lost

if TYPE_CHECKING:
    from .optimizers.encoding import SpaceLike

logger = logging.getLogger(__name__)

#: user attributes that keep a finished trial out of the count toward the target
UNCOUNTED = ("infeasible", "interrupted", "surplus", "duplicate")
#: seconds between looks at the storage while the last trials run in other workers
POLL_S = 1.0
#: seconds the parent of local workers waits for them to act on a Ctrl-C before passing it on
INTERRUPT_GRACE_S = 2.0


def worker_name() -> str:
    """``host:pid`` — recorded on every trial a worker runs; its hash keeps the worker's sampler seed apart."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Progress:
    """The counted trials of a study: how many finished, and which are running."""

    finished: int
    running_numbers: tuple[int, ...]

    @property
    def running(self) -> int:
        return len(self.running_numbers)


def replaced_numbers(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the trials a retry has replaced."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", ())}


def trial_kind(trial: FrozenTrial, replaced: set[int]) -> str:
    """complete | fail | pruned | running | waiting, or why it does not count: one of UNCOUNTED | retried."""
    reason = next((k for k in UNCOUNTED if trial.user_attrs.get(k)), None)
    return reason or ("retried" if trial.number in replaced else trial.state.name.lower())


def counted_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The running and finished trials that count toward the target (see the module docstring)."""
    replaced = replaced_numbers(trials)
    return [t for t in trials if trial_kind(t, replaced) in ("complete", "fail", "pruned", "running")]


def progress(study: optuna.Study) -> Progress:
    counted = counted_trials(study.get_trials(deepcopy=False))
    running = tuple(t.number for t in counted if t.state == TrialState.RUNNING)
    return Progress(len(counted) - len(running), running)


def is_surplus(study: optuna.Study, number: int, target: int) -> bool:
    """True when ``target`` counted trials were asked before trial ``number`` (two workers raced for the last one)."""
    return sum(1 for t in counted_trials(study.get_trials(deepcopy=False)) if t.number < number) >= target


def duplicate_of(study: optuna.Study, trial: optuna.Trial, space: "SpaceLike | None" = None) -> int | None:
    """The number of another trial, counted or waiting to run, with ``trial``'s configuration.

    With ``space``, the same configuration is the same :func:`autopeft.space.identity_of` (parameters that do not
    matter and float noise ignored: what the optimizers count as a known point), over the same parameter names.
    Without it, only exactly equal parameters are the same configuration.
    """
    trials = study.get_trials(deepcopy=False)
    others = [t for t in counted_trials(trials) + [t for t in trials if t.state == TrialState.WAITING]
              if t.number != trial.number]
    params = trial.params
    if space is None:
        return next((t.number for t in others if t.params == params), None)
    key = identity_of(space, params)
    return next((t.number for t in others if t.params.keys() == params.keys() and identity_of(space, t.params) == key),
                None)


def requeue(study: optuna.Study, trial: FrozenTrial, max_retry: int | None) -> bool:
    """Enqueue ``trial``'s configuration again (up to ``max_retry`` times); the next worker to ask runs it.

    Returns whether it was enqueued. The retry records the trial it replaces, which then no longer counts.
    """
    history = trial.system_attrs.get("retry_history", [])
    if max_retry is not None and len(history) >= max_retry:
        return False
    clean = copy.deepcopy(trial)
    clean.user_attrs = {}  # the retry starts without the failure reason or measurements of the failed run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=None)(study, clean)
    return True


class StaleTrials:
    """Finds running trials whose worker died, marks them failed with the reason and retries them.

    Optuna calls a trial stale once its heartbeat is ``grace`` s old, but never one without any heartbeat: a
    worker killed between creating a trial and its first beat leaves such a trial. The first worker to see one
    gives it a heartbeat, so the same grace applies to it, whichever worker looks next. Safe with many workers
    looking at once: only the one whose state change wins retries a trial.
    """

    def __init__(self, grace: int, retries: int):
        self.grace = grace
        self.retries = retries

    def check(self, study: optuna.Study) -> list[int]:
        """Fail (and retry) the stale trials of ``study`` now; returns their numbers."""
        storage = private.storage_of(study)
        for trial_id in private.never_beaten_ids(study):
            storage.record_heartbeat(trial_id)  # a live worker's own beats overwrite it
        failed = []
        for trial_id in private.stale_trial_ids(study):
            try:
                storage.set_trial_user_attr(trial_id, "fail_reason", f"worker lost: no heartbeat for {self.grace}s "
                                                                     "(killed, crashed or disconnected)")
                if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker got there first
            trial = storage.get_trial(trial_id)
            retried = requeue(study, trial, self.retries)
            logger.warning("trial %d: its worker %s stopped sending heartbeats; marked failed%s", trial.number,
                           trial.user_attrs.get("worker", "(unknown)"), ", will run again" if retried else "")
            failed.append(trial.number)
        return failed


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial_id: int) -> Iterator[None]:
    """Beat for trial ``trial_id`` every ``heartbeat`` s while the block runs (other workers fail the trial if we
    die). Like optuna's heartbeat thread, but a storage that stops answering neither ends the beats nor prints a
    thread's traceback: it beats again when the database is back, and the trial itself reports the lost storage."""
    storage = private.storage_of(study)
    interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
    if interval is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)
            except Exception as exc:
                if not storage_lost(exc):
                    raise
                logger.debug("heartbeat of trial id %d not recorded: %s", trial_id, type(exc).__name__)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Hold off a second Ctrl-C (or SIGTERM) while a trial is being marked, so it is never left half-written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Pending:
    """The first Ctrl-C/SIGTERM that came inside ``interrupts_deferred``; ``deliver()`` acts on it now."""

    def __init__(self):
        self.signum: int | None = None
        self.handler = None

    def deliver(self) -> None:
        """Run the signal's own handler (Ctrl-C: raise KeyboardInterrupt), if a signal came."""
        if self.signum is not None:
            signum, self.signum = self.signum, None
            self.handler(signum, None)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[_Pending]:
    """Hold a Ctrl-C or SIGTERM back while a trial is created, so none lands between its creation and the code
    that marks it; ``deliver()`` on what it yields acts on the signal then (or does nothing)."""
    pending = _Pending()
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return

    def hold(signum, frame):
        pending.signum = pending.signum or signum

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield pending
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending.signum is not None:
            pending.handler = previous[pending.signum]
            if not callable(pending.handler):  # SIG_IGN: nothing to do; SIG_DFL (or unknown): as if not held back
                signum, pending.signum = pending.signum, None
                if pending.handler != signal.SIG_IGN:
                    signal.raise_signal(signum)


def mark_interrupted(study: optuna.Study, trial: optuna.Trial) -> None:
    """Record a Ctrl-C'd trial as failed ('interrupted'), out of the count, and enqueue it to run on resume."""
    with sigint_ignored():
        frozen = private.storage_of(study).get_trial(private.trial_id(trial))
        if frozen.state != TrialState.RUNNING:
            return  # it was told just before the interrupt: nothing is lost
        trial.set_user_attr("fail_reason", "interrupted (Ctrl-C); runs again on resume")
        trial.set_user_attr("interrupted", True)
        study.tell(trial, state=TrialState.FAIL)
        if frozen.params:
            requeue(study, frozen, max_retry=None)


def mark_uncounted(study: optuna.Study, trial: optuna.Trial, kind: str, reason: str) -> None:
    """Close ``trial`` without running it, out of the count; ``kind`` is one of UNCOUNTED."""
    trial.set_user_attr(kind, True)
    trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=TrialState.PRUNED)


# ---------------------------------------------------------------------------------------------- local workers
def run_local_workers(work: Callable[[str], None], storage: str, workers: int, threads: int | None = None) -> None:
    """Run ``work(name)`` in ``workers`` processes and wait for them (``work`` is picklable: the study passes its
    own entry point, e.g. ``partial(study.work, cfg, storage, target, timeout)``).

    Each gets ``threads`` torch threads (default ``cores // workers``). A worker that dies leaves its trial to the
    heartbeat check of the others; an input error in any worker is raised here; a Ctrl-C stops all of them (each
    marks its running trial) and is raised as KeyboardInterrupt. ``storage`` names the storage in a lost-storage
    error.
    """
    # fork would copy torch's thread pools and open DB connections; a forkserver imports torch & co. once for all
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["autopeft.study", "autopeft.proxy"])
    results = ctx.SimpleQueue()
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    level = logging.getLogger("autopeft").getEffectiveLevel()
    base = worker_name()
    procs = [ctx.Process(target=_worker_main, name=f"{base}/{i}",
                         args=(work, storage, f"{base}/{i}", threads, level, results))
             for i in range(workers)]
    logger.info("starting %d workers with %d torch thread(s) each", workers, threads)
    for p in procs:
        p.start()
    try:
        _join(procs)
    except KeyboardInterrupt:
        # a terminal's Ctrl-C reaches the workers directly; a SIGINT sent to this process alone is passed on
        _join(procs, INTERRUPT_GRACE_S)
        with sigint_ignored():
            for p in procs:
                if _alive(p):
                    os.kill(p.pid, signal.SIGINT)
            _join(procs)
        raise
    problems = []
    while not results.empty():
        problems.append(results.get())
    if problems:
        kind, problem, fix, where = problems[0]
        raise getattr(errors, kind, errors.AutoPEFTError)(problem, fix, where)
    if any(p.exitcode == 143 for p in procs):
        raise errors.Terminated
    if any(p.exitcode == 130 for p in procs):
        raise KeyboardInterrupt
    for p in procs:
        if p.exitcode != 0:
            logger.warning("worker %s exited with code %s; a trial it left running is retried by the next run",
                           p.name, p.exitcode)


def _alive(p: multiprocessing.Process) -> bool:
    """Whether worker ``p`` still runs. Unlike ``p.is_alive()``, right also when the forkserver that reports its
    exit was killed (a SIGTERM to the whole process group): ``p`` then seems to have exited with code 255 at once."""
    if p.is_alive():
        return True
    if p.exitcode != 255:
        return False
    try:
        with open(f"/proc/{p.pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False  # gone (or no /proc to tell)
    return state not in ("Z", "X")  # a zombie has exited


def _join(procs: list[multiprocessing.Process], timeout: float | None = None) -> None:
    """Wait for the workers to exit (at most ``timeout`` s), each marking its interrupted trial first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for p in procs:
        p.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    while any(_alive(p) for p in procs) and (deadline is None or time.monotonic() < deadline):
        time.sleep(0.1)


def _worker_main(work: Callable[[str], None], storage: str, name: str, threads: int, level: int, results) -> None:
    """Entry point of one local worker process (forked from the forkserver)."""
    setup_logging(level <= logging.DEBUG, prefix=f"[{name.rsplit('/', 1)[-1]}] ")
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGTERM, errors.raise_terminated)  # a SIGTERM to the process group marks the trials too
    errors.keep_lost_interrupts()
    try:
        work(name)
    except errors.AutoPEFTError as err:
        results.put((type(err).__name__, err.problem, err.fix, err.where))
        raise SystemExit(2) from None
    except Exception as exc:
        if not storage_lost(exc):
            raise  # a bug: its traceback
        logger.debug("storage error", exc_info=True)
        err = lost_storage_error(storage, exc)
        results.put((type(err).__name__, err.problem, err.fix, err.where))
        raise SystemExit(2) from None
    except KeyboardInterrupt as exc:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)  # the parent may pass the same Ctrl-C on
        raise SystemExit(143 if isinstance(exc, errors.Terminated) else 130) from None
