"""Evaluation-free PEFT problems built on the tabulated proxy runs (benchmarks/data/peft_*.csv).

The table holds real proxy runs (MiniLM + SST-2) of random configurations from the shipped spaces
(see benchmarks/collect_table.py). A configuration the table does not hold gets its score from a
**fitted surrogate**: a random forest (scikit-learn) on features of the *decoded* adapter
configuration (per kind and layer: log2(1 + size); options; log learning rate; log(1 + params)), one
model per fidelity column (score_250 ... score_2000), trained on every successful row of both spaces.
It was chosen over extra-trees, 5-NN and ridge regression by held-out accuracy (the log-params feature
lifted every model's R^2 from about 0.1 to about 0.5 on the first 35 rows); that accuracy (k-fold, see
:func:`surrogate_accuracy`) is printed by ``benchmarks/optimizers.py`` and recorded in RESULTS.md.

``params`` is exact (autopeft's adapter counting on MiniLM's architecture, checked against every row's
``params`` column). ``memory_estimate`` is the analytic estimate **as the collector computed it**: a frozen copy
of its formula and constants (:func:`table_memory_estimate`), checked against every row's ``memory_estimate``
column, so the problem does not move when ``autopeft.memory`` or the task head's definition changes (BERT's
pooler joined the head after the table was collected, which broke the old re-derivation). Measured ``memory``
is that estimate times a correction fitted the same way. Objectives: score (max), params (min), memory (min), as in
``objectives/score_params_memory.yaml``. The reference point is derived exactly as a study derives it.
"""
from __future__ import annotations

import functools
import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from autopeft.adapters import PEFTConfig, count_adapter_params, normalise_config
from autopeft.optimizers import derive_reference_point
from autopeft.space import SearchSpace

from . import Problem, benchmark_space, register_problem

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "benchmarks" / "data" / "peft_sst2.csv"
FIDELITIES = (250, 500, 1000, 2000)
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BATCH = 32
MIN_ROWS = 20  # fewer successful rows than this: the problem is not offered


def read_table(path: Path = TABLE) -> list[dict[str, Any]]:
    """Successful rows, with JSON columns parsed and numbers converted."""
    import csv

    if not path.exists():
        return []
    rows = []
    with path.open() as f:
        for r in csv.DictReader(f):
            if r.get("status") != "ok" or not r.get("score_2000"):
                continue
            rows.append({"space": r["space"], "values": json.loads(r["values"]), "config": json.loads(r["config"]),
                         "hyperparameters": json.loads(r["hyperparameters"]), "params": int(r["params"]),
                         "memory": float(r["memory"]), "memory_estimate": float(r["memory_estimate"]),
                         **{f"score_{n}": float(r[f"score_{n}"]) for n in FIDELITIES}})
    return rows


# ---------------------------------------------------------------------------- features
KINDS = ("serial", "parallel", "prefix", "lora")


def config_features(config: Mapping[str, Any], hparams: Mapping[str, Any], params: float, num_layers: int,
                    option_values: Mapping[str, list]) -> np.ndarray:
    """Decoded configuration (``PEFTConfig.to_dict()`` form) and its parameter count -> feature vector."""
    feats: list[float] = []
    for kind in KINDS:
        body = config.get(kind, {})
        layers = body.get("layers", {})
        sizes = ({int(k): int(v) for k, v in layers.items()} if isinstance(layers, dict)
                 else {int(i): int(body["size"]) for i in layers})
        feats += [math.log2(1 + sizes.get(i, 0)) for i in range(num_layers)]
    for key, seen in option_values.items():
        kind, opt = key.split(".", 1)
        value = config.get(kind, {}).get(opt)
        value = "+".join(map(str, value)) if isinstance(value, list) else value
        feats += [1.0 if value == s else 0.0 for s in seen]
    lr = hparams.get("learning_rate")
    # without adapters the proxy trains only the head, at its own rate: the searched rate must not move the
    # prediction (it did, and backends "won" by re-sampling the head-only config at lucky rates)
    feats.append(math.log10(lr) if lr and any(config.values()) else -3.0)
    feats.append(math.log1p(params))
    return np.asarray(feats)


def option_vocabulary(rows: list[dict[str, Any]]) -> dict[str, list]:
    """kind.option -> values seen in the table (one-hot columns); numbers and strings alike."""
    vocab: dict[str, set] = {}
    for r in rows:
        for kind, body in r["config"].items():
            for opt, value in body.items():
                if opt in ("layers", "size"):
                    continue
                value = "+".join(map(str, value)) if isinstance(value, list) else value
                vocab.setdefault(f"{kind}.{opt}", set()).add(value)
    return {k: sorted(v, key=str) for k, v in sorted(vocab.items()) if len(v) > 1}


def _regressor(seed: int = 0):
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=seed, n_jobs=1)


def surrogate_accuracy(rows: list[dict[str, Any]], target: str = "score_2000", folds: int = 5,
                       num_layers: int = 6) -> dict[str, float]:
    """k-fold held-out accuracy of the surrogate: R^2, Spearman rho, mean absolute error."""
    from scipy.stats import spearmanr
    from sklearn.model_selection import KFold

    vocab = option_vocabulary(rows)
    X = np.stack([config_features(r["config"], r["hyperparameters"], r["params"], num_layers, vocab) for r in rows])
    y = np.array([r[target] for r in rows])
    pred = np.zeros_like(y)
    for train, test in KFold(min(folds, len(rows)), shuffle=True, random_state=0).split(X):
        pred[test] = _regressor().fit(X[train], y[train]).predict(X[test])
    ss = ((y - y.mean()) ** 2).sum()
    return {"rows": len(rows), "r2": float(1 - ((y - pred) ** 2).sum() / ss) if ss > 0 else float("nan"),
            "spearman": float(spearmanr(y, pred).statistic), "mae": float(np.abs(y - pred).mean()),
            "target_sd": float(y.std())}


# ---------------------------------------------------------------------------- the model's arithmetic
@functools.lru_cache(maxsize=1)
def _minilm():
    """ModelInfo and task-head size of MiniLM (architecture only; no data, no training)."""
    from autopeft.models import load_model, model_info

    model, _ = load_model(MODEL, 2, "single_label_classification")
    info = model_info(model)
    head = sum(p.numel() for n in info.arch.head for p in model.get_submodule(n).parameters())
    return info, head


#: the collector's estimate, frozen (autopeft/memory.py's ``estimate_step_memory`` as of the table's collection,
#: commit cac3c02, with the arguments the proxy passed then). MiniLM: every parameter outside the classifier
#: (pooler included) 22,713,216; the task head was the classifier alone, 770 parameters; hidden 384, FFN 1536,
#: 12 heads, 6 layers; batch 32; mean training sequence length 13 tokens (2,000 SST-2 examples). Every row of
#: peft_sst2.csv is reproduced to the byte (checked on load: :func:`check_table_arithmetic`).
TABLE_ESTIMATE = dict(base=22_713_216, head=770, hidden=384, ffn=1536, heads=12, layers=6, batch=BATCH, seq=13,
                      act_hidden=10, act_ffn=2, bytes_per=4)


def table_memory_estimate(params: int, trained_layers: int, c: Mapping[str, int] = TABLE_ESTIMATE) -> int:
    """Analytic step memory as the table's collector computed it: weights (base + head + adapters + head, the
    head counted twice as the collector did), gradient + two AdamW moments of the trained parameters, and the
    saved activations of the layers from the lowest adapted one up."""
    trainable = params + c["head"]
    weights = (c["base"] + c["head"] + trainable) * c["bytes_per"]
    grads_and_state = trainable * c["bytes_per"] * 3
    per_layer = (c["batch"] * c["seq"] * (c["act_hidden"] * c["hidden"] + c["act_ffn"] * c["ffn"])
                 + c["batch"] * c["heads"] * c["seq"] * c["seq"])
    return int(weights + grads_and_state + trained_layers * per_layer * c["bytes_per"])


def _trained_layers(config: PEFTConfig, num_layers: int) -> int:
    lowest = min((min(s.layers) for s in config.modules.values()), default=num_layers)
    return num_layers - lowest


def _estimate(config: PEFTConfig, params: int) -> int:
    return table_memory_estimate(params, _trained_layers(config, _minilm()[0].num_layers))


def check_table_arithmetic(rows: list[dict[str, Any]], spaces: dict[str, SearchSpace]) -> None:
    """Every row's ``params`` and ``memory_estimate`` must be what this problem computes for its configuration;
    a mismatch (the adapter counting or the frozen estimate no longer matches the table) names the row."""
    info, _ = _minilm()
    for n, r in enumerate(rows):
        config = normalise_config(spaces[r["space"]].decode(r["values"])[0], info)
        params = count_adapter_params(config, info)
        if params != r["params"]:
            raise RuntimeError(f"table row {n} ({r['space']}): autopeft counts {params} adapter params, the "
                               f"table {r['params']}: the problem's params no longer match the table")
        estimate = _estimate(config, params)
        if estimate != int(r["memory_estimate"]):
            raise RuntimeError(f"table row {n} ({r['space']}): the frozen estimate gives {estimate} bytes, the "
                               f"table {int(r['memory_estimate'])}")


class TableProblem:
    """Surrogates for score (per fidelity) and memory correction, shared by both spaces' problems."""

    def __init__(self, rows: list[dict[str, Any]]):
        info, _ = _minilm()
        self.rows = rows
        self.num_layers = info.num_layers
        self.spaces = {name: benchmark_space(name, info.num_layers) for name in ("autopeft", "lora")}
        check_table_arithmetic(rows, self.spaces)
        self.vocab = option_vocabulary(rows)
        X = np.stack([config_features(r["config"], r["hyperparameters"], r["params"], self.num_layers, self.vocab)
                      for r in rows])
        self.score = {n: _regressor().fit(X, [r[f"score_{n}"] for r in rows]) for n in FIDELITIES}
        self.memory_correction = _regressor().fit(X, [math.log(r["memory"] / r["memory_estimate"]) for r in rows])

    def decode(self, space: str, values: Mapping[str, Any]) -> tuple[PEFTConfig, dict[str, Any]]:
        config, hparams = self.spaces[space].decode(dict(values))
        return normalise_config(config, _minilm()[0]), hparams

    def known(self, space: str, values: Mapping[str, Any]) -> dict[str, float]:
        config, _ = self.decode(space, values)
        params = count_adapter_params(config, _minilm()[0])
        return {"params": float(params), "memory_estimate": float(_estimate(config, params))}

    def evaluate(self, space: str, values: Mapping[str, Any], fidelity: int = 2000) -> dict[str, float]:
        config, hparams = self.decode(space, values)
        known = self.known(space, values)
        x = config_features(config.to_dict(), hparams, known["params"], self.num_layers, self.vocab)[None, :]
        memory = known["memory_estimate"] * math.exp(float(self.memory_correction.predict(x)[0]))
        return {"score": float(self.score[fidelity].predict(x)[0]), "params": known["params"], "memory": memory}


#: bumped whenever the surrogate's features change: league runs made on another version are not compared
#: (2: the learning rate is ignored for configurations without adapters, as the proxy ignores it)
SURROGATE_VERSION = 2

#: use only the first N successful rows (the table grows while it is collected; comparisons need a fixed one)
ROW_LIMIT: int | None = None


@functools.lru_cache(maxsize=1)
def table_problem(path: str = str(TABLE)) -> TableProblem:
    rows = read_table(Path(path))[:ROW_LIMIT]
    if len(rows) < MIN_ROWS:
        raise LookupError(f"{path} has {len(rows)} successful rows; the PEFT problems need {MIN_ROWS}")
    return TableProblem(rows)


def _make(space: str) -> Problem:
    table = table_problem()
    objectives, directions = ("score", "params", "memory"), ("maximize", "minimize", "minimize")
    known = functools.partial(table.known, space)
    ref = derive_reference_point(table.spaces[space], objectives, directions, known, worst={"score": 0.5})
    best_memory = min(r["memory"] for r in table.rows)
    return Problem(f"peft-{space}", f"MiniLM + SST-2, benchmarks/spaces/{space}.yaml, surrogate on {len(table.rows)} rows",
                   table.spaces[space], objectives, directions, functools.partial(table.evaluate, space),
                   reference_point=ref, bounds={"score": 1.0, "params": 0.0, "memory": 0.9 * best_memory},
                   known=known, info={"rows": len(table.rows), "table": str(TABLE.relative_to(REPO))})


register_problem("peft-autopeft")(lambda: _make("autopeft"))
register_problem("peft-lora")(lambda: _make("lora"))
