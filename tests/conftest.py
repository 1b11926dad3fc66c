"""Shared fixtures: tiny random-initialised models (fast) and paths to the real data/model."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pgserver import postgres_db, postgres_url  # noqa: F401  (fixtures: a throwaway PostgreSQL server)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

torch.set_num_threads(2)


def make_tiny_model(model_type: str = "bert", layers: int = 2, num_labels: int = 2, seed: int = 0):
    """A random-initialised sequence classifier with hidden 32, 2 heads, FFN 64."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    kwargs = {
        "distilbert": dict(n_layers=layers, dim=32, n_heads=2, hidden_dim=64),
    }.get(model_type, dict(num_hidden_layers=layers, hidden_size=32, num_attention_heads=2, intermediate_size=64))
    config = AutoConfig.for_model(model_type, vocab_size=100, num_labels=num_labels, max_position_embeddings=64,
                                  **kwargs)
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config).eval()


@pytest.fixture
def tiny_model():
    """Factory fixture: ``tiny_model("bert", layers=2)``."""
    return make_tiny_model


@pytest.fixture
def tiny_bert():
    return make_tiny_model("bert")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random BERT saved with the MiniLM tokenizer, loadable by path like any HF model."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from autopeft.models import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


TINY_SPACE = """
adapters:
  serial: {size: [0, 4, 8]}
  prefix: {length: [0, 2]}
  lora: {rank: [0, 2, 4], targets: [[query, value]]}
layers: per_layer
hyperparameters:
  learning_rate: {low: 1.0e-3, high: 1.0e-2, log: true}
"""


@pytest.fixture
def write_study(tmp_path, tiny_model_dir):
    """Factory: write a fast study YAML (tiny model, 64 SST-2 rows) into tmp_path; returns its path."""
    train = REPO / "studies" / "data" / "sst2" / "train.tsv"
    dev = REPO / "studies" / "data" / "sst2" / "dev.tsv"
    lines = train.read_text().splitlines()
    (tmp_path / "train.tsv").write_text("\n".join(lines[:65]) + "\n")
    (tmp_path / "dev.tsv").write_text("\n".join(dev.read_text().splitlines()[:41]) + "\n")
    (tmp_path / "space.yaml").write_text(TINY_SPACE)

    def write(text: str | None = None, name: str = "study.yaml", **overrides) -> Path:
        if text is None:
            text = f"""
name: tiny
model: {tiny_model_dir}
task:
  type: classification
  data: {{train: train.tsv, validation: dev.tsv, text: sentence, label: label}}
search_space: space.yaml
objectives: [score, params, memory]
proxy: {{train_examples: 64, epochs: 1, max_length: 32, batch_size: 16, threads: 1}}
optimizer: {{name: random}}
budget: {{trials: 3}}
storage: sqlite:///{tmp_path}/tiny.db
"""
            for key, value in overrides.items():  # a key given twice is an error: replace the fixture's own
                lines = [line for line in text.splitlines() if not line.startswith(f"{key}:")]
                text = "\n".join(lines) + f"\n{key}: {value}\n"
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(autouse=True)
def _isolated_token_cache(tmp_path_factory, monkeypatch):
    """Tests never read or write the user's ~/.cache/autopeft."""
    if "AUTOPEFT_CACHE_DIR" not in __import__("os").environ:
        monkeypatch.setenv("AUTOPEFT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "token-cache"))
