"""Pick rules, full-fidelity training of the picked configuration, and round trips of the exported weights."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from autopeft import Study, export_trial, load_adapters
from autopeft.cli import main
from autopeft.config import parse_size
from autopeft.errors import ConfigError
from autopeft.export import RECIPE_FILE, RESULT_FILE, train_recipe
from autopeft.pareto import knee_index, pareto_mask, pick

NAMES = ["score", "params", "memory"]
DIRECTIONS = ["maximize", "minimize", "minimize"]
#: score, params, memory of five trials; row 3 is dominated by row 1
VALUES = np.array([[0.80, 1e5, 3.0e8],
                   [0.85, 1e6, 4.0e8],
                   [0.70, 1e3, 2.0e8],
                   [0.60, 1e6, 5.0e8],
                   [0.84, 2e5, 3.1e8]])

LORA_SPACE = "adapters:\n  lora: {rank: [2, 4], targets: [[query, value]]}\nlayers: all\n"
BOTTLENECK_PREFIX_SPACE = "adapters:\n  serial: {size: [4, 8]}\n  prefix: {length: [2]}\nlayers: all\n"


# ------------------------------------------------------------------ pick rules (pure functions)
@pytest.mark.parametrize("rule,expected", [
    ("max-score", 1),
    ("params<=1e5", 0),            # best score among params <= 1e5
    ("params <= 200000", 4),
    ("memory<=350MB", 4),
    ("memory<=2e8", 2),
    ("knee", 0),                   # closest to the ideal point in [0, 1]-scaled objectives, log10 params
])
def test_pick_rules(rule, expected):
    assert pick(rule, VALUES, NAMES, DIRECTIONS, parse_size=parse_size) == expected


def test_knee_is_a_pareto_point_and_balanced():
    # a convex 2-D front: the knee is the middle point, not an extreme
    values = np.array([[0.9, 1e6], [0.88, 1e4], [0.6, 1e2], [0.5, 1e6]])
    idx = knee_index(values, ["score", "params"], ["maximize", "minimize"])
    assert idx == 1 and pareto_mask(values, ["maximize", "minimize"])[idx]


def test_max_score_ties_prefer_fewer_params():
    values = np.array([[0.9, 1e6, 1e8], [0.9, 1e4, 1e8]])
    assert pick("max-score", values, NAMES, DIRECTIONS, parse_size=parse_size) == 1


@pytest.mark.parametrize("rule,words", [
    ("kne", "unknown pick rule"),
    ("score<=0.5", "unknown pick rule"),
    ("params<=lots", "not a limit"),
    ("params<=10", "no completed trial has params <= 10"),
    ("memory<=1KB", "no completed trial has memory"),
])
def test_bad_pick_rules(rule, words):
    with pytest.raises(ConfigError, match=words):
        pick(rule, VALUES, NAMES, DIRECTIONS, parse_size=parse_size)


# ------------------------------------------------------------------ full-fidelity training round trips
def _study(write_study, tmp_path, space: str, trials: int = 2) -> Study:
    (tmp_path / "space.yaml").write_text(space)
    study = Study.from_yaml(write_study(train="{epochs: 2}"))
    study.optimize(n_trials=trials)
    return study


def _validation_logits(model, trainer_like) -> torch.Tensor:
    """Logits of ``model`` on the validation split of the study (padded batches, as in evaluation)."""
    from autopeft.batches import iter_batches

    out = []
    model.eval()
    with torch.no_grad():
        for batch in iter_batches(trainer_like.validation, 16, trainer_like.pad_id, shuffle=False, seed=0):
            batch = {k: v for k, v in batch.items() if k not in ("labels", "index")}
            out.append(model(**batch).logits)
    return torch.cat(out)


def _base_model(path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()


def test_a_study_and_a_recipe_give_the_trainer_a_trainer_config(write_study):
    """The trainer reads model, task, proxy, seed and device (and base_dir): a study's TrainerConfig holds the study's
    own proxy block; a recipe's scores train.eval_examples validation rows, as the recipe's training did."""
    from autopeft.config import RecipeConfig, TrainerConfig, load_study_config

    cfg = load_study_config(write_study(train="{eval_examples: 7}", seed="5"))
    trainer_cfg = cfg.trainer_config()
    assert isinstance(trainer_cfg, TrainerConfig) and set(trainer_cfg.model_dump()) == {"model", "task", "proxy",
                                                                                         "seed", "device"}
    assert trainer_cfg.proxy is cfg.proxy and trainer_cfg.base_dir == cfg.base_dir and trainer_cfg.seed == 5
    recipe = RecipeConfig(name="r", model=cfg.model, task=cfg.task, adapters={}, proxy=cfg.proxy, train=cfg.train)
    assert recipe.trainer_config().proxy.eval_examples == 7 and cfg.proxy.eval_examples is None


def test_trained_lora_export_round_trips(write_study, tmp_path, tiny_model_dir):
    from peft import PeftModel

    study = _study(write_study, tmp_path, LORA_SPACE)
    record = study.pick("max-score")
    out = export_trial(study, record, tmp_path / "lora")
    trained = train_recipe(out / RECIPE_FILE, out)
    files = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "autopeft_adapters.safetensors", RESULT_FILE} <= files
    result = json.loads((out / RESULT_FILE).read_text())
    assert result["train_examples"] == 64 and result["epochs"] == 2  # whole train split, epochs from the YAML

    want = _validation_logits(trained.model, study.trainer)
    # the weights really moved away from the base model (else the round trip would prove nothing)
    assert not torch.allclose(want, _validation_logits(_base_model(tiny_model_dir), study.trainer))

    peft_model = PeftModel.from_pretrained(_base_model(tiny_model_dir), str(out))
    torch.testing.assert_close(_validation_logits(peft_model, study.trainer), want, rtol=0, atol=1e-5)

    # the counts the front showed are what PEFT and torch count on the export
    measured = record.attrs["measured"]
    lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    assert measured["params"] == result["params"] == lora > 0
    assert result["trainable"] == sum(p.numel() for p in trained.model.parameters() if p.requires_grad)
    assert measured["trainable"] == result["trainable"] == lora + study.trainer.head_params()
    source = yaml.safe_load((out / RECIPE_FILE).read_text())["source"]
    assert (source["params"], source["trainable"]) == (measured["params"], measured["trainable"])

    hf_model = _base_model(tiny_model_dir)
    hf_model.load_adapter(str(out))
    torch.testing.assert_close(_validation_logits(hf_model, study.trainer), want, rtol=0, atol=1e-5)

    ours = _base_model(tiny_model_dir)
    load_adapters(ours, out)
    torch.testing.assert_close(_validation_logits(ours, study.trainer), want, rtol=0, atol=1e-5)


def test_trained_bottleneck_prefix_export_round_trips(write_study, tmp_path, tiny_model_dir):
    study = _study(write_study, tmp_path, BOTTLENECK_PREFIX_SPACE)
    record = study.pick("knee")
    assert set(record.config) == {"serial", "prefix"}
    out = export_trial(study, record, tmp_path / "bottleneck")
    trained = train_recipe(out / RECIPE_FILE, out)
    assert not (out / "adapter_config.json").exists()  # not a PEFT method: autopeft's own format only
    want = _validation_logits(trained.model, study.trainer)
    model = _base_model(tiny_model_dir)
    load_adapters(model, out)
    torch.testing.assert_close(_validation_logits(model, study.trainer), want, rtol=0, atol=1e-5)


def test_cli_export_pick_train_and_retrain(write_study, tmp_path, capsys):
    from safetensors.torch import load_file

    (tmp_path / "space.yaml").write_text(LORA_SPACE)
    path = write_study()
    assert main(["run", str(path), "--trials", "2"]) == 0
    capsys.readouterr()
    first = tmp_path / "first"
    assert main(["export", str(path), "--pick", "params<=1e9", "--train", "-o", str(first)]) == 0
    assert "(trained)" in capsys.readouterr().out
    assert (first / "adapter_model.safetensors").is_file()

    # the exported recipe re-runs the same training
    again = tmp_path / "again"
    assert main(["train", str(first / RECIPE_FILE), "-o", str(again)]) == 0
    assert "trained accuracy=" in capsys.readouterr().out
    a, b = load_file(first / "autopeft_adapters.safetensors"), load_file(again / "autopeft_adapters.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_cli_export_bad_input_writes_nothing(write_study, tmp_path, capsys):
    path = write_study()
    assert main(["run", str(path), "--trials", "1"]) == 0
    capsys.readouterr()
    out = tmp_path / "never"
    assert main(["export", str(path), "--pick", "kneee", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown pick rule 'kneee'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert main(["train", str(path), "-o", str(out)]) == 2  # a study file is not a recipe
    assert "not an exported recipe" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("change,words", [
    (("train: {}", "trian: {}"), "did you mean 'train'"),
    (("size: 4", "size: 400"), "larger than the layer"),
    (("train.tsv", "nothere.tsv"), "nothere.tsv"),
])
def test_bad_recipe_exits_2_and_writes_nothing(write_study, tmp_path, tiny_model_dir, capsys, change, words):
    write_study()  # writes the data files
    good = f"""name: r
model: {tiny_model_dir}
task: {{data: {{train: train.tsv, validation: dev.tsv, text: sentence, label: label}}}}
adapters: {{lora: {{size: 4, layers: [0]}}}}
train: {{}}
"""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(good.replace(*change))
    out = tmp_path / "never"
    assert main(["train", str(recipe), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
