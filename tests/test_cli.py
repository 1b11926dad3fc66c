"""The CLI end to end on a tiny model: run, resume, pareto, export, status (bad input: test_bad_input.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    assert "4 counted" in capsys.readouterr().out  # closed-unrun duplicates are stored but not counted

    import optuna

    trials = [t for t in optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db").trials
              if not t.user_attrs.get("duplicate")]
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
    assert all(p["validation_loss"] > 0 for p in front if p["state"] == "COMPLETE")

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


# Bad input (YAML, space, objectives, data, model, storage, flags): one table in test_bad_input.py.


def test_validate_prints_space_size(write_study):
    code, out, err = run_cli("validate", str(write_study()))
    assert code == 0, err
    assert "adapter configurations" in out and "min 0" in out
