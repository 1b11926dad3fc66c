"""Warm start: a new study first runs another study's Pareto configurations, mapped by relative depth."""
from __future__ import annotations

import json

import optuna
import pytest

from autopeft.cli import main
from autopeft.errors import ConfigError, StorageError
from autopeft.space import SearchSpace
from autopeft.warmstart import load_source, map_params

LORA = {"adapters": {"lora": {"rank": [0, 2, 4, 8], "per_layer": True, "targets": [["query", "value"],
                                                                                   ["query", "key", "value"]]}}}


def test_per_layer_values_come_from_the_same_relative_depth():
    space = SearchSpace.from_spec(LORA, num_layers=4)
    source = {"lora.rank.0": 2, "lora.rank.1": 16, "lora.targets": "query+key+value", "hp.gone": 1.0}
    mapped = map_params(source, 2, space)
    # layers 0,1 of 4 sit where layer 0 of 2 does; 2,3 where layer 1 does; 16 is not a choice here: nearest, 8
    assert mapped == {"lora.rank.0": 2, "lora.rank.1": 2, "lora.rank.2": 8, "lora.rank.3": 8,
                      "lora.targets": "query+key+value"}
    shallow = map_params({f"lora.rank.{i}": r for i, r in enumerate([0, 2, 4, 8])}, 4, SearchSpace.from_spec(LORA, 2))
    assert shallow == {"lora.rank.0": 2, "lora.rank.1": 8}


def test_top_k_and_shared_sizes():
    spec = {"adapters": {"serial": {"size": [0, 8, 16]}}, "layers": "top_k",
            "hyperparameters": {"learning_rate": {"low": 1e-4, "high": 1e-3, "log": True}}}
    mapped = map_params({"serial.size": 64, "layers.top_k": 2, "hp.learning_rate": 5e-3}, 4,
                        SearchSpace.from_spec(spec, 12))
    assert mapped == {"serial.size": 16, "layers.top_k": 6, "hp.learning_rate": 1e-3}


def test_warm_started_study_runs_the_other_front_first(write_study, tmp_path, capsys):
    other = write_study()
    assert main(["run", str(other), "--trials", "4"]) == 0
    capsys.readouterr()
    source = load_source(str(other))
    front = sorted(source.front, key=lambda t: t.number)
    assert source.num_layers == 2 and front

    new = write_study(name="new.yaml")
    new.write_text(new.read_text().replace("name: tiny", "name: new").replace("tiny.db", "new.db"))
    target = len(front) + 1
    assert main(["run", str(new), "--warm-start", str(other), "--trials", str(target)]) == 0
    table = capsys.readouterr().out
    study = optuna.load_study(study_name="new", storage=f"sqlite:///{tmp_path}/new.db")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.params for t in trials[:len(front)]] == [t.params for t in front]
    assert [t.user_attrs["warm_start"] for t in trials[:len(front)]] == [f"tiny trial {t.number}" for t in front]
    assert "warm_start" not in trials[-1].user_attrs
    assert study.user_attrs["warm_start"]["configurations"] == len(front)
    assert "[warm start]" in table

    # marked in the pareto json and in the report
    assert main(["pareto", str(new), "--format", "json"]) == 0
    assert any(p.get("warm_start", "").startswith("tiny trial") for p in json.loads(capsys.readouterr().out))
    assert main(["report", str(new), "-o", str(tmp_path / "r.html")]) == 0
    assert "warm start: tiny trial" in (tmp_path / "r.html").read_text()

    # resuming does not enqueue them again
    assert main(["run", str(new), "--warm-start", str(other), "--trials", str(target + 1)]) == 0
    study = optuna.load_study(study_name="new", storage=f"sqlite:///{tmp_path}/new.db")
    assert sum("warm_start" in t.user_attrs for t in study.trials) == len(front)

    # the storage URL names it too
    assert load_source(f"sqlite:///{tmp_path}/tiny.db").name == "tiny"
    assert load_source(f"sqlite:///{tmp_path}/tiny.db#tiny").name == "tiny"
    with pytest.raises(StorageError, match="no study named 'nope'"):
        load_source(f"sqlite:///{tmp_path}/tiny.db#nope")


def test_bad_sources_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="neither a study file nor a storage URL"):
        load_source(str(tmp_path / "missing.yaml"))
    with pytest.raises(StorageError, match="no storage"):
        load_source(f"sqlite:///{tmp_path}/none.db")
