"""Adapter kinds on tiny random models: identity at init, exact parameter counts, gradient flow, export."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from autopeft.adapters import ModuleSpec, PEFTConfig, apply_adapters, count_adapter_params, normalise_config
from autopeft.adapters.io import adapter_parameters, load_adapters, save_adapters
from autopeft.adapters.lora import lora_config_for
from autopeft.adapters.prefix import ATTN_IMPLEMENTATION, prefix_attention_forward
from autopeft.errors import ConfigError
from autopeft.models import model_info

MODEL_TYPES = ["bert", "distilbert", "roberta"]

#: name -> (configuration, freshly attached modules leave the logits unchanged)
CASES: dict[str, tuple[dict, bool]] = {
    "off": ({}, True),
    "serial_ffn": ({"serial": {"size": 4, "layers": [0, 1]}}, True),
    "serial_attention": ({"serial": {"size": 8, "layers": [1], "position": "attention", "activation": "gelu"}}, True),
    "serial_both": ({"serial": {"layers": {0: 2, 1: 6}, "position": "both", "activation": "silu"}}, True),
    "parallel": ({"parallel": {"layers": {0: 4, 1: 2}, "scaling": 2.0}}, True),
    "lora": ({"lora": {"layers": {0: 4, 1: 2}}}, True),
    "lora_all_targets": ({"lora": {"size": 2, "layers": [0, 1], "variant": "rslora", "dropout": 0.1,
                                   "targets": ["query", "key", "value", "attn_out", "ffn_in", "ffn_out"]}}, True),
    "dora": ({"lora": {"size": 4, "layers": [1], "variant": "dora", "targets": ["q", "v", "output"]}}, False),
    "prefix": ({"prefix": {"size": 3, "layers": [0, 1]}}, False),
    "all_four": ({"serial": {"size": 4, "layers": [0, 1], "position": "both"},
                  "parallel": {"size": 8, "layers": [1]},
                  "prefix": {"size": 2, "layers": [0]},
                  "lora": {"layers": {0: 4, 1: 8}, "targets": ["query", "value", "ffn_out"]}}, False),
}
IDENTITY = [name for name, (_, identity) in CASES.items() if identity]


def _inputs(padded: bool = True) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    if padded:
        mask[1, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _logits(model, **inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**(inputs or _inputs())).logits


def _head_names(model) -> set[str]:
    info = model_info(model)
    return {f"{h}.{n}" for h in info.arch.head for n, _ in model.get_submodule(h).named_parameters()}


def _perturb(model) -> None:
    """Randomise all adapter weights so that round trips are not trivially identity."""
    with torch.no_grad():
        for p in adapter_parameters(model).values():
            p.normal_(0, 0.2)


# ------------------------------------------------------------------ (a) identity at initialisation
@pytest.mark.parametrize("model_type", MODEL_TYPES)
@pytest.mark.parametrize("case", IDENTITY)
def test_fresh_adapters_keep_logits(tiny_model, model_type, case):
    model = tiny_model(model_type)
    base = _logits(model)
    apply_adapters(model, PEFTConfig.from_dict(CASES[case][0]))
    torch.testing.assert_close(_logits(model), base, rtol=0, atol=0)


def test_dora_starts_close_to_base(tiny_model):
    model = tiny_model("bert")
    base = _logits(model)
    apply_adapters(model, PEFTConfig.from_dict(CASES["dora"][0]))
    torch.testing.assert_close(_logits(model), base, rtol=0, atol=1e-5)


# ------------------------------------------------------------------ (b) parameter counts
@pytest.mark.parametrize("model_type", MODEL_TYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_trainable_params_match_analytic_count(tiny_model, model_type, case):
    model = tiny_model(model_type)
    config = PEFTConfig.from_dict(CASES[case][0])
    expected = count_adapter_params(config, model_info(model))
    returned = apply_adapters(model, config)
    heads = _head_names(model)
    trainable = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and n not in heads)
    assert trainable == expected == sum(p.numel() for p in returned)
    assert sum(p.numel() for p in adapter_parameters(model).values()) == expected


def test_param_formulas(tiny_model):
    info = model_info(tiny_model("bert"))  # h = 32, ffn 64
    count = lambda d: count_adapter_params(PEFTConfig.from_dict(d), info)  # noqa: E731
    assert count({"serial": {"size": 4, "layers": [0]}}) == 2 * 32 * 4 + 4 + 32
    assert count({"serial": {"size": 4, "layers": [0], "position": "both"}}) == 2 * (2 * 32 * 4 + 4 + 32)
    assert count({"parallel": {"size": 4, "layers": [0, 1]}}) == 2 * (2 * 32 * 4 + 4 + 32)
    assert count({"prefix": {"size": 5, "layers": [1]}}) == 2 * 5 * 32
    assert count({"lora": {"size": 4, "layers": [0], "targets": ["ffn_in"]}}) == 4 * (32 + 64)
    assert count({"lora": {"size": 4, "layers": [0], "targets": ["ffn_in"], "variant": "dora"}}) == 4 * 96 + 64


# ------------------------------------------------------------------ (c) gradients
@pytest.mark.parametrize("model_type", ["bert", "distilbert"])
@pytest.mark.parametrize("case", ["serial_both", "parallel", "prefix", "lora", "dora", "all_four"])
def test_gradients_reach_only_adapters_and_head(tiny_model, model_type, case):
    model = tiny_model(model_type)
    apply_adapters(model, PEFTConfig.from_dict(CASES[case][0]))
    out = model(**_inputs(), labels=torch.tensor([0, 1]))
    out.loss.backward()
    adapters, heads = set(adapter_parameters(model)), _head_names(model)
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == adapters | heads
    assert all(model.get_parameter(n).grad.abs().sum() > 0 for n in heads)


def test_prefix_parameters_get_nonzero_gradients(tiny_model):
    model = tiny_model("bert")
    apply_adapters(model, PEFTConfig.from_dict({"prefix": {"size": 2, "layers": [0, 1]}}))
    model(**_inputs(), labels=torch.tensor([0, 1])).loss.backward()
    grads = {n: p.grad for n, p in adapter_parameters(model).items()}
    assert len(grads) == 4 and all(g is not None and g.abs().sum() > 0 for g in grads.values())


# ------------------------------------------------------------------ prefix attention function
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_prefix_attention_without_prefix_matches_sdpa(tiny_model, model_type):
    stock = tiny_model(model_type)
    model = tiny_model(model_type)
    apply_adapters(model, PEFTConfig.from_dict({"prefix": {"size": 2, "layers": [1]}}))
    assert model.config._attn_implementation == ATTN_IMPLEMENTATION
    info = model_info(model)
    del model.get_submodule(f"{info.arch.layers}.1.{info.arch.self_attention}").autopeft_prefix
    torch.testing.assert_close(_logits(model, **_inputs(padded=False)), _logits(stock, **_inputs(padded=False)),
                               rtol=0, atol=0)
    torch.testing.assert_close(_logits(model), _logits(stock), rtol=0, atol=1e-5)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_prefix_respects_padding(tiny_model, model_type):
    """A padded sequence gives the same logits as the same sequence alone: prefix columns are attendable."""
    model = tiny_model(model_type)
    apply_adapters(model, PEFTConfig.from_dict({"prefix": {"size": 3, "layers": [0, 1]}}))
    _perturb(model)
    inputs = _inputs()
    alone = {k: v[1:, :4] for k, v in inputs.items()}
    torch.testing.assert_close(_logits(model, **inputs)[1], _logits(model, **alone)[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_prefix_attention_function_matches_manual(mask_kind):
    from autopeft.adapters.prefix import Prefix

    g = torch.Generator().manual_seed(0)
    b, heads, q_len, dim, length = 2, 2, 5, 4, 3
    q, k, v = (torch.randn(b, heads, q_len, dim, generator=g) for _ in range(3))
    module = torch.nn.Module()
    module.is_causal = False
    module.autopeft_prefix = Prefix(heads, length, dim, init_std=1.0)
    keep = torch.ones(b, 1, q_len, q_len, dtype=torch.bool)
    keep[1, :, :, 3:] = False
    mask = {"none": None, "bool": keep, "float": torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float).min)}
    out, _ = prefix_attention_forward(module, q, k, v, mask[mask_kind], dropout=0.0, scaling=dim**-0.5)

    kk = torch.cat([module.autopeft_prefix.key.expand(b, -1, -1, -1), k], 2)
    vv = torch.cat([module.autopeft_prefix.value.expand(b, -1, -1, -1), v], 2)
    scores = q @ kk.transpose(-1, -2) * dim**-0.5
    if mask_kind != "none":
        full = torch.cat([torch.ones(b, 1, q_len, length, dtype=torch.bool), keep], -1)
        scores = scores.masked_fill(~full, float("-inf"))
    manual = (scores.softmax(-1) @ vv).transpose(1, 2)
    torch.testing.assert_close(out, manual, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ LoRA targeting and PEFT export
@pytest.mark.parametrize("target", ["query", "key", "value", "attn_out", "ffn_in", "ffn_out"])
def test_lora_wraps_exactly_the_target(tiny_model, target):
    from peft.tuners.lora import LoraLayer

    model = tiny_model("bert", layers=3)
    info = model_info(model)
    apply_adapters(model, PEFTConfig.from_dict({"lora": {"layers": {0: 2, 2: 4}, "targets": [target]}}))
    wrapped = {n for n, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert wrapped == {info.module_path(0, target), info.module_path(2, target)}
    assert model.get_submodule(info.module_path(2, target)).r["default"] == 4


def test_lora_config_patterns(tiny_model):
    info = model_info(tiny_model("bert", layers=3))
    spec = ModuleSpec("lora", {0: 4, 1: 2, 2: 4}, {"targets": ["ffn_out"], "alpha_ratio": 0.5})
    cfg = lora_config_for(spec, info)
    assert (cfg.r, cfg.lora_alpha, cfg.layers_to_transform, cfg.layers_pattern) == (4, 2, [0, 1, 2], "layer")
    assert cfg.rank_pattern == {r"layer\.1\.output\.dense": 2} and cfg.alpha_pattern == {r"layer\.1\.output\.dense": 1}
    assert set(cfg.exclude_modules) == {"attention.output.dense"}  # 'output.dense' is its suffix


@pytest.mark.parametrize(("model_type", "variant"), [("bert", "lora"), ("bert", "dora"), ("distilbert", "rslora")])
def test_lora_export_loads_in_peft(tiny_model, tmp_path, model_type, variant):
    from peft import PeftConfig, PeftModel, get_peft_model

    config = PEFTConfig.from_dict({"lora": {"layers": {0: 4, 1: 2, 2: 4}, "variant": variant,
                                            "targets": ["query", "value", "ffn_out"]}})
    model = tiny_model(model_type, layers=3)
    apply_adapters(model, config)
    _perturb(model)
    with torch.no_grad():
        for n in _head_names(model):
            model.get_parameter(n).normal_()
    want = _logits(model)
    save_adapters(model, config, tmp_path)
    assert {"adapter_config.json", "adapter_model.safetensors", "autopeft_adapters.json"} <= {
        p.name for p in tmp_path.iterdir()}

    peft_model = get_peft_model(tiny_model(model_type, layers=3), PeftConfig.from_pretrained(str(tmp_path)))
    lora_params = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    assert lora_params == count_adapter_params(config, model_info(model))

    loaded = PeftModel.from_pretrained(tiny_model(model_type, layers=3), str(tmp_path)).eval()
    torch.testing.assert_close(_logits(loaded), want, rtol=0, atol=1e-6)


def test_config_only_export_has_no_weights(tiny_model, tmp_path):
    model = tiny_model("bert")
    save_adapters(model, PEFTConfig.from_dict({"lora": {"size": 4, "layers": [0]}}), tmp_path, weights=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "autopeft_adapters.json"]
    meta = json.loads((tmp_path / "autopeft_adapters.json").read_text())
    assert meta["model_type"] == "bert" and meta["config"]["lora"]["variant"] == "lora"


# ------------------------------------------------------------------ (e) autopeft round trip
@pytest.mark.parametrize("model_type", ["bert", "distilbert"])
def test_load_adapters_round_trip(tiny_model, tmp_path, model_type):
    config = PEFTConfig.from_dict(CASES["all_four"][0])
    model = tiny_model(model_type)
    apply_adapters(model, config)
    _perturb(model)
    want = _logits(model)
    save_adapters(model, config, tmp_path)
    assert not (tmp_path / "adapter_config.json").exists()  # PEFT export is for LoRA-only configurations

    fresh = tiny_model(model_type)
    loaded = load_adapters(fresh, tmp_path)
    assert loaded == normalise_config(config, model_info(fresh))
    torch.testing.assert_close(_logits(fresh), want, rtol=0, atol=0)
    assert count_adapter_params(loaded, model_info(fresh)) == sum(
        p.numel() for n, p in fresh.named_parameters() if p.requires_grad and n not in _head_names(fresh))


def test_load_adapters_errors(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="holds no autopeft_adapters.json"):
        load_adapters(tiny_model("bert"), tmp_path)
    config = PEFTConfig.from_dict({"serial": {"size": 4, "layers": [0]}})
    model = tiny_model("bert")
    apply_adapters(model, config)
    save_adapters(model, config, tmp_path)
    with pytest.raises(ConfigError, match="trained on a 'bert' model"):
        load_adapters(tiny_model("distilbert"), tmp_path)
    meta = json.loads((tmp_path / "autopeft_adapters.json").read_text())
    meta["config"]["serial"]["position"] = "both"  # weights for the attention adapters are now missing
    (tmp_path / "autopeft_adapters.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="missing"):
        load_adapters(tiny_model("bert"), tmp_path)


def test_save_refuses_config_the_model_does_not_carry(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="adapter parameters"):
        save_adapters(tiny_model("bert"), PEFTConfig.from_dict({"serial": {"size": 4, "layers": [0]}}), tmp_path)


def test_deepcopy_rebinds_hooks(tiny_model):
    model = tiny_model("bert")
    apply_adapters(model, PEFTConfig.from_dict({"serial": {"size": 4, "layers": [0]}, "parallel": {"size": 4, "layers": [1]}}))
    before = _logits(model)
    clone = copy.deepcopy(model)
    _perturb(clone)
    torch.testing.assert_close(_logits(model), before, rtol=0, atol=0)
    assert not torch.allclose(_logits(clone), before)


# ------------------------------------------------------------------ (f) bad inputs
BAD = [
    ({"lora": {"size": 64, "layers": [0]}}, r"lora rank 64 .* larger than the layer .*\(32 x 32\).* rank <= 32"),
    ({"lora": {"size": 48, "layers": [0], "targets": ["ffn_out"]}}, r"\(64 x 32\).* rank <= 32"),
    ({"lora": {"size": 4, "layers": [0], "targets": ["querry"]}}, r"unknown lora target 'querry'.*valid targets: .*query"),
    ({"lora": {"size": 4, "layers": [0], "variant": "vera"}}, r"variant 'vera'"),
    ({"serial": {"size": 4, "layers": [2]}}, r"layer index 2 .* out of range .* 0\.\.1"),
    ({"serial": {"size": -4, "layers": [0]}}, r"size -4 .* negative"),
    ({"prefix": {"layers": {0: -1}}}, r"size -1 .* negative"),
    ({"serial": {"size": 4, "layers": [0], "colour": "red"}}, r"unknown option.*colour.*allowed: .*activation.*position"),
    ({"serial": {"size": 4, "layers": [0], "position": "middle"}}, r"position 'middle'"),
    ({"serial": {"size": 33, "layers": [0]}}, r"size 33 .* larger than the hidden size 32"),
    ({"parallel": {"size": 64, "layers": [0]}}, r"size 64 .* hidden size 32"),
    ({"adaptr": {"size": 4, "layers": [0]}}, r"unknown adapter kind 'adaptr'"),
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_bad_configs_raise_one_line_config_errors(tiny_model, body, message):
    model = tiny_model("bert")
    with pytest.raises(ConfigError, match=message) as err:
        apply_adapters(model, PEFTConfig.from_dict(body))
    assert "\n" not in str(err.value)


def test_negative_size_in_spec_is_rejected(tiny_model):
    config = PEFTConfig({"serial": ModuleSpec("serial", {0: 4, 1: -2})})
    with pytest.raises(ConfigError, match="negative"):
        count_adapter_params(config, model_info(tiny_model("bert")))
