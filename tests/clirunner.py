"""Run ``autopeft`` commands in real child processes, fast.

Each command runs in its own process with its own stdout/stderr files, exit code and signals, exactly as from a
shell, but the process is forked from a multiprocessing *forkserver* that imported autopeft, torch and
transformers once: a bad-input case costs ~0.5 s instead of ~6 s of imports. Tests that kill or interrupt
commands (chaos, Ctrl-C, workers) use the pid of the returned handle.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

_CTX = multiprocessing.get_context("forkserver")
_CTX.set_forkserver_preload(["autopeft.cli", "autopeft.study", "autopeft.proxy", "autopeft.export",
                             "transformers.models.bert.modeling_bert", "peft"])


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


class Command:
    """A running ``autopeft ...``; ``wait()`` gives its Result."""

    def __init__(self, args: list[str], env: dict[str, str | None] | None = None, cwd: str | Path | None = None):
        folder = Path(tempfile.mkdtemp(prefix="autopeft-cli-"))
        self._out, self._err = folder / "stdout", folder / "stderr"
        self.process = _CTX.Process(target=_child, args=(list(args), str(self._out), str(self._err), env or {},
                                                        str(cwd) if cwd else None))
        self.process.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, sig: int = signal.SIGINT) -> None:
        os.kill(self.pid, sig)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Signal the command and every process it started (like a crash of the machine, for SIGKILL)."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:  # it has not made its group yet (or is gone)
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float = 600) -> Result:
        self.process.join(timeout)
        if self.process.is_alive():
            self.kill_group()
            self.process.join()
            raise TimeoutError(f"autopeft did not finish in {timeout}s: {self._err.read_text()[-2000:]}")
        read = lambda path: path.read_text() if path.exists() else ""  # noqa: E731  (died before opening it)
        result = Result(self.process.exitcode, read(self._out), read(self._err))
        shutil.rmtree(self._out.parent, ignore_errors=True)
        return result


def run_cli(*args: str, env: dict[str, str | None] | None = None, cwd: str | Path | None = None,
            timeout: float = 600, fresh: bool = False) -> Result:
    """``autopeft ARGS`` in a fresh process; returns its exit code, stdout and stderr.

    ``fresh`` starts a new interpreter instead (slow): for environment variables read at import time
    (``HF_HUB_OFFLINE``), which a process forked from the warm server would not see.
    """
    if not fresh:
        return Command(list(args), env, cwd).wait(timeout)
    import subprocess

    full_env = {**os.environ, **{k: v for k, v in (env or {}).items() if v is not None}}
    for key in [k for k, v in (env or {}).items() if v is None]:
        full_env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "autopeft.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _child(args: list[str], out: str, err: str, env: dict[str, str | None], cwd: str | None) -> None:
    # the real streams of a fresh process: fd 1 and 2 go to files, so stray prints and log lines are seen too
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a shell, whatever the forkserver inherited
    os.setsid()  # its own process group, so kill_group() reaches the workers it starts
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if cwd:
        os.chdir(cwd)
    sys.argv = ["autopeft", *args]
    from autopeft.cli import main

    code = main(args)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def stored_trials(storage: str, name: str = "tiny") -> list:
    """The trials of study ``name`` as they are in ``storage`` now (empty while it does not exist yet)."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except Exception:  # not created yet, or the database is being created by the command under test
        return []


def wait_until(predicate, timeout: float = 120, every: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; that value, or TimeoutError."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} not reached in {timeout}s")


def training_trial(storage: str, name: str = "tiny"):
    """A trial that is running and past its set-up (its proxy settings are stored), else None."""
    return next((t for t in stored_trials(storage, name)
                 if t.state.name == "RUNNING" and "proxy" in t.user_attrs), None)
