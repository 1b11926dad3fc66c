"""Errors that reach the user as one line (exit code 2) instead of a traceback."""
from __future__ import annotations


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
