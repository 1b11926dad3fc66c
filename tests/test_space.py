"""Search space: parsing, decoding, exact configuration counts and parameter ranges."""
from __future__ import annotations

import json

import pytest

from autopeft.adapters import count_adapter_params, normalise_config
from autopeft.errors import ConfigError
from autopeft.models import model_info
from autopeft.space import SearchSpace

SPACES = {
    "paper": {"adapters": {"serial": {"size": [0, 8, 16]}, "parallel": {"size": [0, 8], "scaling": [1, 4]},
                           "prefix": {"length": [0, 4]}}, "layers": "per_layer"},
    "lora_per_layer": {"adapters": {"lora": {"rank": [0, 2, 4], "per_layer": True, "alpha_ratio": [1, 2],
                                             "targets": [["query", "value"], ["query", "key"]]}}},
    "top_k": {"adapters": {"serial": {"size": [8, 16]}, "lora": {"rank": [0, 4]}}, "layers": "top_k"},
    "all": {"adapters": {"serial": {"size": [0, 8]}, "prefix": {"length": [0, 2]}}, "layers": "all"},
    "fixed_layers": {"adapters": {"parallel": {"size": [0, 4, 8]}}, "layers": [0, 2]},
    "mixed": {"adapters": {"serial": {"size": [0, 8]}, "lora": {"rank": [0, 2], "per_layer": True}},
              "layers": "per_layer", "hyperparameters": {"learning_rate": {"low": 1e-4, "high": 1e-3, "log": True}}},
}


def _distinct_configs(space: SearchSpace, info) -> set[str]:
    seen = set()
    for values in space.grid():
        config, _ = space.decode(values)
        seen.add(json.dumps(normalise_config(config, info).to_dict(), sort_keys=True))
    return seen


@pytest.mark.parametrize("name", sorted(SPACES))
def test_num_configurations_matches_enumeration(name, tiny_model):
    model = tiny_model("bert", layers=3)
    info = model_info(model)
    space = SearchSpace.from_spec(SPACES[name], info.num_layers)
    assert space.num_configurations() == len(_distinct_configs(space, info))


@pytest.mark.parametrize("name", sorted(SPACES))
def test_param_range_matches_enumeration(name, tiny_model):
    info = model_info(tiny_model("bert", layers=3))
    space = SearchSpace.from_spec(SPACES[name], info.num_layers)
    counts = [count_adapter_params(space.decode(v)[0], info) for v in space.grid()]
    assert space.param_range(info) == (min(counts), max(counts))


def test_inactive_parameters_are_dropped():
    space = SearchSpace.from_spec(SPACES["paper"], 2)
    values = {"serial.size": 0, "parallel.size": 0, "parallel.scaling": 4, "prefix.length": 4,
              "layer.0": 1, "layer.1": 0}
    assert "parallel.scaling" not in space.canonical(values)
    config, _ = space.decode(values)
    assert config.to_dict() == {"prefix": {"size": 4, "layers": [0]}}


def test_one_configuration_identity_for_duplicates_optimizers_and_canonical():
    """Points that differ only in parameters that do not matter, or by float noise, are one configuration for the
    workers' duplicate check, the optimizers' known points (SpaceEncoder.key) and canonical alike."""
    import optuna

    from autopeft.optimizers import SpaceEncoder
    from autopeft.workers import duplicate_of

    space = SearchSpace.from_spec(SPACES["mixed"], 2)
    enc = SpaceEncoder(space)
    base = {"serial.size": 8, "lora.rank.0": 0, "lora.rank.1": 0, "layer.0": 0, "layer.1": 0,
            "hp.learning_rate": 1e-3}
    on = dict(base, **{"layer.0": 1, "hp.learning_rate": 3e-4})
    same = [
        # no layer on, no LoRA rank: no adapters, whatever the shared size, layer bits and adapter rate say
        (base, dict(base, **{"serial.size": 0, "layer.1": 1, "hp.learning_rate": 2e-4})),
        (on, dict(on, **{"hp.learning_rate": 3e-4 * (1 + 1e-9)})),  # float noise
    ]
    different = [(on, dict(on, **{"hp.learning_rate": 5e-4})), (on, dict(on, **{"layer.1": 1})), (base, on)]
    for a, b in same + different:
        expected = (a, b) in same
        assert (space.identity(a) == space.identity(b)) is expected
        assert (enc.key(a) == enc.key(b)) is expected
        if a["hp.learning_rate"] == b["hp.learning_rate"]:  # canonical drops what does not matter, rounds nothing
            assert (space.canonical(a) == space.canonical(b)) is expected
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.create_study()
        study.add_trial(optuna.trial.create_trial(params=a, distributions=space.distributions, value=0.5))
        study.enqueue_trial(b)
        trial = study.ask(space.distributions)
        assert trial.params == b
        assert duplicate_of(study, trial, space) == (0 if expected else None)


def _draws_of_study_random_feasible(space: SearchSpace, rng) -> dict:
    """The draws of candidate.random_feasible (was Study._random_feasible) before SearchSpace.sample (copied)."""
    import numpy as np
    from optuna.distributions import CategoricalDistribution, IntDistribution

    values = {}
    for p in space.params:
        d = p.distribution
        if isinstance(d, CategoricalDistribution):
            values[p.name] = d.choices[rng.integers(len(d.choices))]
        elif isinstance(d, IntDistribution):
            values[p.name] = int(rng.integers(d.low, d.high + 1))
        else:
            lo, hi = (np.log(d.low), np.log(d.high)) if d.log else (d.low, d.high)
            x = rng.uniform(lo, hi)
            values[p.name] = float(np.exp(x) if d.log else x)
    return values


@pytest.mark.parametrize("name", ["paper", "top_k", "mixed", "lora_per_layer", "hyper"])
def test_sample_draws_what_a_seeded_study_drew(name):
    import numpy as np

    spec = SPACES.get(name) or {"adapters": {"lora": {"rank": [0, 4]}}, "layers": "top_k", "hyperparameters": {
        "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "weight_decay": {"low": 0.0, "high": 0.1},
        "batch_size": {"low": 8, "high": 64, "log": True}, "epochs": [1, 2, 3]}}
    space = SearchSpace.from_spec(spec, 4)
    new, old = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(50):
        values, expected = space.sample(new), _draws_of_study_random_feasible(space, old)
        assert list(values.items()) == list(expected.items())
        assert [type(v) for v in values.values()] == [type(v) for v in expected.values()]
        assert set(values) == {p.name for p in space.params}
    assert new.random() == old.random()  # the same number of draws


def test_per_layer_ranks_decode_to_rank_pattern_form():
    space = SearchSpace.from_spec(SPACES["lora_per_layer"], 3)
    values = {"lora.rank.0": 0, "lora.rank.1": 2, "lora.rank.2": 4, "lora.alpha_ratio": 2,
              "lora.targets": "query+key"}
    config, _ = space.decode(values)
    assert config.modules["lora"].layers == {1: 2, 2: 4}
    assert config.modules["lora"].options["targets"] == ["query", "key"]


def test_hyperparameters_decode():
    space = SearchSpace.from_spec(SPACES["mixed"], 2)
    values = {p.name: (p.distribution.choices[-1] if hasattr(p.distribution, "choices") else 3e-4)
              for p in space.params}
    _, hp = space.decode(values)
    assert hp == {"learning_rate": 3e-4}


@pytest.mark.parametrize("spec,match", [
    ({"adapters": {"serail": {"size": [8]}}}, "did you mean 'serial'"),
    ({"adapters": {"serial": {"size": [-8, 8]}}}, "negative"),
    ({"adapters": {"serial": {"sise": [8]}}}, "needs 'size'"),
    ({"adapters": {"lora": {"rank": [4], "alpha": 2}}}, "unknown option"),
    ({"adapters": {"serial": {"size": [8]}}, "layers": [0, 7]}, "out of range"),
    ({"adapters": {"serial": {"size": [8]}}, "layers": "some"}, "not a layer mode"),
    ({"adapters": {}}, "at least one adapter"),
    ({"adapters": {"serial": {"size": [8]}}, "hyperparameters": {"learnig_rate": 1e-3}}, "did you mean 'learning_rate'"),
    ({"adapters": {"serial": {"size": [8]}}, "hyperparameters": {"learning_rate": {"low": 1e-2, "high": 1e-3}}}, "low < high"),
    ({"adapter": {"serial": {"size": [8]}}}, "unknown key"),
])
def test_bad_spaces(spec, match):
    with pytest.raises(ConfigError, match=match) as err:
        SearchSpace.from_spec(spec, 2)
    assert "\n" not in str(err.value)


def test_space_checked_against_model(tiny_model):
    info = model_info(tiny_model("bert", layers=2))
    with pytest.raises(ConfigError, match="rank"):
        SearchSpace.from_spec({"adapters": {"lora": {"rank": [0, 64]}}}, 2).check_against(info)
    with pytest.raises(ConfigError, match="nope"):
        SearchSpace.from_spec({"adapters": {"lora": {"rank": [4], "targets": [["nope"]]}}}, 2).check_against(info)
