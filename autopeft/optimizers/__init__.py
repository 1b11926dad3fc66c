"""Search backends behind one interface: each is an Optuna sampler built from a :class:`SamplerContext`,
so storage, resume and workers work the same for all of them. The study YAML names a registered
backend (``optimizer: {name: mobo}``), never an import path.

Backends: ``mobo`` (default; BoTorch, made for PEFT search: :mod:`.mobo`), ``gp``, ``tpe``, ``nsga2``,
``random`` (Optuna: :mod:`.optuna_samplers`) and ``ax`` (Ax's ``Client``: :mod:`.ax_client`).
"""
from __future__ import annotations

from ..pareto import check_reference_point
from . import ax_client, mobo, optuna_samplers  # noqa: F401  (register the backends)
from .base import (COMMON_OPTIONS, SamplerContext, SamplerFactory, derive_reference_point, make_sampler,
                   optimizer_names, register_optimizer)
from .encoding import SpaceEncoder

__all__ = ["COMMON_OPTIONS", "SamplerContext", "SamplerFactory", "SpaceEncoder",
           "check_reference_point", "derive_reference_point", "make_sampler", "optimizer_names",
           "register_optimizer"]
