"""Search-space spec (YAML) -> flat, sampler-agnostic parameters with activity conditions, and back.

A space names adapter kinds with a list of sizes (0 = off, as in the AutoPEFT paper) and options
(a list = searched, a scalar = fixed), how layers are chosen, and training hyperparameters::

    adapters:
      serial:   {size: [0, 8, 16, 32, 64]}
      parallel: {size: [0, 8, 16, 32], scaling: [1, 4]}
      prefix:   {length: [0, 4, 8, 16]}
      lora:     {rank: [0, 2, 4, 8], alpha_ratio: 2, targets: [[query, value], [query, key, value]],
                 per_layer: true}        # one rank per layer (PEFT rank_pattern)
    layers: per_layer                     # one on/off bit per layer | all | top_k | [0, 3, 5]
    hyperparameters:
      learning_rate: {low: 1.0e-4, high: 3.0e-3, log: true}

Parameters are named ``<kind>.<size_name>`` (``.<layer>`` when per layer), ``<kind>.<option>``,
``layer.<i>``, ``layers.top_k`` and ``hp.<name>``. A parameter whose module is off is *inactive*:
``Param.requires_any`` lists the parameters of which one must be non-zero for it to matter.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from .adapters import ModuleSpec, PEFTConfig, get_adapter_kind, normalise_config
from .errors import ConfigError, suggest
from .models import ModelInfo

#: training hyperparameters a space may search (they override the study's ``proxy`` block)
TUNABLE_HYPERPARAMETERS = ("learning_rate", "head_learning_rate", "weight_decay", "warmup_ratio", "epochs",
                           "batch_size")
LAYER_MODES = ("per_layer", "all", "top_k")


@dataclass(frozen=True)
class Param:
    """One flat search dimension."""

    name: str
    distribution: BaseDistribution
    requires_any: tuple[str, ...] = ()  # active only when one of these params is non-zero
    role: str = "size"  # size | option | layer | hyper


@dataclass(frozen=True)
class KindSpace:
    kind: str
    size_name: str
    sizes: tuple[int, ...]
    per_layer: bool
    searched: dict[str, tuple]  # option -> choices (decoded values)
    fixed: dict[str, Any]

    @property
    def nonzero(self) -> tuple[int, ...]:
        return tuple(s for s in self.sizes if s > 0)

    def option_combinations(self) -> list[dict[str, Any]]:
        names = sorted(self.searched)
        return [dict(zip(names, combo)) for combo in itertools.product(*(self.searched[n] for n in names))]


def _encode(value: Any) -> Any:
    """Categorical choices must be hashable scalars: lists become 'a+b' strings."""
    return "+".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def _decode_option(default: Any, value: Any) -> Any:
    if isinstance(default, (list, tuple)) and isinstance(value, str):
        return value.split("+")
    return value


@dataclass
class SearchSpace:
    kinds: list[KindSpace]
    layers: str | tuple[int, ...]
    num_layers: int
    hyper: dict[str, BaseDistribution]
    hyper_fixed: dict[str, Any]
    params: list[Param] = field(default_factory=list)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_spec(cls, spec: dict[str, Any], num_layers: int, where: str = "search_space") -> "SearchSpace":
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be a mapping with 'adapters'", "see search_spaces/autopeft.yaml")
        unknown = set(spec) - {"adapters", "layers", "hyperparameters"}
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)} in {where}",
                              "allowed: adapters, layers, hyperparameters")
        adapters = spec.get("adapters")
        if not isinstance(adapters, dict) or not adapters:
            raise ConfigError(f"{where}.adapters must name at least one adapter kind",
                              "e.g. adapters: {lora: {rank: [0, 4, 8]}}")
        kinds = [_kind_space(k, v, f"{where}.adapters.{k}") for k, v in adapters.items()]
        layers = spec.get("layers", "per_layer")
        if isinstance(layers, list):
            bad = [i for i in layers if not isinstance(i, int) or not 0 <= i < num_layers]
            if bad or not layers:
                raise ConfigError(f"{where}.layers: layer index {bad[0] if bad else '(empty list)'} is out of range",
                                  f"the model has {num_layers} layers: use 0..{num_layers - 1}")
            layers = tuple(sorted(set(layers)))
        elif layers not in LAYER_MODES:
            raise ConfigError(f"{where}.layers: '{layers}' is not a layer mode",
                              f"use one of {', '.join(LAYER_MODES)} or a list of layer indices")
        hyper, hyper_fixed = _hyper_space(spec.get("hyperparameters") or {}, f"{where}.hyperparameters")
        space = cls(kinds, layers, num_layers, hyper, hyper_fixed)
        space.params = space._build_params()
        return space

    def _shared_kinds(self) -> list[KindSpace]:
        return [k for k in self.kinds if not k.per_layer]

    def _build_params(self) -> list[Param]:
        params: list[Param] = []
        L = self.num_layers
        for ks in self.kinds:
            if ks.per_layer:
                size_names = tuple(f"{ks.kind}.{ks.size_name}.{i}" for i in range(L))
                params += [Param(n, CategoricalDistribution(ks.sizes)) for n in size_names]
            else:
                size_names = (f"{ks.kind}.{ks.size_name}",)
                params.append(Param(size_names[0], CategoricalDistribution(ks.sizes)))
            zero_possible = 0 in ks.sizes
            for opt, choices in sorted(ks.searched.items()):
                params.append(Param(f"{ks.kind}.{opt}", CategoricalDistribution([_encode(c) for c in choices]),
                                    size_names if zero_possible else (), "option"))
        if self._shared_kinds():
            if self.layers == "per_layer":
                params += [Param(f"layer.{i}", CategoricalDistribution([0, 1]), (), "layer") for i in range(L)]
            elif self.layers == "top_k":
                params.append(Param("layers.top_k", IntDistribution(1, L), (), "layer"))
        params += [Param(f"hp.{n}", d, (), "hyper") for n, d in self.hyper.items()]
        return params

    # ---------------------------------------------------------------- decoding
    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {p.name: p.distribution for p in self.params}

    def active_layers(self, values: dict[str, Any]) -> list[int]:
        if isinstance(self.layers, tuple):
            return list(self.layers)
        if self.layers == "all" or not self._shared_kinds():
            return list(range(self.num_layers))
        if self.layers == "top_k":
            k = int(values["layers.top_k"])
            return list(range(self.num_layers - k, self.num_layers))
        return [i for i in range(self.num_layers) if int(values[f"layer.{i}"])]

    def is_active(self, param: Param, values: dict[str, Any]) -> bool:
        return param.name in self.active(values)

    def active(self, values: Mapping[str, Any]) -> set[str]:
        """Names of the parameters that matter for ``values`` (see :func:`active_names`)."""
        return active_names(self, values)

    def decode(self, values: dict[str, Any]) -> tuple[PEFTConfig, dict[str, Any]]:
        """Flat parameter values -> (PEFT configuration, training hyperparameters)."""
        layers = self.active_layers(values)
        modules: dict[str, ModuleSpec] = {}
        for ks in self.kinds:
            if ks.per_layer:
                sizes = {i: int(values[f"{ks.kind}.{ks.size_name}.{i}"]) for i in range(self.num_layers)}
            else:
                size = int(values[f"{ks.kind}.{ks.size_name}"])
                sizes = {i: size for i in layers}
            sizes = {i: s for i, s in sizes.items() if s > 0}
            if not sizes:
                continue
            adapter = get_adapter_kind(ks.kind)
            options = dict(ks.fixed)
            for opt in ks.searched:
                options[opt] = _decode_option(adapter.options.get(opt), values[f"{ks.kind}.{opt}"])
            modules[ks.kind] = ModuleSpec(ks.kind, sizes, options)
        hparams = dict(self.hyper_fixed)
        hparams.update({n: values[f"hp.{n}"] for n in self.hyper})
        return PEFTConfig(modules), hparams

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """A random point: each parameter uniform over its choices or range (floats log-uniform on a log scale;
        integers uniform, log or not), drawn from ``rng`` in the order of ``params``: one ``integers`` per
        categorical or integer, one ``uniform`` per float. Seeded studies (their random feasible points) and the
        benchmarks' tables depend on these exact draws: keep them."""
        values: dict[str, Any] = {}
        for p in self.params:
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

    def canonical(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values with inactive parameters dropped (see :func:`canonical_values`)."""
        return canonical_values(self, values)

    def identity(self, values: Mapping[str, Any]) -> tuple:
        """Hashable identity of the configuration ``values`` stand for (see :func:`identity_of`)."""
        return identity_of(self, values)

    # ---------------------------------------------------------------- size and bounds
    def num_configurations(self) -> int:
        """Distinct adapter configurations (continuous hyperparameters excluded)."""
        L = self.num_layers

        def distinct(ks: KindSpace, layers: int) -> tuple[int, int]:
            """(configs with the module on somewhere, 1 if 'off' is possible else 0)."""
            n_opts = math.prod(len(c) for c in ks.searched.values()) if ks.searched else 1
            nz, has_zero = len(ks.nonzero), int(0 in ks.sizes)
            if ks.per_layer:
                on = ((nz + has_zero) ** layers - has_zero) * n_opts
            else:
                on = nz * n_opts
            return on, has_zero

        per_layer = math.prod(sum(distinct(k, L)) for k in self.kinds if k.per_layer)
        shared = self._shared_kinds()
        if not shared:
            return per_layer
        shared_total = math.prod(sum(distinct(k, 1)) for k in shared)
        all_off = math.prod(distinct(k, 1)[1] for k in shared)
        if isinstance(self.layers, tuple) or self.layers == "all":
            return shared_total * per_layer
        n_sets = 2**L - 1 if self.layers == "per_layer" else L
        # every non-empty layer set with some module on is distinct; "all off" is one config
        empty = 1 if self.layers == "per_layer" or all_off else 0
        return (n_sets * (shared_total - all_off) + max(empty, all_off)) * per_layer

    def dimensions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.params:
            d = p.distribution
            kind = ("categorical" if isinstance(d, CategoricalDistribution) else
                    "integer" if isinstance(d, IntDistribution) else "continuous")
            if p.role == "layer" and kind == "categorical":
                kind = "binary"
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def check_against(self, info: ModelInfo) -> None:
        """Raise ConfigError if any point of the space cannot be applied to the model."""
        if info.num_layers != self.num_layers:
            raise ConfigError(f"space built for {self.num_layers} layers, model has {info.num_layers}")
        for ks in self.kinds:
            for opts in ks.option_combinations():
                size = max(ks.sizes)
                if size <= 0:
                    continue
                spec = ModuleSpec(ks.kind, {i: size for i in range(info.num_layers)}, {**ks.fixed, **opts})
                normalise_config(PEFTConfig({ks.kind: spec}), info)

    def param_range(self, info: ModelInfo) -> tuple[int, int]:
        """(min, max) adapter parameters over the space (exact: parameters add over kinds and layers)."""
        lo = hi = 0
        for ks in self.kinds:
            adapter = get_adapter_kind(ks.kind)
            per_layer = []
            for opts in ks.option_combinations():
                for s in ks.sizes:
                    spec = adapter.normalise(ModuleSpec(ks.kind, {0: s} if s else {}, {**ks.fixed, **opts}))
                    per_layer.append(adapter.num_params(spec, info) if s else 0)
            if ks.per_layer or isinstance(self.layers, tuple) or self.layers == "all":
                n_min = n_max = info.num_layers if not isinstance(self.layers, tuple) or ks.per_layer \
                    else len(self.layers)
            else:
                n_min = 0 if self.layers == "per_layer" else 1
                n_max = info.num_layers
            lo += min(per_layer) * n_min
            hi += max(per_layer) * n_max
        return lo, hi

    def grid(self) -> Iterable[dict[str, Any]]:
        """Every categorical/integer combination (continuous hyperparameters at their low end)."""
        names, choices = [], []
        for p in self.params:
            d = p.distribution
            names.append(p.name)
            if isinstance(d, CategoricalDistribution):
                choices.append(d.choices)
            elif isinstance(d, IntDistribution):
                choices.append(range(d.low, d.high + 1, d.step))
            else:
                choices.append([d.low])
        for combo in itertools.product(*choices):
            yield dict(zip(names, combo))


# ---------------------------------------------------------------------------------------------- configuration identity
# Whether two flat points are the same configuration is decided here and only here: the duplicate check of
# workers and the optimizers' notion of a known point (SpaceEncoder.key) both use identity_of. The functions take
# any space with ``params`` (benchmark spaces are bare lists of Param); a SearchSpace adds its decoded adapters.

#: hyperparameters that only act on adapter weights: irrelevant for the configuration without adapters
ADAPTER_ONLY = ("hp.learning_rate",)
#: floats that agree to this many decimals of their (log-)range are one configuration
IDENTITY_DECIMALS = 4


def unit_value(dist: BaseDistribution, value: Any) -> float:
    """Where ``value`` of an integer or float distribution lies in its range, as a number in [0, 1] (log scale
    for log distributions; values outside the range are clipped)."""
    lo, hi, x = float(dist.low), float(dist.high), float(value)
    if dist.log:
        lo, hi, x = math.log(lo), math.log(hi), math.log(max(x, dist.low))
    if hi <= lo:
        return 0.0
    return min(1.0, max(0.0, (x - lo) / (hi - lo)))


def active_names(space: Any, values: Mapping[str, Any]) -> set[str]:
    """Names of the parameters of ``space`` that matter for the complete flat point ``values``.

    For a :class:`SearchSpace` this follows the decoded configuration: a kind's sizes and options matter only if
    the kind is on somewhere (a shared size with every layer bit off is as off as size 0), layer bits only if some
    shared kind is on, and the adapters' learning rate only if there are adapters (the head has its own). For a
    space of bare parameters: a parameter matters unless none of its ``requires_any`` is non-zero.
    """
    kinds = set(space.decode(values)[0].modules) if hasattr(space, "decode") and hasattr(space, "kinds") else None
    shared = {k.kind for k in getattr(space, "kinds", ()) if not k.per_layer}
    out = set()
    for p in space.params:
        if kinds is not None and p.role in ("size", "option"):
            if p.name.split(".", 1)[0] in kinds:
                out.add(p.name)
        elif kinds is not None and p.role == "layer":
            if kinds & shared:
                out.add(p.name)
        elif kinds is not None and p.name in ADAPTER_ONLY and not kinds:
            continue
        elif not p.requires_any or any(values.get(n, 0) for n in p.requires_any):
            out.add(p.name)
    return out


def canonical_values(space: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with the parameters that do not matter dropped (:func:`active_names`), in the space's order."""
    active = active_names(space, values)
    return {p.name: values[p.name] for p in space.params if p.name in active}


def identity_of(space: Any, values: Mapping[str, Any]) -> tuple:
    """Hashable identity of the configuration ``values`` stand for: equal for two points that train the same
    model. Built on :func:`canonical_values` (parameters that do not matter dropped), with each float replaced by
    its place in its range rounded to ``IDENTITY_DECIMALS`` decimals, so float noise does not make a new one."""
    dists = {p.name: p.distribution for p in space.params}
    return tuple((name, round(unit_value(dists[name], v), IDENTITY_DECIMALS)
                  if isinstance(dists[name], FloatDistribution) else v)
                 for name, v in canonical_values(space, values).items())


def _kind_space(kind: str, body: Any, where: str) -> KindSpace:
    adapter = get_adapter_kind(kind)
    if not isinstance(body, dict):
        raise ConfigError(f"{where} must be a mapping", f"e.g. {kind}: {{{adapter.size_name}: [0, 8, 16]}}")
    body = dict(body)
    per_layer = bool(body.pop("per_layer", False))
    if adapter.size_name not in body:
        raise ConfigError(f"{where} needs '{adapter.size_name}'", f"e.g. {adapter.size_name}: [0, 8, 16]")
    sizes = body.pop(adapter.size_name)
    sizes = sizes if isinstance(sizes, list) else [sizes]
    for s in sizes:
        if not isinstance(s, int) or isinstance(s, bool):
            raise ConfigError(f"{where}.{adapter.size_name}: {s!r} is not a whole number", "use e.g. [0, 8, 16]")
        if s < 0:
            raise ConfigError(f"{where}.{adapter.size_name}: {s} is negative", "use 0 (module off) or more")
    if len(set(sizes)) != len(sizes) or not sizes:
        raise ConfigError(f"{where}.{adapter.size_name} must list distinct values", "remove the repeated values")
    searched, fixed = {}, {}
    for opt, value in body.items():
        if opt not in adapter.options:
            raise ConfigError(f"unknown option '{where}.{opt}'",
                              suggest(opt, [adapter.size_name, "per_layer", *adapter.options], "allowed"))
        list_valued = isinstance(adapter.options[opt], (list, tuple))
        is_choices = isinstance(value, list) and (not list_valued or all(isinstance(v, list) for v in value))
        if is_choices:
            if not value:
                raise ConfigError(f"{where}.{opt} is an empty list", "give at least one choice")
            searched[opt] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            if len(searched[opt]) == 1:
                fixed[opt] = value[0]
                del searched[opt]
        else:
            fixed[opt] = value
    return KindSpace(kind, adapter.size_name, tuple(sizes), per_layer, searched,
                     {k: list(v) if isinstance(v, tuple) else v for k, v in fixed.items()})


def _hyper_space(spec: dict[str, Any], where: str) -> tuple[dict[str, BaseDistribution], dict[str, Any]]:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping", "e.g. learning_rate: {low: 1.0e-4, high: 3.0e-3, log: true}")
    dists: dict[str, BaseDistribution] = {}
    fixed: dict[str, Any] = {}
    for name, value in spec.items():
        if name not in TUNABLE_HYPERPARAMETERS:
            raise ConfigError(f"unknown hyperparameter '{where}.{name}'",
                              suggest(name, TUNABLE_HYPERPARAMETERS, "allowed"))
        if isinstance(value, dict):
            extra = set(value) - {"low", "high", "log"}
            if extra or not {"low", "high"} <= set(value):
                raise ConfigError(f"{where}.{name} must be {{low, high[, log]}}", "e.g. {low: 1.0e-4, high: 3.0e-3, log: true}")
            low, high, log = value["low"], value["high"], bool(value.get("log", False))
            try:
                low, high = float(low), float(high)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}.{name}: low/high must be numbers", "write 1.0e-4, not 1e-4 text") from None
            if not low < high or (log and low <= 0):
                raise ConfigError(f"{where}.{name}: need 0 < low < high (got {low}, {high})", "swap or fix the bounds")
            if name == "batch_size":
                dists[name] = IntDistribution(int(low), int(high), log=log)
            else:
                dists[name] = FloatDistribution(low, high, log=log)
        elif isinstance(value, list):
            dists[name] = CategoricalDistribution(value)
        else:
            fixed[name] = value
    return dists, fixed
