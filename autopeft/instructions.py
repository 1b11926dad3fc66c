"""Instruction-tuning data for the ``causal_lm`` task: prompt/response pairs -> token ids with a response-only loss.

Each example is rendered with the tokenizer's chat template when it has one (the prompt as the user's turn, the
response as the assistant's), else as ``prompt`` + newline + ``response`` + end-of-sequence. Labels are the token
ids on the response and ``IGNORE_INDEX`` on the prompt and on padding, so the loss (and the perplexity) covers the
response only; generation for exact match starts right after the prompt part (the generation prompt included).
Exact match compares the answers a regex extracts from a generation and from the reference response (GSM8K:
``#### (\\S+)``).

The proxy of the task is :class:`autopeft.causal_lm.CausalLMTrainer`; :func:`autopeft.models.load_causal_lm`
loads the model (SmolLM2 answers "The capital of France is Paris.").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from .errors import ConfigError, DataError

#: label of tokens that do not count in the loss (torch's cross-entropy default)
IGNORE_INDEX = -100


@dataclass
class InstructionSplit:
    """Token ids of one split (unpadded), where each prompt ends, and the reference responses."""

    input_ids: list[list[int]]
    prompt_lengths: list[int]  # the first n tokens are the prompt (no loss; generation starts after them)
    responses: list[str]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def select(self, rows: Sequence[int]) -> "InstructionSplit":
        """The rows at ``rows``, in that order."""
        return InstructionSplit([self.input_ids[i] for i in rows], [self.prompt_lengths[i] for i in rows],
                                [self.responses[i] for i in rows])

    def subset(self, n: int, seed: int) -> "InstructionSplit":
        """A seeded random subset of ``n`` rows (file order kept); ``n >= len(self)`` returns ``self``."""
        import random

        if n >= len(self):
            return self
        return self.select(sorted(random.Random(seed).sample(range(len(self)), n)))

    def response_tokens(self) -> int:
        """Tokens the loss covers."""
        return sum(len(ids) - n for ids, n in zip(self.input_ids, self.prompt_lengths))


def _token_ids(out: Any) -> list[int]:
    """Token ids from ``apply_chat_template(tokenize=True)``, which returns a list or a BatchEncoding."""
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def render(tokenizer: Any, prompt: str, response: str) -> tuple[list[int], int]:
    """(token ids of prompt + response, number of prompt tokens) for one example."""
    if getattr(tokenizer, "chat_template", None):
        user = [{"role": "user", "content": prompt}]
        head = _token_ids(tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=True))
        full = _token_ids(tokenizer.apply_chat_template(user + [{"role": "assistant", "content": response}],
                                                        tokenize=True))
        if full[:len(head)] == head and len(full) > len(head):
            return full, len(head)
        # a template that renders the turns differently once an answer follows: fall back to concatenation
        body = tokenizer(response, add_special_tokens=False)["input_ids"]
        return head + body + _eos(tokenizer), len(head)
    head = tokenizer(prompt + "\n")["input_ids"]
    if head and tokenizer.sep_token_id is not None and head[-1] == tokenizer.sep_token_id:
        head = head[:-1]  # an encoder tokenizer's [SEP] is no part of a prompt
    body = tokenizer(response, add_special_tokens=False)["input_ids"]
    return list(head) + list(body) + _eos(tokenizer), len(head)


def _eos(tokenizer: Any) -> list[int]:
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    return [] if eos is None else [int(eos)]


def encode_instructions(prompts: Sequence[str], responses: Sequence[str], tokenizer: Any,
                        max_length: int) -> InstructionSplit:
    """Render and tokenise every pair; a row over ``max_length`` loses the start of its prompt first (the response
    keeps at least half the length), then the end of its response."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
    ids_out, heads = [], []
    for prompt, response in zip(prompts, responses):
        ids, head = render(tokenizer, prompt, response)
        if len(ids) > max_length:
            keep_prompt = max(max_length - (len(ids) - head), max_length // 2)
            keep_prompt = min(keep_prompt, head)
            ids = (ids[head - keep_prompt:head] + ids[head:])[:max_length]
            head = keep_prompt
        ids_out.append(ids)
        heads.append(head)
    split = InstructionSplit(ids_out, heads, list(responses))
    if split.response_tokens() == 0:
        raise DataError("no response token is left after truncation", "raise proxy.max_length")
    return split


def collate(split: InstructionSplit, rows: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (IGNORE_INDEX off the responses)."""
    width = max(len(split.input_ids[i]) for i in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for r, i in enumerate(rows):
        ids = torch.tensor(split.input_ids[i], dtype=torch.long)
        input_ids[r, :len(ids)] = ids
        attention[r, :len(ids)] = 1
        labels[r, split.prompt_lengths[i]:len(ids)] = ids[split.prompt_lengths[i]:]
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def iter_instruction_batches(split: InstructionSplit, batch_size: int, pad_id: int, shuffle: bool,
                             seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of :func:`collate` in a seeded random order (or file order)."""
    import random

    order = list(range(len(split)))
    if shuffle:
        random.Random(seed).shuffle(order)
    for start in range(0, len(order), batch_size):
        yield collate(split, order[start:start + batch_size], pad_id)


@torch.no_grad()
def greedy_generations(model: torch.nn.Module, tokenizer: Any, split: InstructionSplit, rows: Sequence[int],
                       max_new_tokens: int, batch_size: int = 8) -> list[str]:
    """Greedy continuations of the prompts of ``rows`` (left-padded batches), decoded without special tokens."""
    was_training = model.training
    model.eval()
    pad = tokenizer.pad_token_id
    device = next(model.parameters()).device
    out: list[str] = []
    for start in range(0, len(rows), batch_size):
        prompts = [split.input_ids[i][:split.prompt_lengths[i]] for i in rows[start:start + batch_size]]
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p):] = 1
        generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                   max_new_tokens=max_new_tokens, pad_token_id=pad, use_cache=True)
        out.extend(tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True))
    model.train(was_training)
    return out


def answer_pattern(pattern: str) -> re.Pattern:
    """The compiled exact-match regex; its first group (else the whole match) is the answer."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"exact_match pattern {pattern!r} is not a regular expression ({exc})",
                          r"write e.g. '#### (\S+)'") from None


def extract_answer(text: str, pattern: re.Pattern) -> str | None:
    """The last match's answer in ``text``, without thousands separators or a trailing period; None if none."""
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    answer = last.group(1) if pattern.groups else last.group(0)
    return answer.strip().replace(",", "").rstrip(".")


def exact_match(generations: Sequence[str], references: Sequence[str], pattern: re.Pattern) -> float:
    """Share of generations whose extracted answer equals the reference's (no answer never matches)."""
    if not references:
        return float("nan")
    hits = 0
    for generated, reference in zip(generations, references):
        want = extract_answer(reference, pattern)
        hits += want is not None and extract_answer(generated, pattern) == want
    return hits / len(references)
