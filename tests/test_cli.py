"""The CLI end to end on a tiny model: run, resume, pareto, export, status, and bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autopeft.cli import main


def run_cli(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "autopeft.cli", *args], capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def test_run_resume_pareto_export(write_study, tmp_path, capsys):
    study = write_study()
    assert main(["run", str(study), "--trials", "3"]) == 0
    assert "Pareto front" in capsys.readouterr().out
    assert main(["run", str(study), "--trials", "4"]) == 0
    capsys.readouterr()
    assert main(["status", str(study)]) == 0
    assert "4 trials" in capsys.readouterr().out

    import optuna

    trials = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db").trials
    assert len(trials) == 4
    for t in trials:
        assert t.state.name in ("COMPLETE", "FAIL")
        assert "config" in t.user_attrs and "hyperparameters" in t.user_attrs
        if t.state.name == "COMPLETE":
            assert set(t.user_attrs["proxy"]) >= {"train_examples", "epochs", "batch_size"}
            assert t.user_attrs["measured"]["params"] == t.values[1]
            assert t.values[2] > 0  # measured memory
        else:
            assert t.user_attrs["fail_reason"]

    assert main(["pareto", str(study), "--format", "json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert front and all({"trial", "values", "config"} <= set(p) for p in front)
    assert set(front[0]["values"]) == {"score", "params", "memory"}

    assert main(["pareto", str(study), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("trial,score,params,memory")

    out = tmp_path / "export"
    number = front[0]["trial"]
    assert main(["export", str(study), "--trial", str(number), "-o", str(out)]) == 0
    assert (out / "autopeft.yaml").is_file()
    assert (out / "autopeft_adapters.json").is_file()


def test_exported_lora_loads_with_peft(write_study, tmp_path, tiny_model_dir, capsys):
    space = tmp_path / "lora_space.yaml"
    space.write_text("adapters:\n  lora: {rank: [0, 2, 4], per_layer: true, targets: [[query, value], [query, key, value, attn_out]]}\n")
    study = write_study()
    study.write_text(study.read_text().replace("search_space: space.yaml", f"search_space: {space}"))
    assert main(["run", str(study), "--trials", "2"]) == 0
    capsys.readouterr()
    assert main(["pareto", str(study), "--format", "json"]) == 0
    front = [p for p in json.loads(capsys.readouterr().out) if p["config"]]
    assert front, "expected a Pareto point with LoRA modules"
    point = front[0]
    out = tmp_path / "lora_export"
    assert main(["export", str(study), "--trial", str(point["trial"]), "-o", str(out)]) == 0

    from peft import PeftConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    cfg = PeftConfig.from_pretrained(out)
    model = get_peft_model(AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2), cfg)
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert lora == point["values"]["params"]


def test_resume_keeps_study_and_refuses_other_objectives(write_study, capsys):
    study = write_study()
    assert main(["run", str(study), "--trials", "1"]) == 0
    study.write_text(study.read_text().replace("objectives: [score, params, memory]", "objectives: [score, params]"))
    assert main(["run", str(study), "--trials", "2"]) == 2
    assert "optimises" in capsys.readouterr().err


BAD_STUDIES = [
    # (description, replacement (old, new) in the good YAML or full text, expected words)
    ("empty file", "", "empty"),
    ("malformed yaml", "name: [unclosed\n", "malformed YAML"),
    ("not a mapping", "- a\n- b\n", "mapping"),
    ("misspelt key", ("budget: {trials: 3}", "budjet: {trials: 3}"), "did you mean 'budget'"),
    ("unknown adapter kind", ("search_space: space.yaml", "search_space: {adapters: {lorra: {rank: [4]}}}"), "did you mean 'lora'"),
    ("negative size", ("search_space: space.yaml", "search_space: {adapters: {serial: {size: [-4]}}}"), "negative"),
    ("layer out of range", ("search_space: space.yaml", "search_space: {adapters: {serial: {size: [4]}}, layers: [0, 9]}"), "out of range"),
    ("rank larger than layer", ("search_space: space.yaml", "search_space: {adapters: {lora: {rank: [0, 512]}}}"), "rank"),
    ("unknown target module", ("search_space: space.yaml", "search_space: {adapters: {lora: {rank: [4], targets: [[query, vaule]]}}}"), "vaule"),
    ("missing model dir", ("model: ", "model: /nonexistent/model/dir #"), "does not exist"),
    ("missing data file", ("train: train.tsv", "train: nothere.tsv"), "nothere.tsv"),
    ("missing column", ("text: sentence", "text: sentense"), "sentense"),
    ("unknown objective", ("objectives: [score, params, memory]", "objectives: [score, parms]"), "did you mean 'params'"),
    ("unknown optimizer", ("optimizer: {name: random}", "optimizer: {name: bayes}"), "unknown optimizer"),
    ("bad duration", ("budget: {trials: 3}", "budget: {trials: 3, time: soon}"), "duration"),
    ("unreachable storage", ("storage: sqlite:///", "storage: postgresql://user:secret@127.0.0.1:1/db #"), "cannot open storage"),
    ("unknown metric", ("type: classification", "type: classification\n  metric: acuracy"), "did you mean 'accuracy'"),
]


@pytest.mark.parametrize("desc,change,words", BAD_STUDIES, ids=[b[0] for b in BAD_STUDIES])
def test_bad_input_exits_2_with_one_line(desc, change, words, write_study, tmp_path):
    good = write_study().read_text()
    text = change if isinstance(change, str) else good.replace(*change)
    assert text != good, desc
    path = write_study(text, name="bad.yaml")
    code, out, err = run_cli("run", str(path))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert words.lower() in lines[0].lower(), lines[0]
    assert "secret" not in err
    assert not (tmp_path / "tiny.db").exists(), "bad input must not write the storage"


def test_missing_study_file_and_unseen_labels(write_study, tmp_path):
    code, _, err = run_cli("run", str(tmp_path / "nope.yaml"))
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    dev = tmp_path / "dev.tsv"
    dev.write_text(dev.read_text() + "an extra sentence\t7\n")
    code, _, err = run_cli("validate", str(write_study()))
    assert code == 2 and "7" in err and len(err.strip().splitlines()) == 1


def test_validate_prints_space_size(write_study):
    code, out, err = run_cli("validate", str(write_study()))
    assert code == 0, err
    assert "adapter configurations" in out and "min 0" in out
