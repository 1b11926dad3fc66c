"""The proxy run: activation cache exactness, no weight leaks between trials, determinism."""
from __future__ import annotations

import copy

import pytest
import torch

from autopeft.activation_cache import ActivationCache, cached_batches, start_at_layer
from autopeft.adapters import PEFTConfig, apply_adapters
from autopeft.config import load_study_config
from autopeft.batches import EncodedSplit, iter_batches
from autopeft.models import model_info
from autopeft.proxy import ProxyTrainer

CONFIGS = {
    "lora_top": {"lora": {"size": 4, "layers": [1], "targets": ["query", "value"]}},
    "serial_parallel_top": {"serial": {"size": 4, "layers": [1]}, "parallel": {"size": 4, "layers": [1]}},
    "prefix_top": {"prefix": {"size": 2, "layers": [1]}},
    "head_only": {},
}


def _split(n=12, seed=0) -> EncodedSplit:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 10, (n,), generator=g).tolist()
    ids = [torch.randint(5, 100, (m,), generator=g).tolist() for m in lengths]
    return EncodedSplit(ids, None, torch.randint(0, 2, (n,), generator=g), lengths)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_cached_step_equals_uncached(name, arch, tiny_model):
    """With dropout off, loss and gradients from cached hidden states equal the full forward's."""
    base = tiny_model(arch, layers=3)
    for m in base.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    info = model_info(base)
    config = PEFTConfig.from_dict(CONFIGS[name])
    torch.manual_seed(1)
    model = __import__("copy").deepcopy(base)
    apply_adapters(model, config)
    if name == "lora_top":  # LoRA B starts at zero: perturb so the adapter really acts
        for n, p in model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.1)
    k = min((min(s.layers) for s in config.modules.values()), default=info.num_layers)
    split = _split()
    cache = ActivationCache(base, info, pad_id=0, budget_bytes=2**30)
    packed = cache.get("train", split, k)
    assert packed is not None
    model.train()
    full = next(iter_batches(split, 6, 0, shuffle=True, seed=3))
    loss_full = model(**full).loss
    loss_full.backward()
    grads_full = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    with start_at_layer(model, info, k):
        cached = next(cached_batches(packed, split, 6, 0, shuffle=True, seed=3))
        loss_cached = model(**cached).loss
        loss_cached.backward()
    torch.testing.assert_close(loss_cached, loss_full, rtol=1e-5, atol=1e-5)
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads_full[n], rtol=1e-4, atol=1e-5, msg=n)
    # the context restores the full model
    assert len(model.get_submodule(info.arch.layers)) == info.num_layers


def _trainer(write_study, **proxy) -> ProxyTrainer:
    cfg = load_study_config(write_study())
    cfg.proxy = cfg.proxy.model_copy(update=proxy)
    return ProxyTrainer(cfg)


def test_trials_do_not_leak_weights_and_repeat_exactly(write_study):
    trainer = _trainer(write_study)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    a = PEFTConfig.from_dict({"serial": {"size": 4, "layers": [0, 1]}, "lora": {"size": 2, "layers": [1]}})
    b = PEFTConfig.from_dict({"prefix": {"size": 2, "layers": [1]}})
    first = trainer.run(b)
    trainer.run(a, {"learning_rate": 5e-2})
    again = trainer.run(b)
    after = trainer.model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert first.score == again.score and first.train_loss == again.train_loss
    assert trainer.model.config._attn_implementation == "sdpa"  # prefix switched only the copy


def test_cache_is_used_and_scores_match_uncached_without_dropout(write_study, tmp_path):
    trainer = _trainer(write_study, measure_memory=False)
    for m in trainer.model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    config = PEFTConfig.from_dict({"lora": {"size": 2, "layers": [1], "targets": ["query", "value"]}})
    cached = trainer.run(config)
    trainer.cfg.proxy.activation_cache = False
    plain = trainer.run(config)
    assert cached.cached_from_layer == 1 and plain.cached_from_layer is None
    assert cached.score == pytest.approx(plain.score, abs=0.03)
    assert cached.train_loss == pytest.approx(plain.train_loss, rel=1e-3)


def test_cache_respects_budget(write_study):
    trainer = _trainer(write_study, activation_cache_mb=0.001)
    config = PEFTConfig.from_dict({"lora": {"size": 2, "layers": [1]}})
    result = trainer.run(config)
    assert result.cached_from_layer is None and trainer.activations.bytes == 0


def test_learning_curve_snapshots(write_study):
    trainer = _trainer(write_study, measure_memory=False)
    result = trainer.run(PEFTConfig.from_dict({"lora": {"size": 2, "layers": [0, 1]}}), eval_at=(16, 32))
    assert sorted(result.curve) == [16, 32, 64]
    assert result.curve[64] == result.score


def test_token_cache_round_trip(write_study, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOPEFT_CACHE_DIR", str(tmp_path / "cache"))
    first = _trainer(write_study)
    files = list((tmp_path / "cache" / "tokens").glob("*.pt"))
    assert len(files) == 2  # train and validation
    second = _trainer(write_study)
    assert second.train.input_ids == first.train.input_ids and torch.equal(second.train.labels, first.train.labels)
    (tmp_path / "dev.tsv").write_text((tmp_path / "dev.tsv").read_text() + "one more sentence\t1\n")
    third = _trainer(write_study)
    assert len(third.validation) == len(first.validation) + 1
    assert len(list((tmp_path / "cache" / "tokens").glob("*.pt"))) == 3


def test_precision_resolution():
    from autopeft.proxy import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert resolve_precision("auto", cpu) is (torch.bfloat16 if native else None)


def test_bf16_trains_and_memory_objective_stays_fp32(write_study):
    """bf16 autocast changes the matmuls, not what is trained or counted: same params, same measured memory
    (the profiled step is fp32), finite loss, and weights stay fp32."""
    config = PEFTConfig.from_dict({"serial": {"size": 4, "layers": [0, 1]}, "lora": {"size": 2, "layers": [1]}})
    fp32 = _trainer(write_study, precision="fp32").fit(config)
    bf16_model, bf16 = _trainer(write_study, precision="bf16").fit(config)
    assert bf16.params == fp32[1].params and bf16.memory == fp32[1].memory
    assert torch.isfinite(torch.tensor(bf16.train_loss)) and 0.0 <= bf16.score <= 1.0
    assert all(p.dtype == torch.float32 for p in bf16_model.parameters())


def test_memory_measurements_from_two_threads_do_not_crash_the_process():
    """torch's profiler is process-global: two threads measuring at once (e.g. two Study objects run from Python
    threads) segfaulted in its teardown. Run in a subprocess, since the failure kills the interpreter."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    code = textwrap.dedent("""
        import sys, threading, torch
        sys.path.insert(0, sys.argv[1])
        from conftest import make_tiny_model
        from autopeft.memory import measure_step_memory
        # transformers' lazy module is not safe to import from two threads at once (import autopeft no longer
        # imports it): load what make_tiny_model uses first
        from transformers import AutoConfig, AutoModelForSequenceClassification
        torch.set_num_threads(1)
        peaks = []
        def work():
            model = make_tiny_model()
            x = torch.randint(0, 100, (8, 16))
            for _ in range(15):
                peaks.append(measure_step_memory(
                    lambda: model(input_ids=x, labels=torch.zeros(8, dtype=torch.long)).loss.backward(),
                    torch.device("cpu")).peak)
        threads = [threading.Thread(target=work) for _ in range(2)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert len(peaks) == 30 and min(peaks) > 0, peaks
    """)
    r = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]


def test_each_adapter_kind_trains_at_its_own_default_rate_unless_a_rate_is_set(write_study, monkeypatch):
    """A prefix mixed with adapters keeps its own (higher) default rate; a set rate applies to every kind."""
    from autopeft.adapters import get_adapter_kind

    trainer = _trainer(write_study, measure_memory=False, train_examples=8)
    seen: list[list[tuple[int, float]]] = []
    real = torch.optim.AdamW

    def spy(groups, **kw):
        seen.append([(sum(p.numel() for p in g["params"]), g["lr"]) for g in groups])
        return real(groups, **kw)

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    config = PEFTConfig.from_dict({"serial": {"size": 4, "layers": [1]}, "prefix": {"size": 2, "layers": [1]}})
    result = trainer.run(config)
    prefix_lr, serial_lr = get_adapter_kind("prefix").default_lr, get_adapter_kind("serial").default_lr
    assert prefix_lr != serial_lr
    rates = sorted(lr for _, lr in seen[-1])
    assert sorted([prefix_lr, serial_lr, trainer.cfg.proxy.head_learning_rate]) == rates
    assert sum(n for n, lr in seen[-1] if lr != trainer.cfg.proxy.head_learning_rate) == result.params
    trainer.run(config, {"learning_rate": 3e-4})
    assert sorted(lr for _, lr in seen[-1]) == sorted([3e-4, 3e-4, trainer.cfg.proxy.head_learning_rate])


def test_bert_pooler_trains_with_the_head_and_is_not_counted_as_adapter_parameters(write_study):
    """The pooler is BERT's counterpart of DistilBERT's pre_classifier: a frozen one (untrained for the task in
    sentence-transformers checkpoints) kept short proxies at chance."""
    from autopeft.adapters import count_adapter_params

    trainer = _trainer(write_study, measure_memory=False)
    info = trainer.info
    pooler = dict(trainer.model.bert.pooler.named_parameters())
    assert "bert.pooler" in info.arch.head
    body = sum(p.numel() for n, p in trainer.model.named_parameters() if not n.startswith(("bert.pooler", "classifier")))
    assert info.base_params == body
    config = PEFTConfig.from_dict({"serial": {"size": 4, "layers": [1]}})
    model, result = trainer.fit(config)
    for n, p in model.bert.pooler.named_parameters():
        assert p.requires_grad and not torch.equal(p, pooler[n]), n
    assert result.params == count_adapter_params(config, info)


def test_validation_loss_is_the_cross_entropy_of_the_scored_predictions(write_study):
    trainer = _trainer(write_study, measure_memory=False)
    model, result = trainer.fit(PEFTConfig.from_dict({"lora": {"size": 2, "layers": [0, 1]}}))
    logits, labels = trainer.logits(model)
    assert result.validation_loss == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-4)
    assert result.score == pytest.approx((logits.argmax(-1) == labels).float().mean().item())
    stopped = trainer.run(PEFTConfig.from_dict({"lora": {"size": 2, "layers": [0, 1]}}), eval_at=(16,),
                          on_eval=lambda n, score: False)
    assert stopped.stopped_at == 16 and stopped.validation_loss is None  # not measured where the run stopped


def test_a_new_task_head_is_the_same_in_every_load_whatever_the_global_seed(tiny_model_dir, tmp_path):
    """Workers, resumed runs and exports each load the model: their heads must start alike."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    from autopeft.models import load_model

    body = tmp_path / "body"  # a checkpoint without a task head, like sentence-transformers models
    BertForSequenceClassification.from_pretrained(tiny_model_dir).bert.save_pretrained(body)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(body)
    heads = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model, _ = load_model(str(body), num_labels=3)
        after_load = torch.rand(1)
        torch.manual_seed(seed)
        assert torch.equal(after_load, torch.rand(1))  # loading leaves the caller's random stream alone
        heads.append(model.classifier.weight.detach().clone())
    assert torch.equal(*heads)


def test_each_seed_draws_its_own_new_head_and_seed_0_keeps_the_loaded_one(tiny_model_dir, tmp_path):
    """Refinement seeds vary the head's draw too; the pretrained pooler and the caller's stream stay as they are."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    from autopeft.models import HEAD_INIT_SEED, draw_head, load_model

    body = tmp_path / "body"
    BertForSequenceClassification.from_pretrained(tiny_model_dir).bert.save_pretrained(body)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(body)
    loaded, _ = load_model(str(body), num_labels=3)
    heads = {}
    for seed in (HEAD_INIT_SEED, 1, 2, 1):
        model = copy.deepcopy(loaded)
        torch.manual_seed(123)
        expected = torch.rand(1)
        torch.manual_seed(123)
        draw_head(model, seed)
        assert torch.equal(torch.rand(1), expected)  # the caller's random stream is left alone
        assert torch.equal(model.bert.pooler.dense.weight, loaded.bert.pooler.dense.weight)
        head = model.classifier.weight.detach().clone()
        assert torch.equal(heads.setdefault(seed, head), head)  # the same seed draws the same head
        assert torch.count_nonzero(model.classifier.bias) == 0
    assert torch.equal(heads[HEAD_INIT_SEED], loaded.classifier.weight)
    assert not torch.equal(heads[1], heads[HEAD_INIT_SEED]) and not torch.equal(heads[1], heads[2])
    std = model.config.initializer_range
    assert 0.5 * std < heads[2].std().item() < 2 * std  # drawn like the load-time head, not left at zero

    other, _ = load_model(str(body), num_labels=3)  # another process's load draws seed 1's head alike
    draw_head(other, 1)
    assert torch.equal(other.classifier.weight, heads[1])


@pytest.mark.parametrize("model_type", ["distilbert", "roberta"])
def test_draw_head_redraws_every_new_head_module_of_other_architectures(model_type, tmp_path):
    """DistilBERT's head is pre_classifier + classifier, RoBERTa's classifier.dense + out_proj: all are redrawn."""
    from transformers import AutoTokenizer

    from autopeft.models import NEW_KEYS_ATTR, draw_head, load_model, resolve_model_path
    from conftest import make_tiny_model

    body = tmp_path / "body"  # a checkpoint without a task head
    make_tiny_model(model_type).base_model.save_pretrained(body)
    AutoTokenizer.from_pretrained(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")).save_pretrained(body)
    loaded, _ = load_model(str(body), num_labels=3)
    new = getattr(loaded, NEW_KEYS_ATTR)
    assert new and all(k.startswith(("pre_classifier.", "classifier.")) for k in new)
    drawn, again = copy.deepcopy(loaded), copy.deepcopy(loaded)
    draw_head(drawn, 1)
    draw_head(again, 1)
    before, after, twice = loaded.state_dict(), drawn.state_dict(), again.state_dict()
    for key in before:
        assert torch.equal(after[key], twice[key])  # the same seed draws the same head
        if key in new and key.endswith("weight"):
            assert not torch.equal(after[key], before[key]), key
        elif key not in new:
            assert torch.equal(after[key], before[key]), key  # the pretrained body is untouched
