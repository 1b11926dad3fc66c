"""Study YAML -> validated pydantic models, with one-line errors naming file:line, key path and fix."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .errors import ConfigError, DataError, suggest
from .objectives import Objective, objective_set
from .yamlio import load_yaml

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d)?\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.I)
_SIZE_UNITS = {None: 1, "b": 1, "kb": 1e3, "kib": 2**10, "mb": 1e6, "mib": 2**20, "gb": 1e9, "gib": 2**30}


def parse_size(text: str | int | float) -> float:
    """Bytes in ``500MB`` / ``1GiB`` / ``5e8``; raises ValueError for anything else."""
    if isinstance(text, (int, float)):
        return float(text)
    try:
        return float(text)
    except ValueError:
        match = _SIZE.match(text)
        if not match:
            raise ValueError(f"'{text}' is not a size") from None
        value, unit = match.groups()
        return float(value) * _SIZE_UNITS[unit.lower() if unit else None]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Format = Literal["tsv", "csv", "jsonl"]

_EXTENSIONS: dict[str, Format] = {
    ".tsv": "tsv",
    ".txt": "tsv",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
}
_DEFAULT_DELIMITER: dict[str, str] = {"tsv": "\t", "csv": ","}


class DataConfig(_Strict):
    """The ``task.data`` block of a study YAML: where the data is and which columns to use (read by
    autopeft/data.py)."""

    dataset: str | None = Field(None, description="a Hugging Face datasets source: a save_to_disk folder, a local "
                                "parquet/csv/json/arrow file or folder of them, or a hub name (e.g. glue); then "
                                "train/validation/test name its splits")
    dataset_config: str | None = Field(None, description="the hub data set's configuration (e.g. sst2 for glue)")
    train: str | None = Field(None, description="train file (tsv/csv/jsonl), or the split's name with dataset "
                                                "(default: train)")
    validation: str | float | None = Field(None, description="validation file or split name, or a share of the "
                                           "train rows split off it (20% or 0.2); with dataset default: validation")
    test: str | float | None = Field(None, description="optional test file, split name or share of the train rows: "
                                     "scored only by refine and export --train, never by the search")
    split_seed: int = Field(0, description="seed of the validation/test rows drawn from the train rows")
    format: Literal["auto", "tsv", "csv", "jsonl"] = "auto"
    delimiter: str | None = None
    header: bool = True
    encoding: str = "utf-8"
    max_columns: int | None = None
    text: str | int
    text_pair: str | int | None = None
    label: str | int
    label_map: dict[str, int | float] | None = None
    quoting: bool | None = None
    limit_train: int | None = None

    @field_validator("label_map", mode="before")
    @classmethod
    def _label_map_keys_as_str(cls, value: Any) -> Any:
        # YAML turns `0: negative`-style keys into ints; raw labels are always strings.
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value

    @field_validator("delimiter")
    @classmethod
    def _check_delimiter(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"delimiter must be one character, got {value!r}")
        return value

    @field_validator("max_columns")
    @classmethod
    def _check_max_columns(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("max_columns must be at least 1")
        return value

    @field_validator("limit_train")
    @classmethod
    def _check_limit(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("limit_train must be at least 1")
        return value

    @field_validator("encoding")
    @classmethod
    def _check_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (try utf-8, utf-8-sig or latin-1)") from None
        return value

    @field_validator("validation", "test")
    @classmethod
    def _check_share(cls, value: str | float | None) -> str | float | None:
        if _is_share(value):
            share_of(value)  # raises ValueError for 0%, 150%, -0.2, ...
        return value

    @model_validator(mode="after")
    def _check_columns(self) -> "DataConfig":
        if self.text_pair is not None and self.text_pair == self.text:
            raise ValueError("text_pair must name a different column than text")
        if self.dataset is None:
            if self.train is None:
                raise ValueError("give the train file (task.data.train), or a Hugging Face source in task.data.dataset")
            if self.validation is None:
                raise ValueError("give the validation file (task.data.validation), or split it off the train rows "
                                 "with validation: 20%")
        else:
            self.train = self.train or "train"
            self.validation = self.validation if self.validation is not None else "validation"
        return self

    def share(self, split: str) -> float | None:
        """The share of the train rows ``split`` (validation or test) takes, or None when it is its own file/split."""
        value = getattr(self, split)
        return share_of(value) if _is_share(value) else None

    def describe(self) -> str:
        """Where the data comes from, in a few words (for the first line of a run)."""
        shown = {s: (f"{100 * self.share(s):g}% of train" if self.share(s) else getattr(self, s))
                 for s in ("train", "validation", "test") if getattr(self, s) is not None}
        splits = ", ".join(f"{k} {v}" for k, v in shown.items())
        return f"{self.dataset}: {splits}" if self.dataset else splits

    def resolved_format(self, path: str | Path) -> Format:
        """The file format: ``format`` unless it is ``auto``, else guessed from the extension."""
        if self.format != "auto":
            return self.format
        suffix = Path(path).suffix.lower()
        if suffix not in _EXTENSIONS:
            raise DataError(
                f"cannot tell the format of {str(path)!r} from its extension {suffix or '(none)'!r}",
                "set `format: tsv`, `csv` or `jsonl` in task.data",
            )
        return _EXTENSIONS[suffix]

    def resolved_delimiter(self, fmt: Format) -> str:
        """``delimiter`` if set, else tab for tsv and comma for csv."""
        return self.delimiter if self.delimiter is not None else _DEFAULT_DELIMITER.get(fmt, "\t")

    def resolved_quoting(self, fmt: Format) -> bool:
        """``quoting`` if set; else on for csv and off for tsv (GLUE text has bare quotes)."""
        if self.quoting is not None:
            return self.quoting
        return fmt == "csv"


def _is_share(value: str | float | None) -> bool:
    """A number (``0.2``) or a percentage (``20%``): a share of the train rows, not a file or split name."""
    return isinstance(value, (int, float)) or isinstance(value, str) and value.strip().endswith("%")


def share_of(value: str | float) -> float:
    """``20%`` / ``0.2`` -> 0.2; ValueError unless strictly between 0 and 1."""
    text = str(value).strip()
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"{value!r} is neither a file nor a share; write e.g. 20% or 0.2") from None
    if not 0 < share < 1:
        raise ValueError(f"a share of the train rows must be between 0 and 100% (got {value!r})")
    return share


#: causal_lm metric -> the direction of the score objective (the metrics of the other tasks: autopeft/metrics.py)
LM_METRICS: dict[str, str] = {"loss": "minimize", "perplexity": "minimize", "exact_match": "maximize"}


class TaskConfig(_Strict):
    type: Literal["classification", "regression", "causal_lm"] = "classification"
    metric: str | None = Field(None, description="accuracy | f1 | mcc | pearson | spearman | ...; causal_lm: loss | "
                                                 "perplexity (minimised) | exact_match; default by type")
    data: DataConfig
    answer_pattern: str | None = Field(None, description="causal_lm exact_match: regex whose first group is the "
                                                         "answer in a generation and in the reference response")
    generate_examples: int = Field(32, ge=1, description="causal_lm exact_match: validation rows generated")
    max_new_tokens: int = Field(128, ge=1, description="causal_lm exact_match: tokens generated per row")

    @model_validator(mode="before")
    @classmethod
    def _prompt_response_columns(cls, data: Any) -> Any:
        """causal_lm names its columns ``prompt`` and ``response``: they are the reader's text and label."""
        if isinstance(data, dict) and data.get("type") == "causal_lm" and isinstance(data.get("data"), dict):
            columns = dict(data["data"])
            for ours, reader in (("prompt", "text"), ("response", "label")):
                if ours in columns:
                    columns[reader] = columns.pop(ours)
            data = {**data, "data": columns}
        return data

    @model_validator(mode="after")
    def _causal_lm_metric(self) -> "TaskConfig":
        if self.type != "causal_lm":
            return self
        if (self.metric or "loss") not in LM_METRICS:
            raise ValueError(f"metric '{self.metric}' is not a causal_lm metric; use one of {', '.join(LM_METRICS)}")
        if self.metric == "exact_match" and not self.answer_pattern:
            raise ValueError(r"exact_match needs answer_pattern, e.g. answer_pattern: '#### (\S+)'")
        return self


class ProxyConfig(_Strict):
    """The cheap training run each candidate gets."""

    train_examples: int = Field(2000, ge=1)
    eval_examples: int | None = Field(None, ge=1, description="validation rows scored (default: all)")
    epochs: float = Field(1.0, gt=0)
    max_length: int = Field(64, ge=8)
    batch_size: int = Field(32, ge=1)
    learning_rate: float | None = Field(None, gt=0, description="default: per adapter kind")
    head_learning_rate: float = Field(2e-3, gt=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    measure_memory: bool = True
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="matmul precision of training and scoring (bf16 autocast; weights, gradients and "
        "optimizer state stay fp32). auto: bf16 where the hardware computes it natively (CUDA with bf16, CPUs "
        "with AVX512-BF16/AMX), else fp32. The memory objective is always measured on an fp32 step")
    activation_cache: bool = Field(True, description="reuse frozen layers' outputs across trials (exact: the "
                                                     "frozen layers below the lowest adapted one run without dropout "
                                                     "in every trial, cached or not)")
    activation_cache_mb: float = Field(1024, ge=0, description="memory budget of that cache")
    token_cache: bool = Field(True, description="cache tokenised splits on disk ($AUTOPEFT_CACHE_DIR)")
    rungs: list[int] = Field(default_factory=list, description="training examples seen at which a trial may "
                                                               "stop early when dominated (MO-ASHA); [] = off")
    reduction_factor: float = Field(3.0, gt=1, description="keep the top 1/eta of the trials at each rung")
    rung_margin: float | None = Field(None, ge=0, description="a trial outside the top 1/eta still continues "
                                      "unless another, no worse on the other objectives, beats its rung score by "
                                      "more than this; default: twice the sd of a difference of two scores on the "
                                      "validation rows (their sampling noise)")
    threads: int | None = Field(None, ge=1, description="torch threads (default: all cores)")


class OptimizerConfig(_Strict):
    name: str = Field("mobo", description="mobo | gp | tpe | nsga2 | random | ax")
    initial_trials: int = Field(8, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


class BudgetConfig(_Strict):
    trials: int = Field(20, ge=1)
    time: str | float | None = Field(None, description="wall-clock limit: 90s, 30m, 2h")

    @field_validator("time")
    @classmethod
    def _duration(cls, v):
        if v is None or isinstance(v, (int, float)):
            return v
        if not _DURATION.match(str(v)):
            raise ValueError(f"'{v}' is not a duration; write e.g. 90s, 30m or 2h")
        return v

    @property
    def seconds(self) -> float | None:
        if self.time is None:
            return None
        if isinstance(self.time, (int, float)):
            return float(self.time)
        value, unit = _DURATION.match(str(self.time)).groups()
        return float(value) * {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}[unit]


class ConstraintsConfig(_Strict):
    max_params: int | float | str | None = Field(None, description="absolute count or '2%' of the base model")
    max_memory: int | float | str | None = Field(None, description="bytes or '500MB' / '1GiB'")

    @field_validator("max_params")
    @classmethod
    def _params(cls, v):
        if isinstance(v, str) and not re.match(r"^\s*\d+(\.\d+)?\s*%?\s*$|^\s*\d+(\.\d+)?e\d+\s*$", v):
            raise ValueError(f"'{v}' is not a parameter count; write e.g. 100000 or '2%'")
        return v

    @field_validator("max_memory")
    @classmethod
    def _memory(cls, v):
        if isinstance(v, str) and not _SIZE.match(v):
            raise ValueError(f"'{v}' is not a size; write e.g. 500MB or 1GiB")
        return v

    def params_limit(self, base_params: int) -> float | None:
        v = self.max_params
        if v is None:
            return None
        if isinstance(v, str) and v.strip().endswith("%"):
            return float(v.strip()[:-1]) / 100 * base_params
        return float(v)

    def memory_limit(self) -> float | None:
        v = self.max_memory
        if v is None or isinstance(v, (int, float)):
            return v
        value, unit = _SIZE.match(v).groups()
        return float(value) * _SIZE_UNITS[unit.lower() if unit else None]


class TrainConfig(_Strict):
    """The full-fidelity training of a picked configuration (``autopeft export --train``, ``autopeft train``)."""

    epochs: float | None = Field(None, gt=0, description="default: the proxy's epochs (after searched hyperparameters)")
    train_examples: int | None = Field(None, ge=1, description="default: the whole train split")
    eval_examples: int | None = Field(None, ge=1, description="validation rows scored (default: all)")


class RefineConfig(_Strict):
    """Re-training of the Pareto points at full fidelity (the ``train`` block) with several seeds."""

    seeds: int = Field(3, ge=1, description="seeds per Pareto point; the front then shows mean ± sd")
    auto: bool = Field(False, description="refine at the end of every 'autopeft run' (else: 'autopeft refine')")


class RecoveryConfig(_Strict):
    """What happens to a trial whose worker died (SIGKILL, lost machine): every running trial beats every
    ``heartbeat`` seconds; one silent for ``grace`` seconds is marked failed by the next worker that looks, and its
    configuration is run again up to ``retries`` times (a retried trial no longer counts toward the budget)."""

    retries: int = Field(1, ge=0, description="re-runs of a trial whose worker died")
    heartbeat: int = Field(10, ge=1, description="seconds between heartbeats of a running trial")
    grace: int = Field(30, ge=2, description="seconds without a heartbeat after which a trial is stale")

    @model_validator(mode="after")
    def _grace_covers_heartbeats(self):
        if self.grace <= self.heartbeat:
            raise ValueError(f"grace ({self.grace}s) must be longer than heartbeat ({self.heartbeat}s), or every "
                             "running trial looks dead; e.g. grace: 3 x heartbeat")
        return self


class TrainerConfig(_Strict):
    """What a proxy trainer reads (autopeft/proxy.py, autopeft/causal_lm.py): the model, the task and its data, the
    proxy run's settings (precision included), seed and device; relative data paths resolve against ``base_dir``.
    Made from a study by :meth:`StudyConfig.trainer_config`, from an exported recipe by
    :meth:`RecipeConfig.trainer_config`."""

    model: str
    task: TaskConfig
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    base_dir: Path = Field(default=Path("."), exclude=True)


class StudyConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    model: str
    task: TaskConfig
    search_space: str | dict[str, Any] = Field(description="a shipped space's name (autopeft, lora, mixed), a "
                                                           "path to a YAML file, or an inline mapping")
    objectives: str | list[Any] | dict[str, Any] = "score_params"
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    constraints: ConstraintsConfig = Field(default_factory=ConstraintsConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    storage: str | None = None
    recovery: RecoveryConfig = Field(default_factory=RecoveryConfig)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    references: bool = Field(False, description="also train full fine-tuning and the standard hand-made configs "
                                                "(Houlsby, parallel, prefix 30, LoRA r=8) at the proxy fidelity; on "
                                                "decoders LoRA r=8 query/value and LoRA r=16 all-linear")
    full_finetune_reference: bool | None = Field(None, description="train full fine-tuning among the references; "
                                                 "default: yes for encoders, no for decoders")

    #: directory of the YAML file; relative data/space/objective paths resolve against it (then the CWD)
    base_dir: Path = Field(default=Path("."), exclude=True)
    source: str = Field(default="<inline>", exclude=True)

    #: line of every key path in the study file (set by load_study_config)
    _lines: dict[tuple, int] = PrivateAttr(default_factory=dict)
    #: (the search_space / objectives value it was read for, what was read): see space_spec, objective_list
    _space: tuple[Any, dict[str, Any]] | None = PrivateAttr(None)
    _objectives: tuple[Any, list[Objective]] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _causal_lm_limits(self) -> "StudyConfig":
        if self.task.type == "causal_lm" and self.proxy.rungs:
            raise ValueError("proxy.rungs are not supported for causal_lm yet; remove them")
        return self

    def resolve(self, path: str) -> Path:
        """Resolve a path from the YAML: relative to the study file, else to the current directory."""
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        for root in (self.base_dir, Path.cwd()):
            if (root / p).exists():
                return root / p
        return self.base_dir / p

    def resolve_file(self, value: str, folder: str) -> Path:
        """A search space or objective set named in the YAML: a bare name (``lora``) is the file shipped in
        ``folder`` (see autopeft.resources), anything else a path resolved like :meth:`resolve`."""
        from .resources import is_bare_name, shipped_path

        if is_bare_name(value):
            return shipped_path(folder, value)
        return self.resolve(value)

    @property
    def space_spec(self) -> dict[str, Any]:
        """The search space as a mapping: the inline one, or the shipped or user file ``search_space`` names (read
        once; load_study_config reads it with the study file). This is what a study stores and builds its
        SearchSpace from."""
        if self._space is None or self._space[0] != self.search_space:
            spec = self.search_space
            if isinstance(spec, str):
                path, spec, lines = self._read_sub_file("search_space", "search_spaces", "search space file")
                check_space_shape(spec, _locator(str(path), lines))
            else:
                check_space_shape(spec, _locator(self.source, self._lines, ("search_space",)))
            self._space = (self.search_space, spec)
        return self._space[1]

    @property
    def objective_list(self) -> list[Objective]:
        """The objectives: the inline set, or the shipped or user file ``objectives`` names (read once, like
        :attr:`space_spec`). The score's direction is the registry's (a study makes it follow the task's metric)."""
        if self._objectives is None or self._objectives[0] != self.objectives:
            spec = self.objectives
            if isinstance(spec, str):
                path, data, lines = self._read_sub_file("objectives", "objectives", "objectives file")
                found = objective_set(data, path.name, _locator(str(path), lines))
            else:
                found = objective_set(spec, "objectives", _locator(self.source, self._lines, ("objectives",)))
            self._objectives = (self.objectives, found)
        return self._objectives[1]

    def _read_sub_file(self, key: str, folder: str, what: str) -> tuple[Path, Any, dict[tuple, int]]:
        """(path, data, lines) of the file the study's ``key`` names; a file that is not there (or a shipped name
        that is not shipped) is reported at the key's line in the study file."""
        try:
            path = self.resolve_file(getattr(self, key), folder)
            return (path, *load_yaml(path, what))
        except ConfigError as err:
            if err.where is not None:  # inside the file: its own line
                raise
            raise ConfigError(err.problem, err.fix, _locator(self.source, self._lines)((key,))) from None

    def trainer_config(self) -> TrainerConfig:
        """The part of the study a proxy trainer reads. It holds this study's own task and proxy blocks, not copies
        (a change to ``cfg.proxy.activation_cache`` is seen by both, as when the trainer held the whole study)."""
        return TrainerConfig(model=self.model, task=self.task, proxy=self.proxy, seed=self.seed, device=self.device,
                             base_dir=self.base_dir)

    def read_sub_files(self) -> None:
        """Read and check the search space and objectives now (they are else read when first used), so that a
        problem in them is reported with the study file's, before anything runs."""
        self.space_spec
        self.objective_list


#: the keys of a search space (see autopeft/space.py)
SPACE_KEYS = ("adapters", "layers", "hyperparameters")


def check_space_shape(spec: Any, locate: Callable[[tuple], str | None]) -> None:
    """The shape of a search space, which needs no model: a mapping of ``adapters`` (at least one kind),
    ``layers`` and ``hyperparameters`` (a mapping). space.SearchSpace.from_spec checks the rest (adapter kinds,
    sizes, options, layer indices) once the model is loaded. ``locate(key path)`` gives the file:line of a key."""
    if not isinstance(spec, dict):
        raise ConfigError("search_space must be a mapping, a path to one or a shipped space's name",
                          "e.g. search_space: autopeft (or lora, mixed)", locate(()))
    unknown = [key for key in spec if key not in SPACE_KEYS]
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown, key=str)} in search_space",
                          f"allowed: {', '.join(SPACE_KEYS)}", locate((unknown[0],)))
    adapters = spec.get("adapters")
    if not isinstance(adapters, dict) or not adapters:
        raise ConfigError("search_space.adapters must name at least one adapter kind",
                          "e.g. adapters: {lora: {rank: [0, 4, 8]}}", locate(("adapters",)))
    hyper = spec.get("hyperparameters")
    if hyper and not isinstance(hyper, dict):
        raise ConfigError("search_space.hyperparameters must be a mapping",
                          "e.g. learning_rate: {low: 1.0e-4, high: 3.0e-3, log: true}", locate(("hyperparameters",)))


def _locator(source: str, lines: dict[tuple, int], prefix: tuple = ()) -> Callable[[tuple], str | None]:
    """``locate(key path)`` -> ``source:line`` of the nearest key path (under ``prefix``) that has a line; just
    ``source`` when none has, and None for a config that was not read from a file."""
    def locate(path: tuple) -> str | None:
        line = _nearest_line(lines, prefix + tuple(path))
        if line:
            return f"{source}:{line}"
        return None if source == "<inline>" else source

    return locate


def format_validation_error(err: ValidationError, model: type[BaseModel], source: str,
                            lines: dict[tuple, int], prefix: tuple = ()) -> ConfigError:
    """Turn pydantic's first error into one line: ``file:line key.path: problem — fix``."""
    e = err.errors()[0]
    loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith(("function-", "union["))))
    loc = tuple(x for x in loc if x not in ("str", "int", "float", "list[any]", "dict[str,any]", "literal"))
    full = prefix + loc
    path = ".".join(str(x) for x in full) or "(top level)"
    line = _nearest_line(lines, full)
    where = f"{source}:{line}" if line else source
    kind = e["type"]
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        allowed = sorted(parent.model_fields) if parent else []
        allowed = [a for a in allowed if a not in ("base_dir", "source")]
        return ConfigError(f"unknown key '{path}'", suggest(loc[-1], allowed, "allowed keys here"), where)
    if kind == "missing":
        return ConfigError(f"missing key '{path}'", "add it (see studies/quickstart.yaml)", where)
    msg = e["msg"].removeprefix("Value error, ")
    got = e.get("input")
    got_txt = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
    return ConfigError(f"{path}: {msg}{got_txt}", "correct the value", where)


def _nearest_line(lines: dict[tuple, int], path: tuple) -> int | None:
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path)


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for key in loc:
        field = model.model_fields.get(str(key))
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def _validated(model: type[BaseModel], data: dict, path: str | Path, lines: dict[tuple, int]) -> Any:
    """``data`` (read from ``path``) validated as ``model``, with ``base_dir`` set to the file's folder;
    a validation error becomes a one-line ConfigError."""
    try:
        cfg = model.model_validate(data)
    except ValidationError as err:
        raise format_validation_error(err, model, str(path), lines) from None
    cfg.base_dir = Path(path).resolve().parent
    return cfg


def load_study_config(path: str | Path, sub_files: bool = True) -> StudyConfig:
    """Read and validate a study YAML file and, unless ``sub_files`` is false, the search space and objectives it
    names; raises ConfigError (one line, naming the file and line) on any problem."""
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("a study file must be a mapping of keys (name, model, task, ...)",
                          "see studies/quickstart.yaml", str(path))
    cfg = _validated(StudyConfig, data, path, lines)
    cfg.source = str(path)
    cfg._lines = lines
    if sub_files:
        cfg.read_sub_files()
    return cfg


class RecipeConfig(_Strict):
    """An exported recipe (``autopeft.yaml`` written by ``autopeft export``): one configuration, re-trainable."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    model: str
    task: TaskConfig
    adapters: dict[str, Any]
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    source: dict[str, Any] | None = Field(None, description="the study and trial the recipe came from")

    base_dir: Path = Field(default=Path("."), exclude=True)
    path: str = Field(default="<inline>", exclude=True)

    def trainer_config(self) -> TrainerConfig:
        """What the trainer reads: this recipe's model, data and proxy settings, scored on ``train.eval_examples``
        validation rows (default: all)."""
        return TrainerConfig(model=self.model, task=self.task,
                             proxy=self.proxy.model_copy(update={"eval_examples": self.train.eval_examples}),
                             seed=self.seed, device=self.device, base_dir=self.base_dir)


def trainer_config(cfg: TrainerConfig | StudyConfig | RecipeConfig) -> TrainerConfig:
    """``cfg`` itself when it is a TrainerConfig, else what its ``trainer_config()`` makes of it (the trainers take a
    whole study too, as scripts that build one just to get a trainer do)."""
    return cfg if isinstance(cfg, TrainerConfig) else cfg.trainer_config()


def load_recipe(path: str | Path) -> RecipeConfig:
    """Read and validate an exported recipe; raises ConfigError (one line) on any problem."""
    data, lines = load_yaml(path, "recipe file")
    if not isinstance(data, dict):
        raise ConfigError("a recipe must be a mapping (name, model, task, adapters, ...)",
                          "give the autopeft.yaml written by 'autopeft export'", str(path))
    if "search_space" in data and "adapters" not in data:
        raise ConfigError("this is a study file, not an exported recipe",
                          "run 'autopeft run' on it, or 'autopeft export STUDY --pick knee -o DIR' first", str(path))
    cfg = _validated(RecipeConfig, data, path, lines)
    cfg.path = str(path)
    return cfg
