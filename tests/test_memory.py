"""Memory as the front shows it: the peak of a steady-state training step, its composition, budgets on it,
and one training regime for every trial (issue 14)."""
from __future__ import annotations

import optuna
import pytest
import torch

from autopeft.adapters import PEFTConfig
from autopeft.config import load_study_config
from autopeft.errors import ConfigError, TrialFailed
from autopeft.memory import MEMORY_PARTS, measure_step_memory
from autopeft.proxy import ProxyTrainer

LORA = {"lora": {"size": 2, "layers": [0, 1], "targets": ["query", "value"]}}


def _trainer(write_study, **proxy) -> ProxyTrainer:
    cfg = load_study_config(write_study())
    cfg.proxy = cfg.proxy.model_copy(update=proxy)
    return ProxyTrainer(cfg)


def _trained_bytes(trainer: ProxyTrainer, config: PEFTConfig, full: bool) -> tuple[int, int]:
    """(bytes of every weight, bytes of the trained parameters) of the model a trial trains."""
    model, groups, _ = trainer._build(config, None, 0, full)
    trained = sum(p.numel() * p.element_size() for g in groups for p in g["params"])
    return sum(p.numel() * p.element_size() for p in model.parameters()), trained


@pytest.mark.parametrize("full", [False, True], ids=["lora", "full-finetune"])
def test_steady_state_peak_holds_weights_gradients_and_adam_state(write_study, full):
    """AdamW allocates its moments in the first step(): a steady-state step holds them beside the activations, so
    the peak covers weights + gradients + two moments of every trained parameter, and the parts add up."""
    trainer = _trainer(write_study)
    config = PEFTConfig.from_dict({} if full else LORA)
    weights, trained = _trained_bytes(trainer, config, full)
    mem = trainer.measure_memory(config, full_finetune=full)
    assert set(mem.breakdown) == set(MEMORY_PARTS)
    assert sum(mem.breakdown.values()) == mem.peak
    assert mem.peak >= weights + trained + 2 * trained  # weights, gradients, two AdamW moments
    assert mem.breakdown["optimizer"] >= 2 * trained  # 8 bytes per fp32 parameter
    assert mem.breakdown["optimizer"] <= 1.2 * 2 * trained
    assert mem.breakdown["weights"] >= weights
    # the same configuration measures the same, whatever the seed (the widest batch, not a random one)
    assert trainer.measure_memory(config, seed=5, full_finetune=full).peak == mem.peak


def test_the_trial_result_carries_the_breakdown_and_both_parameter_counts(write_study):
    trainer = _trainer(write_study)
    result = trainer.run(PEFTConfig.from_dict(LORA))
    head = trainer.head_params()
    assert head > 0 and result.trainable == result.params + head
    assert sum(result.memory_breakdown.values()) == result.memory
    assert result.memory_batch == list(trainer.widest_batch_shape())
    head_only = trainer.run(PEFTConfig.from_dict({}))
    assert head_only.params == 0 and head_only.trainable == head


def test_memory_grows_with_batch_width(tiny_model):
    model = tiny_model("bert")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step_of(width: int):
        x = torch.randint(5, 100, (8, width))

        def step():
            opt.zero_grad(set_to_none=True)
            model(input_ids=x, labels=torch.zeros(8, dtype=torch.long)).loss.backward()
            opt.step()
        return step

    narrow = measure_step_memory(step_of(8), torch.device("cpu"), model.parameters(), opt)
    wide = measure_step_memory(step_of(60), torch.device("cpu"), model.parameters(), opt)
    assert wide.peak > narrow.peak
    assert wide.breakdown["activations"] > narrow.breakdown["activations"]


def test_a_measurement_that_sees_nothing_fails_loudly(monkeypatch):
    monkeypatch.setattr("autopeft.memory._profile_cpu_step", lambda step: (0, {}))
    with pytest.raises(TrialFailed, match="no allocations"):
        measure_step_memory(lambda: None, torch.device("cpu"))


def test_an_empty_measurement_fails_the_trial_and_the_study_goes_on(write_study, monkeypatch):
    from autopeft.study import Study

    monkeypatch.setattr("autopeft.memory._profile_cpu_step", lambda step: (0, {}))
    study = Study.from_yaml(write_study())
    study.optimize(n_trials=1)
    trials = study.trials()
    assert trials and all(t.state == "FAIL" and "no allocations" in t.fail_reason for t in trials)


def test_measure_memory_false_with_a_memory_objective_is_a_config_error(write_study):
    from autopeft.study import Study

    path = write_study(proxy="{measure_memory: false}")
    text = path.read_text().replace("proxy: {train_examples: 64, epochs: 1, max_length: 32, batch_size: 16, "
                                    "threads: 1}\n", "")
    path.write_text(text)
    with pytest.raises(ConfigError, match="measure_memory"):
        Study.from_yaml(path)


def test_a_trial_over_max_memory_when_measured_is_infeasible_and_off_the_front(write_study, monkeypatch):
    """The estimate lets it through; the measured peak (what the front shows) does not."""
    from autopeft.study import Study

    monkeypatch.setattr(ProxyTrainer, "estimate_memory", lambda self, *a, **k: 1)
    study = Study.from_yaml(write_study(constraints="{max_memory: 1KB}"))
    study.optimize(n_trials=1)
    trials = study.trials()
    assert len(trials) == 1 and trials[0].state == "PRUNED" and trials[0].attrs.get("over_budget")
    assert "measured memory" in trials[0].fail_reason and trials[0].attrs["measured"]["memory"] > 1000
    assert study.pareto_front() == []
    assert optuna.load_study(study_name="tiny", storage=study.storage_url).trials[0].values is None
    # the study learnt how far the estimate runs low: nothing else is worth measuring
    with pytest.raises(ConfigError, match="meets the constraints"):
        study.optimize(n_trials=2)


def test_the_cached_regime_equals_the_uncached_one_with_dropout_on(write_study):
    """Layers below the lowest adapted one run without dropout whether or not their output comes from the cache,
    so a trial's regime does not depend on its lowest layer or on the cache fitting."""
    trainer = _trainer(write_study, measure_memory=False)
    assert any(m.p > 0 for m in trainer.model.modules() if isinstance(m, torch.nn.Dropout))
    config = PEFTConfig.from_dict({"lora": {"size": 2, "layers": [1], "targets": ["query", "value"]}})
    cached = trainer.run(config)
    trainer.cfg.proxy.activation_cache = False
    plain = trainer.run(config)
    assert cached.cached_from_layer == 1 and plain.cached_from_layer is None
    assert cached.train_loss == pytest.approx(plain.train_loss, rel=1e-4)
    assert cached.validation_loss == pytest.approx(plain.validation_loss, rel=1e-4)
    assert cached.score == plain.score
