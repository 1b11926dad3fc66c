"""The memory objective on a device: the quickstart's reference configurations measured by the product's own
``ProxyTrainer.measure_memory`` (a steady-state fp32 step on the widest batch), with the composition at the peak and
the AdamW check (optimizer part vs 8 bytes x trainable parameters), on CUDA and on the CPU side by side.

    python benchmarks/device_memory.py --devices cuda cpu --out benchmarks/data/device_memory_cuda.json
    python benchmarks/device_memory.py --devices cpu --out benchmarks/data/device_memory_cpu.json

``--random-init DIR`` uses a model of the MiniLM shape drawn at random from DIR's config.json and tokenizer (memory
does not depend on the weights' values; used where the MiniLM package cannot travel). Data: the quickstart's SST-2
sample shipped in studies/data/sst2.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _random_model(source: Path) -> str:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    out = Path(tempfile.mkdtemp(prefix="minilm-shape-"))
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(source)).save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return str(out)


def measure(model: str, device: str, threads: int) -> list[dict]:
    from autopeft.adapters import PEFTConfig, normalise_config
    from autopeft.config import StudyConfig
    from autopeft.proxy import ProxyTrainer
    from autopeft.references import REFERENCES, reference_config

    data = REPO / "studies" / "data" / "sst2"
    cfg = StudyConfig.model_validate(dict(
        name="device-memory", model=model, device=device,
        task=dict(type="classification", metric="accuracy",
                  data=dict(train=str(data / "train.tsv"), validation=str(data / "dev.tsv"), text="sentence",
                            label="label")),
        search_space={}, proxy=dict(train_examples=2000, epochs=1, max_length=64, batch_size=32, threads=threads),
        seed=0))
    trainer = ProxyTrainer(cfg)
    rows = []
    for ref in [*REFERENCES, None]:
        name = ref.name if ref else "head-only"
        config = normalise_config(PEFTConfig.from_dict(reference_config(ref, trainer.info) if ref else {}),
                                  trainer.info)
        full = bool(ref and ref.full_finetune)
        model_, groups, _ = trainer._build(config, None, 0, full)
        trainable = sum(p.numel() for g in groups for p in g["params"])
        del model_, groups
        start = time.perf_counter()
        mem = trainer.measure_memory(config, full_finetune=full)
        rows.append(dict(device=device, reference=name, trainable=trainable, peak=mem.peak, breakdown=mem.breakdown,
                         batch=list(trainer.widest_batch_shape()),
                         optimizer_over_8x_trainable=round(mem.breakdown["optimizer"] / (8 * trainable), 4),
                         parts_over_peak=round(sum(mem.breakdown.values()) / mem.peak, 4),
                         seconds=round(time.perf_counter() - start, 2)))
        logging.info("%s %-28s trainable=%d peak=%.1f MiB optimizer/(8 x trainable)=%.3f", device, name, trainable,
                     mem.peak / 2**20, rows[-1]["optimizer_over_8x_trainable"])
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", nargs="+", default=["cpu"])
    ap.add_argument("--random-init", type=Path, help="config + tokenizer directory of the model's shape")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = _random_model(args.random_init) if args.random_init else MODEL
    rows = [r for d in args.devices for r in measure(model, d, args.threads)]
    env = {"torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "model": "random init, MiniLM shape" if args.random_init else MODEL}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "env": env, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
