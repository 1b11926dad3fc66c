"""autopeft: multi-objective search for parameter-efficient fine-tuning configurations."""
from __future__ import annotations

__version__ = "0.1.0"

import os as _os

# torch's profiler (used to measure memory) prints two lines per use unless told otherwise; must precede torch
_os.environ.setdefault("KINETO_LOG_LEVEL", "99")

from .adapters import PEFTConfig, apply_adapters, count_adapter_params  # noqa: E402
from .adapters.io import load_adapters, save_adapters  # noqa: E402
from .errors import AutoPEFTError  # noqa: E402
from .study import Study  # noqa: E402

__all__ = ["Study", "PEFTConfig", "apply_adapters", "count_adapter_params", "load_adapters", "save_adapters",
           "AutoPEFTError", "__version__"]
