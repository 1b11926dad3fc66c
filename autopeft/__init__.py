"""autopeft: multi-objective search for parameter-efficient fine-tuning configurations."""
from __future__ import annotations

from ._version import __version__

import os as _os

# torch's profiler (used to measure memory) prints two lines per use unless told otherwise; must precede torch
_os.environ.setdefault("KINETO_LOG_LEVEL", "99")

from .errors import AutoPEFTError  # noqa: E402

#: public names -> the module that defines them, imported on first use (PEP 562): the CLI can then say what it
#: is doing before torch, transformers and optuna are loaded, which takes seconds
_LAZY = {"Study": "study", "export_trial": "export", "PEFTConfig": "adapters", "apply_adapters": "adapters",
         "count_adapter_params": "adapters", "load_adapters": "adapters.io", "save_adapters": "adapters.io"}

__all__ = ["Study", "export_trial", "PEFTConfig", "apply_adapters", "count_adapter_params", "load_adapters", "save_adapters",
           "AutoPEFTError", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
