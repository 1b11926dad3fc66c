"""Read the train/validation(/test) data of a study, build label ids, tokenise and batch them.

The ``task.data`` block of a study YAML is validated by :class:`~autopeft.config.DataConfig`.
tsv/csv/jsonl files are read by hand rather than with pandas so that every problem
(missing column, short row, bad bytes, unknown label) becomes a one-line
:class:`~autopeft.errors.DataError` that names the file and line. ``dataset:`` reads a Hugging Face
``datasets`` source instead (a ``save_to_disk`` folder, local parquet/csv/json/arrow files, or a hub name),
behind the same column and label options. A validation (or test) split given as a fraction (``20%``, ``0.2``)
is split off the train rows, stratified by label and seeded (``split_seed``).
"""
from __future__ import annotations

import hashlib
import os

import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

from .batches import EncodedSplit, stratified_sample
from .config import DataConfig, Format
from .errors import DataError, suggest

logger = logging.getLogger(__name__)

_BOM = b"\xef\xbb\xbf"


@dataclass
class RawSplit:
    """The raw strings of one split, in file order."""

    texts: list[str]
    pairs: list[str] | None
    labels: list[str]
    #: 1-based line number of each row in its file, for error messages.
    line_numbers: list[int] = field(default_factory=list)
    #: The file the split was read from (as resolved).
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, indices: list[int], source: str | None = None) -> "RawSplit":
        """The rows at ``indices``, in that order (``source`` renames the result)."""
        return RawSplit(texts=[self.texts[i] for i in indices],
                        pairs=None if self.pairs is None else [self.pairs[i] for i in indices],
                        labels=[self.labels[i] for i in indices],
                        line_numbers=[self.line_numbers[i] for i in indices] if self.line_numbers else [],
                        source=source or self.source)


@dataclass
class TaskData:
    """The splits plus the label vocabulary and the numeric labels."""

    train: RawSplit
    validation: RawSplit
    label_names: list[str] | None
    num_labels: int
    train_label_ids: list[int | float]
    validation_label_ids: list[int | float]
    regression: bool
    test: RawSplit | None = None
    test_label_ids: list[int | float] | None = None
    #: where each split's rows come from (recorded with the study)
    splits: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- reading


def resolve_path(path: str, base_dir: Path) -> Path:
    """``path`` itself if absolute, else relative to ``base_dir`` (the study YAML's directory).

    Like ``StudyConfig.resolve``, a relative path missing under ``base_dir`` but present
    under the current directory is taken from there, so both agree on which file is meant.
    """
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    for root in (Path(base_dir), Path.cwd()):
        if (root / p).exists():
            return root / p
    return Path(base_dir) / p


def _decode(raw: bytes, encoding: str, shown: str) -> str:
    # A BOM is stripped whatever the encoding: under latin-1 it would become "ï»¿" in the
    # first header name and the column lookup would fail for no visible reason.
    if raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        byte = raw[err.start : err.start + 1]
        raise DataError(
            f"{shown}:{line}: cannot decode byte 0x{byte.hex()} as {encoding}",
            "set `encoding: latin-1` (or the file's real encoding) in task.data",
        ) from None


def _split_lines(text: str) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based line numbers, line endings removed."""
    # Only \n (and a trailing \r) end a line: str.splitlines would also split on
    # \x0b, \x1c, \u2028 ... which can occur inside real-world text fields.
    for number, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if line.strip():
            yield number, line


def _delimited_rows(
    text: str, delimiter: str, quoting: bool, max_columns: int | None
) -> Iterator[tuple[int, list[str]]]:
    """Rows of a delimited file as (line number, fields)."""
    if not quoting:
        maxsplit = -1 if max_columns is None else max_columns - 1
        for number, line in _split_lines(text):
            yield number, line.split(delimiter, maxsplit)
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=csv.QUOTE_MINIMAL)
    start = 1
    for fields in reader:
        number, start = start, reader.line_num + 1
        if not fields or all(not f.strip() for f in fields):
            continue
        if max_columns is not None and len(fields) > max_columns:
            # Quoted fields lose their quotes here; acceptable for the trailing text column.
            fields = fields[: max_columns - 1] + [delimiter.join(fields[max_columns - 1 :])]
        yield number, fields


def _column_index(
    column: str | int, header: list[str] | None, n_fields: int, shown: str, role: str
) -> int:
    """Turn a column name or index into a field index, or raise a DataError."""
    if isinstance(column, int):
        width = len(header) if header is not None else n_fields
        if column < 0 or column >= width:
            raise DataError(
                f"{role} column index {column} is out of range: {shown} has {width} column(s)",
                f"use an index from 0 to {width - 1}",
            )
        return column
    if header is None:
        if column.isdigit():
            return _column_index(int(column), header, n_fields, shown, role)
        raise DataError(
            f"{role} column {column!r} is a name but {shown} is read without a header",
            f"give a 0-based column index (the file has {n_fields} column(s)) or set `header: true`",
        )
    if column not in header:
        names = ", ".join(repr(h) for h in header)
        hint = " (a single column: is the delimiter or format right?)" if len(header) == 1 else ""
        raise DataError(
            f"{role} column {column!r} not found in {shown}",
            f"available columns: {names}{hint}",
        )
    return header.index(column)


def _read_delimited(
    cfg: DataConfig, fmt: Format, text: str, shown: str, limit: int | None
) -> RawSplit:
    delimiter = cfg.resolved_delimiter(fmt)
    rows = _delimited_rows(text, delimiter, cfg.resolved_quoting(fmt), cfg.max_columns)
    header: list[str] | None = None
    if cfg.header:
        first = next(rows, None)
        if first is None:
            raise DataError(f"{shown} is empty", "add a header row and data rows, or point to another file")
        header = [h.strip() for h in first[1]]
    texts: list[str] = []
    pairs: list[str] | None = [] if cfg.text_pair is not None else None
    labels: list[str] = []
    numbers: list[int] = []
    indices: tuple[int, int | None, int] | None = None
    for number, fields in rows:
        if indices is None:
            roles = ("text", cfg.text), ("label", cfg.label)
            t, lab = (_column_index(c, header, len(fields), shown, r) for r, c in roles)
            p = None
            if cfg.text_pair is not None:
                p = _column_index(cfg.text_pair, header, len(fields), shown, "text_pair")
            indices = (t, p, lab)
        t, p, lab = indices
        need = max(i for i in indices if i is not None) + 1
        if len(fields) < need:
            raise DataError(
                f"{shown}:{number}: row has {len(fields)} field(s) but {need} are needed",
                f"check the delimiter ({delimiter!r}), quoting and max_columns, or fix that line",
            )
        texts.append(fields[t].strip())
        if pairs is not None and p is not None:
            pairs.append(fields[p].strip())
        labels.append(fields[lab].strip())
        numbers.append(number)
        if limit is not None and len(texts) >= limit:
            break
    if header is not None and indices is not None and header[indices[2]] in set(labels):
        # e.g. CoLA read with the default `header: true` silently loses its first row.
        logger.warning(
            "%s: the header's label field %r is also a label value; if the file has no header, set `header: false`",
            shown, header[indices[2]],
        )
    return RawSplit(texts=texts, pairs=pairs, labels=labels, line_numbers=numbers, source=shown)


def _json_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _read_jsonl(cfg: DataConfig, text: str, shown: str, limit: int | None) -> RawSplit:
    columns: list[tuple[str, str | int | None]] = [("text", cfg.text), ("text_pair", cfg.text_pair), ("label", cfg.label)]
    for role, column in columns:
        if isinstance(column, int):
            raise DataError(
                f"{role} is column index {column} but {shown} is JSON, whose columns have names",
                f"give the {role} field's key as a string",
            )
    records: Iterator[tuple[int, Any]]
    stripped = text.lstrip()
    if stripped.startswith("["):
        # A .json file holding one array of objects rather than one object per line.
        try:
            array = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{shown}:{err.lineno}: invalid JSON ({err.msg})", "fix the file or convert it to JSON Lines") from None
        records = ((i + 1, r) for i, r in enumerate(array))
        what = "item"
    else:
        records = ((n, line) for n, line in _split_lines(text))
        what = "line"
    texts: list[str] = []
    pairs: list[str] | None = [] if cfg.text_pair is not None else None
    labels: list[str] = []
    numbers: list[int] = []
    for number, record in records:
        if isinstance(record, str):
            try:
                record = json.loads(record)
            except json.JSONDecodeError as err:
                raise DataError(
                    f"{shown}:{number}: invalid JSON ({err.msg})",
                    "write one JSON object per line (JSON Lines)",
                ) from None
        if not isinstance(record, dict):
            raise DataError(f"{shown}:{number}: {what} is not a JSON object", "write one object per line, e.g. {\"text\": ..., \"label\": ...}")
        values = []
        for role, column in columns:
            if column is None:
                values.append(None)
                continue
            if column not in record or record[column] is None:
                keys = ", ".join(repr(k) for k in record)
                raise DataError(
                    f"{role} column {column!r} not found in {shown}:{number}",
                    f"available keys: {keys}",
                )
            values.append(_json_value(record[column]))
        texts.append(values[0])
        if pairs is not None:
            pairs.append(values[1])
        labels.append(values[2].strip())
        numbers.append(number)
        if limit is not None and len(texts) >= limit:
            break
    return RawSplit(texts=texts, pairs=pairs, labels=labels, line_numbers=numbers, source=shown)


Split = Literal["train", "validation", "test"]


def load_split(cfg: DataConfig, split: Split, base_dir: Path, limited: bool = True) -> RawSplit:
    """Read one split's file: text(s) and raw label strings, raising DataError on any problem.

    ``limited``: the train split stops at ``limit_train`` rows."""
    given = str(getattr(cfg, split))
    path = resolve_path(given, Path(base_dir))
    if not path.is_file():
        where = f"{given!r}" if str(path) == given else f"{given!r} (resolved to {str(path)!r})"
        raise DataError(
            f"{split} file {where} does not exist",
            f"fix task.data.{split}; relative paths are relative to the study YAML's directory",
        )
    fmt = cfg.resolved_format(path)
    shown = str(path)
    text = _decode(path.read_bytes(), cfg.encoding, shown)
    limit = cfg.limit_train if split == "train" and limited else None
    if fmt == "jsonl":
        raw = _read_jsonl(cfg, text, shown, limit)
    else:
        raw = _read_delimited(cfg, fmt, text, shown, limit)
    if not raw.texts:
        raise DataError(f"{split} split {shown!r} has no data rows", "point task.data." + split + " at a file with data")
    return raw


# --------------------------------------------------------------------------- labels


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def _quote_some(values: list[str], limit: int = 3) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f" (+{len(values) - limit} more)" if len(values) > limit else "")


def _label_vocabulary(cfg: DataConfig, train: RawSplit) -> list[str]:
    if cfg.label_map is not None:
        ids = cfg.label_map.values()
        if any(float(v) != int(v) for v in ids):
            raise DataError(
                "label_map values must be class ids (integers) for a classification task",
                "use 0, 1, 2, ... or set the task type to regression",
            )
        num = max(int(v) for v in ids) + 1
        missing = sorted(set(range(num)) - {int(v) for v in ids})
        if min(int(v) for v in ids) < 0 or missing:
            raise DataError(
                f"label_map class ids must be 0..{num - 1} without gaps"
                + (f" (missing {', '.join(map(str, missing[:3]))})" if missing else ""),
                "renumber the label_map values from 0",
            )
        names: list[list[str]] = [[] for _ in range(num)]
        for raw, idx in sorted(cfg.label_map.items()):
            names[int(idx)].append(raw)
        # Several raw labels can share one class (e.g. fine -> coarse); name it after all of them.
        return ["|".join(n) for n in names]
    seen = set(train.labels)
    _warn_mixed_labels(train)
    if all(_is_int(s) for s in seen):
        return sorted(seen, key=int)
    return sorted(seen)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _warn_mixed_labels(raw: RawSplit) -> None:
    """One warning when a label column mixes numbers and words (``0``, ``1``, ``positive``): each distinct
    value is its own class, which is rarely meant. The odd labels are those of the kind fewer rows hold."""
    numbers = [s for s in raw.labels if _is_number(s)]
    if not numbers or len(numbers) == len(raw.labels):
        return
    words = [s for s in raw.labels if not _is_number(s)]
    odd, usual = (numbers, words) if len(numbers) < len(words) else (words, numbers)
    odd_values = sorted(set(odd))
    logger.warning("%s: the label column mixes numbers and words: %s (%d row(s)) among %s; each distinct value "
                   "is its own class — fix those rows or map them with task.data.label_map", raw.source,
                   _quote_some(odd_values, 5), len(odd), _quote_some(sorted(set(usual)), 5))


def _map_labels(cfg: DataConfig, raw: RawSplit, split: str) -> list[int]:
    assert cfg.label_map is not None
    unknown = sorted({s for s in raw.labels if s not in cfg.label_map})
    if unknown:
        raise DataError(
            f"{split} labels {_quote_some(unknown)} are not in label_map",
            "add them to task.data.label_map or check the label column",
        )
    return [int(cfg.label_map[s]) for s in raw.labels]


def _regression_values(cfg: DataConfig, raw: RawSplit) -> list[float]:
    values: list[float] = []
    for i, s in enumerate(raw.labels):
        line = raw.line_numbers[i] if i < len(raw.line_numbers) else i + 1
        if cfg.label_map is not None:
            if s not in cfg.label_map:
                raise DataError(f"{raw.source}:{line}: label {s!r} is not in label_map", "add it to task.data.label_map")
            values.append(float(cfg.label_map[s]))
            continue
        try:
            v = float(s)
        except ValueError:
            v = math.nan
        if not math.isfinite(v):
            raise DataError(
                f"{raw.source}:{line}: regression label {s!r} (row {i + 1}) is not a finite number",
                "check the label column, or set the task type to classification",
            )
        values.append(v)
    return values


#: files load_dataset reads by extension, and its builder for each
_HF_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json",
                ".arrow": "arrow", ".txt": "text"}


def _hf_source(cfg: DataConfig, base_dir: Path) -> Any:
    """The ``dataset:`` source as a ``datasets`` DatasetDict (or Dataset), offline-first, with one-line errors."""
    try:
        import datasets
    except ImportError:
        raise DataError("task.data.dataset needs the Hugging Face 'datasets' package", "pip install datasets") from None
    from .logs import adopt_library_loggers

    datasets.disable_progress_bars()
    adopt_library_loggers()
    name = cfg.dataset
    path = resolve_path(name, Path(base_dir))
    cache = str(_datasets_cache())
    try:
        if path.is_dir() and any((path / f).is_file() for f in ("dataset_dict.json", "state.json")):
            return datasets.load_from_disk(str(path))  # written by save_to_disk
        if path.is_file():
            builder = _HF_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise DataError(f"cannot tell how to read {str(path)!r} from its extension",
                                f"use one of {', '.join(sorted(_HF_BUILDERS))}, or a save_to_disk folder")
            kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
            return datasets.load_dataset(builder, data_files=str(path), cache_dir=cache, **kwargs)
        if path.is_dir():
            return datasets.load_dataset(str(path), cache_dir=cache)  # a folder of parquet/csv/json files
        if name.startswith((".", "/", "~")) or name.count("/") > 1:
            raise DataError(f"data set {name!r} does not exist (resolved to {str(path)!r})",
                            "give a save_to_disk folder, a local data file, or a Hugging Face hub name")
        return _from_hub(name, cfg.dataset_config)
    except DataError:
        raise
    except Exception as exc:  # DatasetNotFoundError, ConnectionError, ValueError (bad config name), ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot load data set {name!r} ({first[:300]})",
                        "check the name and dataset_config; offline, a hub data set must be in the local cache "
                        "(or saved with save_to_disk)") from None


def _from_hub(name: str, config: str | None) -> Any:
    """A hub data set: from the hub when it answers, else from the local cache only — at once, not after
    huggingface_hub's retries."""
    import datasets
    import datasets.config
    import huggingface_hub.constants

    from .models import hub_unreachable

    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    why = "HF_HUB_OFFLINE is set" if offline else hub_unreachable()
    if why is None:
        return datasets.load_dataset(name, config)
    saved = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        return datasets.load_dataset(name, config)
    except Exception:
        raise DataError(f"data set {name!r} is not in the local cache and {why}",
                        "connect to the network once, or point task.data.dataset at a save_to_disk folder or local "
                        "files") from None
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


def _datasets_cache() -> Path:
    """Where ``load_dataset`` converts local files to Arrow: beside the token cache ($AUTOPEFT_CACHE_DIR)."""
    return token_cache_dir() / "datasets"


def _column_name(column: str | int, names: list[str], shown: str, role: str) -> str:
    if isinstance(column, int):
        if not 0 <= column < len(names):
            raise DataError(f"{role} column index {column} is out of range: {shown} has {len(names)} column(s)",
                            f"use an index from 0 to {len(names) - 1}, or a name: {', '.join(names)}")
        return names[column]
    if column not in names:
        raise DataError(f"{role} column {column!r} not found in {shown}",
                        suggest(column, names, "available columns", always=True))
    return column


def _hf_split(source: Any, cfg: DataConfig, split: Split, limit: int | None) -> RawSplit:
    """One split of a ``datasets`` source as raw strings, like a file's."""
    import datasets

    if isinstance(source, datasets.Dataset):  # a single table: it is the train split
        source = datasets.DatasetDict({"train": source})
    given = str(getattr(cfg, split))
    if given not in source:
        available = ", ".join(source) or "none"
        fix = (f"name one of them in task.data.{split}" + (", or split it off the train rows with "
               f"{split}: 20%" if split != "train" else ""))
        raise DataError(f"{split} split {given!r} is not in data set {cfg.dataset!r} (splits: {available})", fix)
    table = source[given]
    shown = f"{cfg.dataset}[{given}]"
    if limit is not None:
        table = table.select(range(min(limit, len(table))))
    names = list(table.column_names)
    columns = {role: _column_name(c, names, shown, role) for role, c in
               (("text", cfg.text), ("text_pair", cfg.text_pair), ("label", cfg.label)) if c is not None}
    values = {role: table[c] for role, c in columns.items()}
    for role, column in values.items():
        missing = next((i for i, v in enumerate(column) if v is None), None)
        if missing is not None:
            raise DataError(f"{shown} row {missing}: {role} column {columns[role]!r} is empty",
                            "drop or fill the rows without a value")
    raw = RawSplit(texts=[str(v) for v in values["text"]],
                   pairs=[str(v) for v in values["text_pair"]] if "text_pair" in values else None,
                   labels=[_json_value(v).strip() for v in values["label"]],
                   line_numbers=list(range(len(table))), source=shown)
    if not raw.texts:
        raise DataError(f"{split} split {shown!r} has no rows", f"point task.data.{split} at a split with data")
    return raw


def load_raw_splits(cfg: DataConfig, task_type: Literal["classification", "regression"],
                    base_dir: Path) -> tuple[dict[str, RawSplit], dict[str, str]]:
    """The train, validation and (when given) test rows, and where each split's rows come from.

    A split given as a share (``validation: 20%``) is drawn from the train rows, stratified by label for
    classification and seeded by ``split_seed``; the test share first, then the validation share, both shares of
    all train rows. ``limit_train`` then caps what is left for training.
    """
    shared = [s for s in ("test", "validation") if cfg.share(s)]
    named = [s for s in ("train", "validation", "test") if getattr(cfg, s) is not None and s not in shared]
    source = _hf_source(cfg, base_dir) if cfg.dataset else None
    raw: dict[str, RawSplit] = {}
    for split in named:
        limited = split == "train" and not shared  # with shares, the limit applies to what they leave
        raw[split] = (_hf_split(source, cfg, split, cfg.limit_train if limited else None) if source is not None
                      else load_split(cfg, split, base_dir, limited))
    origin = {s: f"{raw[s].source} ({len(raw[s])} rows)" for s in named}
    if shared:
        train = raw["train"]
        total = len(train)
        keep = list(range(total))
        stratify = task_type == "classification"
        for offset, split in enumerate(shared):
            share = cfg.share(split)
            n = round(share * total)
            if n < 1 or n >= len(keep):
                raise DataError(f"{split}: {100 * share:g}% of {total} train rows leaves "
                                f"{'no' if n < 1 else 'no train'} rows", "give a larger data set or another share")
            rest = train.select(keep)
            picked = stratified_sample(rest.labels if stratify else None, len(rest), n, cfg.split_seed + offset)
            chosen = set(picked)
            raw[split] = rest.select(picked, source=f"{train.source} ({split} share)")
            keep = [keep[i] for i in range(len(rest)) if i not in chosen]
            origin[split] = (f"{100 * share:g}% of {train.source}: {n} rows"
                             f"{', stratified by label' if stratify else ''}, split_seed {cfg.split_seed}")
        raw["train"] = train.select(keep[:cfg.limit_train] if cfg.limit_train else keep)
        origin["train"] = f"{train.source}: the {len(raw['train'])} rows left" + (
            f" (limit_train {cfg.limit_train})" if cfg.limit_train else "")
    return raw, origin


def build_task_data(
    cfg: DataConfig, task_type: Literal["classification", "regression"], base_dir: Path
) -> TaskData:
    """Load the splits and turn the raw labels into class ids (or floats for regression)."""
    raw, origin = load_raw_splits(cfg, task_type, base_dir)
    train, validation, test = raw["train"], raw["validation"], raw.get("test")
    if task_type == "regression":
        return TaskData(
            train=train,
            validation=validation,
            label_names=None,
            num_labels=1,
            train_label_ids=list(_regression_values(cfg, train)),
            validation_label_ids=list(_regression_values(cfg, validation)),
            regression=True,
            test=test,
            test_label_ids=list(_regression_values(cfg, test)) if test is not None else None,
            splits=origin,
        )
    names = _label_vocabulary(cfg, train)
    others = {"validation": validation, **({"test": test} if test is not None else {})}
    ids: dict[str, list[int]] = {}
    if cfg.label_map is not None:
        train_ids = _map_labels(cfg, train, "train")
        for split, rows in others.items():
            ids[split] = _map_labels(cfg, rows, split)
    else:
        index = {name: i for i, name in enumerate(names)}
        for split, rows in others.items():
            unseen = sorted({s for s in rows.labels if s not in index})
            if unseen:
                raise DataError(
                    f"{split} labels {_quote_some(unseen)} never occur in the train split",
                    "check the label column of both files, or map labels with task.data.label_map",
                )
            ids[split] = [index[s] for s in rows.labels]
        train_ids = [index[s] for s in train.labels]
    if len(names) < 2:
        raise DataError(
            f"the train split has only {len(names)} label value ({_quote_some(names)})",
            "a classifier needs at least two classes: check the label column or limit_train",
        )
    return TaskData(
        train=train,
        validation=validation,
        label_names=names,
        num_labels=len(names),
        train_label_ids=list(train_ids),
        validation_label_ids=list(ids["validation"]),
        regression=False,
        test=test,
        test_label_ids=ids.get("test"),
        splits=origin,
    )


# --------------------------------------------------------------------------- tokenising


def token_cache_dir() -> Path:
    """Where tokenised splits are cached: $AUTOPEFT_CACHE_DIR, else ~/.cache/autopeft."""
    return Path(os.environ.get("AUTOPEFT_CACHE_DIR") or Path.home() / ".cache" / "autopeft")


def encode(
    raw: RawSplit,
    labels: list[int | float],
    tokenizer: Any,
    max_length: int,
    regression: bool | None = None,
) -> EncodedSplit:
    """Tokenise a split in one batched call (truncated, not padded).

    Labels become a long tensor for classification and a float tensor for regression;
    ``regression=None`` infers it from whether any label is a float.
    """
    import torch

    if len(labels) != len(raw.texts):
        raise ValueError(f"{len(labels)} labels for {len(raw.texts)} texts")
    if raw.pairs is not None:
        out = tokenizer(raw.texts, raw.pairs, truncation="longest_first", max_length=max_length, padding=False)
    else:
        out = tokenizer(raw.texts, truncation=True, max_length=max_length, padding=False)
    input_ids = [list(ids) for ids in out["input_ids"]]
    token_type_ids = None
    # Single sentences get all-zero segment ids, which is the models' default anyway.
    if raw.pairs is not None and "token_type_ids" in out:
        token_type_ids = [list(t) for t in out["token_type_ids"]]
    if regression is None:
        regression = any(isinstance(y, float) for y in labels)
    dtype = torch.float32 if regression else torch.long
    return EncodedSplit(
        input_ids=input_ids,
        token_type_ids=token_type_ids,
        labels=torch.tensor(labels, dtype=dtype),
        lengths=[len(ids) for ids in input_ids],
    )


def encode_cached(
    raw: RawSplit,
    labels: list[int | float],
    tokenizer: Any,
    max_length: int,
    cache_dir: Path | None,
    regression: bool | None = None,
) -> EncodedSplit:
    """``encode`` with an on-disk cache keyed by the tokenizer, ``max_length`` and the exact rows and labels.

    The key hashes the content itself (not file names or times), so edited data never hits a stale entry.
    """
    import torch

    if cache_dir is None:
        return encode(raw, labels, tokenizer, max_length, regression)
    digest = hashlib.sha256()
    for part in (type(tokenizer).__name__, getattr(tokenizer, "name_or_path", ""), len(tokenizer), max_length,
                 regression, raw.texts, raw.pairs, labels):
        digest.update(repr(part).encode("utf-8", "surrogatepass"))
    path = Path(cache_dir) / "tokens" / f"{digest.hexdigest()[:32]}.pt"
    if path.is_file():
        try:
            d = torch.load(path, weights_only=True)
            return EncodedSplit(d["input_ids"], d["token_type_ids"], d["labels"], d["lengths"])
        except Exception as exc:  # a corrupt or foreign file is re-made, never trusted
            logger.warning("ignoring unreadable token cache %s (%s)", path, exc)
    split = encode(raw, labels, tokenizer, max_length, regression)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"input_ids": split.input_ids, "token_type_ids": split.token_type_ids, "labels": split.labels,
                    "lengths": split.lengths}, tmp)
        os.replace(tmp, path)  # atomic: concurrent workers never read a half-written file
    except OSError as exc:
        logger.warning("could not write the token cache %s (%s)", path, exc)
    return split
