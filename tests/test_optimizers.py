"""Search backends: the mobo engine's contracts (conditional parameters, budgets, batches, known
objectives, determinism), the reference point stored with a study, and every backend end to end."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from autopeft.errors import ConfigError
from autopeft.optimizers import SamplerContext, SpaceEncoder, make_sampler, optimizer_names
from autopeft.space import Param

optuna.logging.set_verbosity(optuna.logging.ERROR)


@dataclass
class FlatSpace:
    params: list[Param] = field(default_factory=list)


# a PEFT-like toy: two modules with sizes (0 = off), an option that only matters when 'b' is on
SPACE = FlatSpace([
    Param("a.size", CategoricalDistribution([0, 2, 4, 8, 16])),
    Param("b.size", CategoricalDistribution([0, 4, 16])),
    Param("b.kind", CategoricalDistribution(["x", "y", "z"]), ("b.size",), "option"),
    Param("depth", IntDistribution(1, 6), (), "layer"),
    Param("hp.lr", FloatDistribution(1e-4, 1e-2, log=True), (), "hyper"),
])
DISTS = {p.name: p.distribution for p in SPACE.params}


def params_of(v) -> float:
    return float(v["depth"] * (3 * v["a.size"] + 5 * v["b.size"]))


def score_of(v) -> float:
    bonus = {"x": 0.0, "y": 0.1, "z": 0.05}[v["b.kind"]] if v["b.size"] else 0.0
    return 0.5 + 0.3 * math.tanh(params_of(v) / 200) + bonus - 0.2 * abs(math.log10(v["hp.lr"]) + 3) / 2


def context(seed=0, n_startup=4, feasible=None, known=True, **options) -> SamplerContext:
    return SamplerContext(options, seed, n_startup, SPACE, ("score", "params"), ("maximize", "minimize"),
                          (lambda v: {"params": params_of(v)}) if known else None, feasible,
                          {"score": 0.4, "params": 500.0})


def run(sampler, n: int, score=score_of, study=None) -> optuna.Study:
    study = study or optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(n):
        t = study.ask(DISTS)
        study.tell(t, [score(t.params), params_of(t.params)])
    return study


def test_encoder_ignores_inactive_parameters():
    enc = SpaceEncoder(SPACE)
    on = {"a.size": 2, "b.size": 4, "b.kind": "x", "depth": 3, "hp.lr": 1e-3}
    off = dict(on, **{"b.size": 0})
    assert not np.allclose(enc.encode(on), enc.encode(dict(on, **{"b.kind": "y"})))
    assert np.array_equal(enc.encode(off), enc.encode(dict(off, **{"b.kind": "y"})))
    assert enc.key(off) == enc.key(dict(off, **{"b.kind": "z"}))
    assert enc.encode(on).min() >= 0 and enc.encode(on).max() <= 1


def test_encoder_follows_the_decoded_peft_config():
    from autopeft.space import SearchSpace

    space = SearchSpace.from_spec({"adapters": {"serial": {"size": [0, 8]}, "lora": {"rank": [0, 4], "alpha_ratio": [1, 2]}},
                                   "layers": "per_layer",
                                   "hyperparameters": {"learning_rate": {"low": 1.0e-4, "high": 1.0e-2, "log": True}}},
                                  num_layers=2)
    enc = SpaceEncoder(space)
    base = {"serial.size": 8, "lora.rank": 4, "lora.alpha_ratio": 1, "layer.0": 0, "layer.1": 0,
            "hp.learning_rate": 1e-3}
    # no layer switched on: no adapters at all, whatever sizes, options and adapter learning rate say
    assert enc.key(base) == enc.key(dict(base, **{"serial.size": 0, "lora.alpha_ratio": 2, "hp.learning_rate": 5e-3}))
    on = dict(base, **{"layer.1": 1})
    assert enc.key(on) != enc.key(dict(on, **{"lora.alpha_ratio": 2}))
    assert enc.key(on) != enc.key(dict(on, **{"hp.learning_rate": 5e-3}))


def test_inactive_parameters_do_not_change_proposals():
    """Two histories that differ only in parameters of switched-off modules give the same proposal."""
    rng = np.random.default_rng(1)
    enc = SpaceEncoder(SPACE)
    history = [enc.sample(rng) for _ in range(8)]
    proposals = []
    for variant in range(2):
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler("mobo", context()))
        for v in history:
            v = dict(v)
            if not v["b.size"]:
                v["b.kind"] = ["x", "y", "z"][(variant + len(study.trials)) % 3]
            study.add_trial(optuna.trial.create_trial(params=v, distributions=DISTS,
                                                      values=[score_of(v), params_of(v)]))
        proposals.append(enc.key(study.ask(DISTS).params))
    assert proposals[0] == proposals[1]


def test_budget_is_never_violated_and_costs_no_ask():
    feasible = lambda v: params_of(v) <= 60  # noqa: E731
    study = run(make_sampler("mobo", context(feasible=feasible)), 16)
    assert all(t.values[1] <= 60 for t in study.trials)


def test_batch_proposals_are_distinct_and_new():
    enc = SpaceEncoder(SPACE)
    study = run(make_sampler("mobo", context()), 6)
    pending = [study.ask(DISTS) for _ in range(4)]  # four workers asking before anyone tells
    keys = [enc.key(t.params) for t in pending]
    assert len(set(keys)) == 4
    assert not set(keys) & {enc.key(t.params) for t in study.trials if t.state.name == "COMPLETE"}


def test_known_objective_is_used_exactly():
    """With a flat score, only fewer params can improve the front: mobo must know which configs have fewer."""
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=make_sampler("mobo", context(n_startup=5)))
    for a, b, depth in [(8, 4, 3), (16, 16, 2), (4, 16, 6), (8, 0, 5), (16, 4, 4)]:
        v = {"a.size": a, "b.size": b, "b.kind": "x", "depth": depth, "hp.lr": 1e-3}
        study.add_trial(optuna.trial.create_trial(params=v, distributions=DISTS, values=[0.7, params_of(v)]))
    smallest = min(t.values[1] for t in study.trials)
    proposal = study.ask(DISTS).params
    assert params_of(proposal) < smallest


def test_same_seed_same_proposals():
    def proposals(seed):
        study = run(make_sampler("mobo", context(seed=seed)), 7)
        return [t.params for t in study.trials]

    assert proposals(3) == proposals(3)


def test_bad_options_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="bad option for optimizer 'mobo'"):
        make_sampler("mobo", context(acquisition="ucb"))
    with pytest.raises(ConfigError, match="unknown optimizer"):
        make_sampler("mobbo", context())


def with_optimizer(path, block: str):
    """The fixture's study file with another ``optimizer:`` block."""
    path.write_text(path.read_text().replace("optimizer: {name: random}", f"optimizer: {block}"))
    return path


def test_reference_point_from_space_bounds_and_yaml(write_study):
    from autopeft import Study

    study = Study.from_yaml(with_optimizer(write_study(), "{name: random, options: {reference_point: {memory: 9.0e+8}}}"))
    study.optimize(n_trials=1)
    ref = study.load().user_attrs["reference_point"]
    lo, hi = study.space.param_range(study.trainer.info)
    assert ref == {"score": study.trainer.chance, "params": float(hi), "memory": 9.0e8}


def test_reference_point_is_stored_and_reused_on_resume(write_study, caplog):
    from autopeft import Study

    path = with_optimizer(write_study(), "{name: mobo, initial_trials: 2}")
    first = Study.from_yaml(path)
    first.optimize(n_trials=2)
    stored = first.load().user_attrs["reference_point"]
    assert set(stored) == {"score", "params", "memory"}
    # the YAML now asks for another point: the stored one wins, so hypervolumes stay comparable
    path.write_text(path.read_text().replace("{name: mobo, initial_trials: 2}",
                                             "{name: mobo, initial_trials: 2, options: {reference_point: {score: 0.9}}}"))
    second = Study.from_yaml(path)
    with caplog.at_level("WARNING"):
        second.optimize(n_trials=3)
    raw = second.load()
    assert raw.user_attrs["reference_point"] == stored
    assert second._sampler_context(0, raw).reference_point == stored
    assert "keeping the reference point" in caplog.text
    assert len([t for t in raw.trials if t.state.name == "COMPLETE"]) == 3


def test_bad_reference_point_exits_2(write_study, capsys):
    from autopeft.cli import main

    path = with_optimizer(write_study(), "{name: mobo, options: {reference_point: {scor: 0.5}}}")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reference_point" in err[0] and "did you mean 'score'" in err[0]
    assert not (path.parent / "tiny.db").exists()


def test_budget_holds_in_a_real_study(write_study):
    from autopeft import Study

    path = with_optimizer(write_study(constraints="{max_params: 700}"), "{name: mobo, initial_trials: 2}")
    study = Study.from_yaml(path)
    study.optimize(n_trials=4)
    trials = study.load().trials
    assert all(t.user_attrs["measured"]["params"] <= 700 for t in trials if t.state.name == "COMPLETE")
    assert not [t for t in trials if t.user_attrs.get("infeasible")]  # mobo never proposed one


@pytest.mark.parametrize("name", optimizer_names())
def test_each_backend_runs_a_short_study(name, write_study):
    from autopeft import Study

    study = Study.from_yaml(with_optimizer(write_study(), f"{{name: {name}, initial_trials: 2}}"))
    front = study.optimize(n_trials=3)
    trials = study.load().trials
    assert len([t for t in trials if t.state.name in ("COMPLETE", "FAIL")]) == 3
    assert front and all(set(r.values) == {"score", "params", "memory"} for r in front)


def test_size_aware_prior_extrapolates_the_score_along_size():
    """The score rose with size over the configs seen; a config far smaller than any of them is predicted from
    that trend with the linear prior mean (the default), while a constant mean falls back towards the average."""
    import torch

    rng = np.random.default_rng(0)
    enc = SpaceEncoder(SPACE)
    seen = []
    while len(seen) < 12:
        v = enc.sample(rng)
        if params_of(v) >= 100 and enc.key(v) not in {enc.key(s) for s in seen}:
            seen.append(v)
    tiny = {"a.size": 2, "b.size": 0, "b.kind": "y", "depth": 1, "hp.lr": 3e-3}  # 6 params

    def predicted(mean: str) -> tuple[float, float]:
        sampler = make_sampler("mobo", context(mean=mean))
        X = sampler._inputs(seen)
        Y = torch.tensor([[0.4 + 0.1 * math.log(params_of(v))] for v in seen], dtype=torch.double)
        model = sampler._fit(X, Y)
        with torch.no_grad():
            return float(model.posterior(sampler._inputs([tiny])).mean), float(Y.mean())

    truth = 0.4 + 0.1 * math.log(params_of(tiny))  # 0.58; the seen scores are 0.86 and up
    (linear, average), (constant, _) = predicted("linear"), predicted("constant")
    assert abs(linear - truth) < 0.05, linear
    assert constant > 0.8, (constant, average)  # the constant mean reverts towards the seen average
    with pytest.raises(ConfigError, match="bad option for optimizer 'mobo'"):
        make_sampler("mobo", context(mean="quadratic"))


@pytest.mark.parametrize("name", ["autopeft", "lora", "mixed"])
def test_shipped_spaces_search_no_learning_rate_and_mobo_runs_on_them(name, write_study):
    """The shipped spaces leave the rate to each kind's default (a rate searched at proxy fidelity ranks
    short-run speed); mobo must then model a space with no continuous dimension."""
    from autopeft import Study
    from autopeft.space import SearchSpace
    from autopeft.yamlio import load_yaml

    spec = load_yaml(Path(__file__).resolve().parents[1] / "search_spaces" / f"{name}.yaml")[0]
    assert "hyperparameters" not in spec
    path = with_optimizer(write_study(), "{name: mobo, initial_trials: 2}")
    (path.parent / "space.yaml").write_text(TINY_SPACE_NO_RATE)
    study = Study.from_yaml(path)
    study.optimize(n_trials=3)
    trials = [t for t in study.load().trials if t.state.name == "COMPLETE"]
    assert len(trials) == 3 and all(not any(k.startswith("hp.") for k in t.params) for t in trials)
    assert SearchSpace.from_spec(spec, 6).params  # the shipped file itself parses


TINY_SPACE_NO_RATE = """
adapters:
  serial: {size: [0, 4, 8]}
  prefix: {length: [0, 2]}
layers: per_layer
"""
