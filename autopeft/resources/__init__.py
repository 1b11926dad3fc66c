"""Files shipped inside the package: search spaces, objective sets and the report page's templates.

They are package data, read through :mod:`importlib.resources`, so they are found wherever autopeft is
installed (a wheel, ``pip install .``, an editable checkout). The checkout's top-level ``search_spaces/``,
``objectives/`` and ``dashboards/`` are links to these folders, not copies.

A study names a shipped file by its bare name (``search_space: lora``, ``objectives: score_params_memory``);
anything else is a path to the user's own file.
"""
from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from ..errors import ConfigError, suggest

#: shipped folders -> what the user calls one of their files
FOLDERS = {"search_spaces": "search space", "objectives": "objective set", "dashboards": "dashboard file"}
_BARE = re.compile(r"^[A-Za-z0-9_\-]+$")


def is_bare_name(text: str) -> bool:
    """A name without a folder or an extension (``lora``), which means a shipped file, not a path."""
    return bool(_BARE.match(text))


def shipped_names(folder: str) -> list[str]:
    """The bare names of the YAML files shipped in ``folder`` (``search_spaces`` or ``objectives``)."""
    root = files(__name__) / folder
    return sorted(p.name.rsplit(".", 1)[0] for p in root.iterdir() if p.name.endswith(".yaml"))


def read_text(folder: str, name: str) -> str:
    """The text of the shipped file ``folder/name`` (e.g. ``dashboards``, ``report.js``)."""
    return (files(__name__) / folder / name).read_text(encoding="utf-8")


def shipped_path(folder: str, name: str) -> Path:
    """The file of the shipped YAML ``name`` (a bare name) in ``folder``; a one-line ConfigError naming the
    shipped ones when there is none."""
    names = shipped_names(folder)
    what = FOLDERS[folder]
    if name not in names:
        raise ConfigError(f"no shipped {what} named '{name}'", suggest(name, names, "shipped", always=True)
                          + f"; or give a path to your own YAML file (e.g. ./{name}.yaml)")
    return Path(str(files(__name__) / folder / f"{name}.yaml"))  # a real file in every unzipped install
