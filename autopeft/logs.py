"""What the command line shows: autopeft's own log lines; other libraries' warnings and logs only with ``-v``.

Third-party messages (``torch.jit.script is deprecated``, ``No CUDA runtime is found``, Ax's INFO lines,
transformers' notices) are not the user's business in a normal run. :func:`setup_logging` routes Python
warnings into logging, and one root handler shows a record when it comes from autopeft (or is an error), or
when ``-v`` asked for everything. Libraries that print through handlers of their own are made to propagate to
that root handler instead (:func:`adopt_library_loggers`, called again after the imports that add such handlers).
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Callable

#: set by setup_logging: adopt_library_loggers does nothing for programs that configure logging themselves
_configured = False
#: the handler setup_logging installed (it clears the live line before each record)
_handler: "_LiveAwareHandler | None" = None
#: seconds between redraws of the live line
LIVE_EVERY_S = 0.5


class _LiveAwareHandler(logging.StreamHandler):
    """A stderr handler that first wipes the live progress line (see :func:`live_progress`) off the terminal."""

    live_shown = False
    live_ok = True

    def emit(self, record: logging.LogRecord) -> None:
        if self.live_shown:
            self.stream.write("\r\033[K")
            self.live_shown = False
        super().emit(record)

    def show_live(self, text: str) -> None:
        self.acquire()
        try:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self.live_shown = True
        finally:
            self.release()


class _OwnOrVerbose(logging.Filter):
    """Pass autopeft's records, any library's errors, and with ``verbose`` everything."""

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose or record.levelno >= logging.ERROR:
            return True
        if record.name == "py.warnings":  # a warnings.warn, formatted "path:line: Category: text": ours are shown
            origin = str(record.args[0] if record.args else record.msg).split(":", 1)[0]
            return f"{os.sep}autopeft{os.sep}" in origin
        return record.name == "autopeft" or record.name.startswith("autopeft.")


def setup_logging(verbose: bool = False, prefix: str = "") -> None:
    """Log lines of a command (or a local worker, ``prefix`` naming it) on stderr: INFO and up from autopeft,
    DEBUG and everything from every library with ``verbose``."""
    global _configured
    root = logging.getLogger()
    if any(not getattr(h, "autopeft", False) for h in root.handlers):
        return  # the host program (a test runner, a notebook) configured logging: like basicConfig, leave it
    for old in list(root.handlers):
        root.removeHandler(old)
    global _handler
    handler = _handler = _LiveAwareHandler(sys.stderr)
    handler.autopeft = True
    handler.live_ok = not prefix  # several local workers share one terminal: plain lines only
    handler.setFormatter(logging.Formatter(f"{prefix}%(message)s"))
    handler.addFilter(_OwnOrVerbose(verbose))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.captureWarnings(True)
    _configured = True
    adopt_library_loggers()


def adopt_library_loggers() -> None:
    """Make libraries that print through their own stream handlers (optuna, transformers, Ax, datasets, ...)
    send their records to the root handler instead, where :class:`_OwnOrVerbose` decides; also turns off
    their progress bars. Cheap; call it again after importing such a library."""
    if not _configured:
        return
    for name, lg in list(logging.root.manager.loggerDict.items()):
        if not isinstance(lg, logging.Logger) or name == "autopeft" or name.startswith("autopeft."):
            continue
        streams = [h for h in lg.handlers if type(h) is logging.StreamHandler]
        for h in streams:
            lg.removeHandler(h)
        if streams:
            lg.propagate = True
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()


def live_progress(label: str = "training") -> "Callable[[int, int, float, float], None] | None":
    """A step callback (see ProxyTrainer.on_step) that keeps one live line on a terminal — step, loss, seconds
    left — redrawn at most every LIVE_EVERY_S and wiped before the next log line; None when stderr is not a
    terminal (piped output gets the plain log lines only) or the command line did not set up logging."""
    handler = _handler
    if handler is None or not handler.live_ok or not getattr(handler.stream, "isatty", lambda: False)():
        return None
    last = [0.0]

    def show(step: int, total: int, loss: float, elapsed: float) -> None:
        if elapsed - last[0] < LIVE_EVERY_S and step < total:
            return
        last[0] = elapsed
        left = elapsed / step * (total - step) if step else 0.0
        handler.show_live(f"  {label}: step {step}/{total}, loss {loss:.4f}, {left:.0f}s left")

    return show
