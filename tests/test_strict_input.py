"""Strict reading of what the user wrote: duplicate YAML keys are errors, odd label columns are said."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from autopeft.config import DataConfig
from autopeft.data import build_task_data
from autopeft.errors import ConfigError
from autopeft.yamlio import load_yaml, parse_yaml


def test_duplicate_top_level_key_names_both_lines():
    text = "name: a\nbudget: {trials: 3}\nseed: 0\nbudget: {trials: 5}\n"
    with pytest.raises(ConfigError) as err:
        parse_yaml(text, "study.yaml")
    message = str(err.value)
    assert message.startswith("study.yaml:4: duplicate key 'budget' on lines 2 and 4")
    assert "\n" not in message and " — " in message


def test_duplicate_nested_key_and_in_flow_mappings():
    with pytest.raises(ConfigError, match=r"duplicate key 'task.data.label' on lines 4 and 6"):
        parse_yaml("task:\n  data:\n    train: t.tsv\n    label: y\n    text: x\n    label: z\n", "s.yaml")
    with pytest.raises(ConfigError, match=r"duplicate key 'proxy.epochs' on lines 1 and 1"):
        parse_yaml("proxy: {epochs: 1, batch_size: 8, epochs: 2}\n", "s.yaml")


def test_same_key_in_different_mappings_is_fine(tmp_path: Path):
    (tmp_path / "space.yaml").write_text("adapters:\n  serial: {size: [0, 4]}\n  lora: {size: [0, 4]}\n"
                                         "list:\n  - {size: 1}\n  - {size: 2}\n")
    data, lines = load_yaml(tmp_path / "space.yaml")
    assert data["adapters"]["lora"] == {"size": [0, 4]} and lines[("list",)] == 4


def test_duplicate_key_in_a_search_space_file(tmp_path: Path):
    (tmp_path / "space.yaml").write_text("adapters:\n  lora: {rank: [4]}\n  lora: {rank: [8]}\n")
    with pytest.raises(ConfigError, match=r"space.yaml:3: duplicate key 'adapters.lora' on lines 2 and 3"):
        load_yaml(tmp_path / "space.yaml", "search space file")


_STUDY = ("name: s\nmodel: m\n"
          "task: {type: classification, data: {train: t.tsv, validation: t.tsv, text: s, label: l}}\n")


def _config_error(tmp_path: Path, study: str, **files: str) -> str:
    from autopeft.config import load_study_config

    for name, text in {"s.yaml": _STUDY + study, **files}.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as err:
        load_study_config(tmp_path / "s.yaml")
    message = str(err.value)
    assert "\n" not in message and " — " in message
    return message.replace(f"{tmp_path}/", "")


def test_sub_file_errors_name_the_sub_file_and_line(tmp_path: Path):
    """The search space and objectives are read with the study file: a problem inside one names that file and
    line; one in an inline block the study file's line; a file that is not there the line that names it."""
    assert _config_error(tmp_path, "search_space: sp.yaml\n", **{"sp.yaml": "# mine\nlayers: all\nadapters: {}\n"}) \
        .startswith("sp.yaml:3: search_space.adapters must name at least one adapter kind")
    assert _config_error(tmp_path, "search_space: sp.yaml\n", **{"sp.yaml": "- lora\n"}) \
        .startswith("sp.yaml:1: search_space must be a mapping")
    assert _config_error(tmp_path, "search_space:\n  adapters: {lora: {rank: [4]}}\n  layerz: all\n") \
        .startswith("s.yaml:6: unknown key(s) ['layerz'] in search_space")
    assert _config_error(tmp_path, "search_space: lora\nobjectives: o.yaml\n", **{"o.yaml": "[score, params, params]"}) \
        .startswith("o.yaml:1: o.yaml lists an objective twice")
    assert _config_error(tmp_path, "search_space: lora\nobjectives: o.yaml\n", **{"o.yaml": "objectives:\n- params\n"}) \
        .startswith("o.yaml:1: o.yaml has 1 objectives")
    assert _config_error(tmp_path, "search_space: lora\nobjectives:\n  - score\n  - parms\n") \
        .startswith("s.yaml:7: unknown objective 'parms' in objectives")
    assert _config_error(tmp_path, "search_space: lora\nobjectives: nothere.yaml\n") \
        .startswith("s.yaml:5: objectives file 'nothere.yaml' does not exist")
    assert _config_error(tmp_path, "search_space: lorra\n").startswith("s.yaml:4: no shipped search space named 'lorra'")


def test_the_config_carries_the_read_space_and_objectives(tmp_path: Path):
    from autopeft.config import load_study_config

    (tmp_path / "sp.yaml").write_text("adapters:\n  lora: {rank: [0, 4]}\n")
    (tmp_path / "s.yaml").write_text(_STUDY + "search_space: sp.yaml\nobjectives: score_params_memory\n")
    cfg = load_study_config(tmp_path / "s.yaml")
    assert cfg.space_spec == {"adapters": {"lora": {"rank": [0, 4]}}}  # the raw mapping, as the study stores it
    assert [o.name for o in cfg.objective_list] == ["score", "params", "memory"]
    (tmp_path / "sp.yaml").unlink()
    assert cfg.space_spec["adapters"]  # read once, with the study file
    inline = cfg.model_copy(update={"search_space": {"adapters": {"serial": {"size": [4]}}}, "objectives": ["score",
                                                                                                          "params"]})
    assert list(inline.space_spec["adapters"]) == ["serial"] and len(inline.objective_list) == 2


def test_mixed_label_column_warns_once_naming_the_odd_labels(tmp_path: Path, caplog):
    rows = [("a", "0"), ("b", "1"), ("c", "positive"), ("d", "0"), ("e", "1"), ("f", "1")]
    (tmp_path / "t.tsv").write_text("s\tl\n" + "".join(f"{s}\t{y}\n" for s, y in rows))
    with caplog.at_level(logging.WARNING, logger="autopeft.data"):
        td = build_task_data(DataConfig(train="t.tsv", validation="t.tsv", text="s", label="l"),
                             "classification", tmp_path)
    assert td.num_labels == 3  # still accepted as written
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "'positive' (1 row(s))" in warnings[0] and "'0', '1'" in warnings[0] and "label_map" in warnings[0]


def test_uniform_label_columns_do_not_warn(tmp_path: Path, caplog):
    (tmp_path / "w.tsv").write_text("s\tl\na\tpos\nb\tneg\n")
    (tmp_path / "n.tsv").write_text("s\tl\na\t0\nb\t1\n")
    with caplog.at_level(logging.WARNING, logger="autopeft.data"):
        for name in ("w.tsv", "n.tsv"):
            build_task_data(DataConfig(train=name, validation=name, text="s", label="l"), "classification", tmp_path)
    assert not caplog.records
