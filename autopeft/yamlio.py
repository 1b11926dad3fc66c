"""Safe YAML loading that remembers the line of every key, for errors that point at file:line."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


class _Loader(yaml.SafeLoader):
    """SafeLoader that never constructs Python objects (YAML names registered kinds, not imports)."""


def load_yaml(path: str | Path, what: str = "study file") -> tuple[Any, dict[tuple, int]]:
    """Return (data, lines) where ``lines`` maps key paths (tuples) to 1-based line numbers."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist", "check the path (it is relative to the current directory)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} '{path}' is not UTF-8 text", "save it as UTF-8") from None
    return parse_yaml(text, str(path), what)


def parse_yaml(text: str, source: str, what: str = "study file") -> tuple[Any, dict[tuple, int]]:
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        tag = re.search(r"constructor for the tag '([^']+)'", problem)
        if isinstance(exc, yaml.constructor.ConstructorError) and tag:
            raise ConfigError(f"YAML tag '{tag[1].replace('tag:yaml.org,2002:', '!!')}' is not allowed",
                              "a study file holds plain values and names registered adapter kinds, optimizers and "
                              "objectives, never Python objects or import paths", where) from None
        raise ConfigError(f"malformed YAML ({problem})", "fix the indentation/quoting on that line", where) from None
    if data is None:
        raise ConfigError(f"{what} is empty", "see studies/quickstart.yaml for a complete example", source)
    lines: dict[tuple, int] = {}
    if node is not None:
        _walk(node, (), lines, source)
    return data, lines


def _walk(node: yaml.Node, path: tuple, lines: dict[tuple, int], source: str = "<yaml>") -> None:
    """Record the line of every key path under ``node``; a key given twice in one mapping is a ConfigError
    (PyYAML would silently keep the later value)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                if key.value in seen:
                    name = ".".join(str(k) for k in path + (key.value,))
                    raise ConfigError(f"duplicate key '{name}' on lines {seen[key.value]} and {line}",
                                      "keep one of them (YAML would silently use the later one)",
                                      f"{source}:{line}")
                seen[key.value] = line
            sub = path + (key.value,)
            lines[sub] = line
            _walk(value, sub, lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            _walk(value, path + (i,), lines, source)


def dump_yaml(data: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None), encoding="utf-8")
