"""Errors that reach the user as one line (exit code 2) instead of a traceback."""
from __future__ import annotations

import difflib
import os
import signal
import sys
import threading
from typing import Iterable


class AutoPEFTError(Exception):
    """A problem with the user's input: ``problem`` says what is wrong, ``fix`` what to do.

    The CLI prints ``str(err)`` on one line and exits with code 2.
    """

    def __init__(self, problem: str, fix: str | None = None, where: str | None = None):
        self.problem = problem
        self.fix = fix
        self.where = where
        super().__init__(self._render())

    def _render(self) -> str:
        text = self.problem if not self.where else f"{self.where}: {self.problem}"
        if self.fix:
            text = f"{text} — {self.fix}"
        return " ".join(text.split())  # always one line


def suggest(name: object, choices: Iterable[object], what: str, *, listed: str | Iterable[object] | None = None,
            always: bool = False, cutoff: float = 0.6) -> str:
    """The fix for an unknown ``name``: "did you mean 'x'?" when one of ``choices`` is close to it, else
    "<what>: a, b, c", which lists ``listed`` (names, or a ready text; by default the choices, in their order).
    With ``always`` the list follows the guess too: "did you mean 'x'? <what>: a, b, c". ``cutoff`` is difflib's
    (0.6 its default)."""
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=cutoff)
    listed = choices if listed is None else listed
    listing = f"{what}: {listed if isinstance(listed, str) else ', '.join(map(str, listed))}"
    if not close:
        return listing
    return f"did you mean '{close[0]}'? {listing}" if always else f"did you mean '{close[0]}'?"


class ConfigError(AutoPEFTError):
    """The study YAML, search space or objectives are invalid."""


class DataError(AutoPEFTError):
    """The data files or columns are unusable."""


class ModelError(AutoPEFTError):
    """The model cannot be found or its architecture is not supported."""


class StorageError(AutoPEFTError):
    """The study storage cannot be reached or holds no such study/trial."""


class TrialFailed(Exception):
    """A single trial failed (NaN loss, OOM, ...); the study records the reason and goes on."""


class OverBudget(Exception):
    """A trial's measured value breaks a hard budget (``constraints``): it is recorded as infeasible, with the
    measurement, and never reaches the front. ``measured`` is what was measured (e.g. a ``StepMemory``)."""

    def __init__(self, reason: str, measured=None):
        super().__init__(reason)
        self.reason = reason
        self.measured = measured


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's preemption, ``kill``): stops a study like Ctrl-C (the running trial is marked and
    runs again on resume), but the CLI exits 143 (128 + 15) instead of Ctrl-C's 130."""


def raise_terminated(signum, frame):
    """SIGTERM handler of ``run`` and ``worker`` processes."""
    raise Terminated


def keep_lost_interrupts() -> None:
    """Make a Ctrl-C or SIGTERM that lands in a garbage-collector callback or a destructor stop the process anyway.

    Python cannot raise out of those: it prints "Exception ignored in ..." with a traceback and goes on as if the
    signal never came. This sends the signal again, to be raised where the program can act on it.
    """
    previous = sys.unraisablehook
    if getattr(previous, "keeps_lost_interrupts", False):
        return

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            sig = signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else signal.SIGINT
            # from a thread, a moment later: a signal raised here would run its handler inside this hook
            threading.Timer(0.05, os.kill, (os.getpid(), sig)).start()
            return
        previous(unraisable)

    hook.keeps_lost_interrupts = True
    sys.unraisablehook = hook
