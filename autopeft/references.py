"""Hand-made reference configurations trained beside the search, so users see whether it beat them.

Each entry is a configuration every PEFT paper compares against, placed in every layer. They are
stored as trials of a sibling study (``<name>.references``) so that samplers never see them as
points of the search space; reports and ``autopeft pareto`` show them flagged.

Encoders get the AutoPEFT paper's set; decoders the recipes LLM users reach for (LoRA r=8 on query/value, LoRA
r=16 on every linear layer), with full fine-tuning only when the study asks (it trains every weight of a model
that is large on the machines decoders run on).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # kept light: the command line counts the references before torch is loaded
    from .models import ModelInfo

#: rate of full fine-tuning unless the trial sets one (the usual BERT-family rate; proxy.learning_rate is for adapters)
FULL_FINETUNE_LR = 5e-5


@dataclass(frozen=True)
class Reference:
    name: str
    adapters: dict[str, Any]  # PEFTConfig.to_dict() form, with "layers": "all" filled in per model
    full_finetune: bool = False
    hyperparameters: dict[str, Any] | None = None


REFERENCES: tuple[Reference, ...] = (
    Reference("full fine-tuning", {}, full_finetune=True, hyperparameters={"learning_rate": FULL_FINETUNE_LR}),
    Reference("Houlsby adapter (serial m=64)", {"serial": {"size": 64, "position": "both"}}),
    Reference("parallel adapter (m=64, s=4)", {"parallel": {"size": 64, "scaling": 4.0}}),
    Reference("prefix tuning (l=30)", {"prefix": {"size": 30}}),
    Reference("LoRA (r=8, query/value)", {"lora": {"size": 8, "alpha_ratio": 2, "targets": ["query", "value"]}}),
)

FULL_FINETUNE = REFERENCES[0]

#: decoder references (full fine-tuning is added by :func:`references_for` when asked)
DECODER_REFERENCES: tuple[Reference, ...] = (
    Reference("LoRA (r=8, query/value)", {"lora": {"size": 8, "alpha_ratio": 2, "targets": ["query", "value"]}}),
    Reference("LoRA (r=16, all-linear)", {"lora": {"size": 16, "alpha_ratio": 2, "targets": ["all-linear"]}}),
)


def references_for(info: ModelInfo, full_finetune: bool | None = None) -> tuple[Reference, ...]:
    """The references a study on this model trains; ``full_finetune`` None: encoders yes, decoders no."""
    if not info.decoder:
        return REFERENCES if full_finetune is not False else REFERENCES[1:]
    return ((FULL_FINETUNE,) if full_finetune else ()) + DECODER_REFERENCES


def reference_config(ref: Reference, info: ModelInfo) -> dict[str, Any]:
    """The reference's adapters placed in every layer of the model, sizes capped at the hidden size."""
    out = {}
    for kind, body in ref.adapters.items():
        body = dict(body)
        body["size"] = min(int(body["size"]), info.hidden_size)
        body["layers"] = list(range(info.num_layers))
        out[kind] = body
    return out
