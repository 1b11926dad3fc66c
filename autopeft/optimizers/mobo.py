"""``mobo``: multi-objective Bayesian optimisation made for PEFT search (the default backend).

What it does differently from a general-purpose BO sampler:

* **Known objectives are exact.** Only objectives that need training (the score) are modelled by a GP.
  Objectives the study can compute for any configuration (``params``, ``memory_estimate``) enter the
  acquisition as exact values, and a measured objective with a known estimate (``memory``) is
  modelled as that estimate times a learned correction. The acquisition therefore knows, without a
  single run, that a rank-2 LoRA is smaller than a rank-16 one.
* **Size-aware prior.** The known objectives are also GP inputs, and the GP's prior mean has a fitted
  slope on them: an unseen configuration is predicted from its size first (a one-layer rank-2 module near
  the small ones already seen at chance, not at the average score), which keeps the search from spending
  trials on one tiny configuration after another.
* **Hard budgets cost no runs.** Candidates are checked with ``ctx.feasible`` before they are scored.
* **Conditional space.** Parameters of a module that is off are encoded as a constant
  (:mod:`.encoding`), so the GP sees identical models as one point instead of noise.
* **Discrete candidates.** The space is mostly categorical/ordinal/binary, so instead of a gradient
  optimiser over a relaxation, candidates are a pool of random feasible points drawn at several size
  skews plus mutations of the current Pareto set, then a few rounds of local search around the best.
  A cheap qLogEHVI (BoTorch; observed front, 8 QMC samples) screens them all; the best 16 are
  scored by the acquisition proper (qLogEHVI with 32 samples, or qLogNEHVI). Already evaluated and
  pending configurations are never proposed.
* **Pending trials** (RUNNING, from parallel workers) are ``X_pending`` of the acquisition, so a batch
  of asks without tells gives distinct, complementary proposals.
* **Fixed reference point** (``ctx.reference_point``, stored with the study) on the scaled objectives
  (:func:`autopeft.pareto.to_frame`, the frame the reported hypervolume uses), so acquisition and reported
  hypervolume agree across resumes.

The first ``n_startup`` proposals are random feasible points, spread along the known objectives when
there are any (best-candidate sampling). Everything is seeded by ``(seed, trial number)``.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from ..errors import AutoPEFTError
from ..objectives import ESTIMATED_BY
from ..pareto import to_frame
from .base import ContextSampler, SamplerContext, register_optimizer
from .encoding import SpaceEncoder

logger = logging.getLogger(__name__)

#: candidates the screening passes on to the acquisition proper
FINAL_CANDIDATES = 16


@dataclass(frozen=True)
class _Source:
    """Where objective ``name`` comes from in the acquisition."""

    name: str
    direction: str  # the acquisition maximises the scaled value, negated when this is 'minimize' (to_frame)
    kind: str  # model | known | corrected
    known: str | None = None  # name of the known value (itself, or its estimate)
    output: int | None = None  # GP output index


@register_optimizer("mobo")
def _mobo(ctx: SamplerContext) -> BaseSampler:
    return MOBOSampler(ctx, **ctx.backend_options)


class MOBOSampler(ContextSampler):
    """Optuna sampler running the engine described in the module docstring.

    Options (``optimizer.options`` in the study YAML): ``candidates`` random points per proposal
    (default 256; as many again are mutations of the Pareto set), ``local_rounds`` of local search (2),
    ``acquisition`` for the short list (``ehvi``: qLogEHVI over the posterior-mean front of the observed
    points; ``nehvi``: qLogNEHVI, which integrates over the noisy front but costs a box decomposition per
    MC sample, several seconds per proposal once the 3-objective front holds a few dozen points),
    ``mc_samples`` (32), ``known_features`` (default True: the scaled known objectives are
    also GP inputs, since e.g. log-params is a one-dimensional summary of the sizes that the score
    tends to follow), ``refit_every`` (5: past 30 observations, GP hyperparameters are re-estimated
    every 5th; in between the GP keeps them and only conditions on the new data), ``max_fit_iter``,
    ``front`` (``observed``: the screening partitions the space by the observed front; ``mean``: by the
    posterior mean at the observed points), ``screen_samples`` (8, QMC samples of the screening), ``mean``
    (``linear``: the GP's prior mean is a constant plus a slope on the known columns, fitted with the other
    hyperparameters, so an unseen configuration is predicted from its size first instead of reverting to the
    average score; ``constant``: the usual constant mean).
    """

    def __init__(self, ctx: SamplerContext, candidates: int = 256, mc_samples: int = 32, local_rounds: int = 2,
                 known_features: bool = True, max_fit_iter: int = 100, acquisition: str = "ehvi",
                 refit_every: int = 5, front: str = "observed", screen_samples: int = 8, mean: str = "linear"):
        if ctx.space is None:
            raise ValueError("mobo needs the study's search space")
        if candidates < 16 or mc_samples < 8 or local_rounds < 0 or max_fit_iter < 10 or refit_every < 1:
            raise ValueError("need candidates >= 16, mc_samples >= 8, local_rounds >= 0, max_fit_iter >= 10, "
                             "refit_every >= 1")
        if acquisition not in ("ehvi", "nehvi"):
            raise ValueError(f"acquisition {acquisition!r} is not 'ehvi' or 'nehvi'")
        self._acquisition = acquisition
        if front not in ("observed", "mean"):
            raise ValueError(f"front {front!r} is not 'observed' or 'mean'")
        self._front = front
        if mean not in ("constant", "linear"):
            raise ValueError(f"mean {mean!r} is not 'constant' or 'linear'")
        self._mean = mean
        self._screen_samples = int(screen_samples)
        self._refit_every = int(refit_every)
        super().__init__(ctx)
        self._enc = SpaceEncoder(ctx.space)
        self._candidates = int(candidates)
        self._mc_samples = int(mc_samples)
        self._local_rounds = int(local_rounds)
        self._known_features = bool(known_features)
        self._max_fit_iter = int(max_fit_iter)
        self._cache: dict[tuple, tuple[dict[str, float], bool]] = {}
        self._warm: dict[str, torch.Tensor] | None = None  # last GP hyperparameters (warm start)
        self._sources = self._plan_sources()

    # ------------------------------------------------------------------ optuna interface
    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not self._is_whole_space(search_space):
            return {}
        from threadpoolctl import threadpool_limits

        # the matrices here are tiny: BLAS threads only spin, and on a busy machine that costs 10-50x
        # (scipy's L-BFGS-B in the GP fit went from 0.2 to 8 ms per step with a second busy core)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with threadpool_limits(limits=1, user_api="blas"):
                return self._propose(study, trial)
        finally:
            torch.set_num_threads(threads)

    def _propose(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        rng = np.random.default_rng([self._ctx.seed, trial.number])
        trials = study.get_trials(deepcopy=False)
        complete, pending, seen = [], [], set()
        n_obj = len(self._sources)
        for t in trials:
            if t.number == trial.number or not self._enc.contains(t.params):
                continue
            if t.state == TrialState.COMPLETE and t.values is not None and len(t.values) == n_obj \
                    and all(math.isfinite(v) for v in t.values):
                complete.append(t)
            elif t.state == TrialState.RUNNING:
                pending.append(t)
            elif t.state != TrialState.FAIL:
                continue  # pruned-as-infeasible: the filter below keeps such points out anyway
            seen.add(self._enc.key(t.params))
        seen.update(self._enc.key(t.params) for t in complete)
        if len(complete) < max(2, self._ctx.n_startup):
            return self._space_filling(rng, complete + pending, seen)
        try:
            return self._bayesian(rng, complete, pending, seen)
        except Exception as exc:  # numerical trouble must cost one model-free proposal, not the study
            logger.warning("mobo: model-based proposal failed (%s: %s); using a space-filling point",
                           type(exc).__name__, exc)
            return self._space_filling(rng, complete + pending, seen)

    # ------------------------------------------------------------------ objectives
    def _plan_sources(self) -> list[_Source]:
        """Which objectives are exact, which are modelled, which are an estimate times a correction."""
        ctx = self._ctx
        probe = ctx.known_values(self._enc.sample(np.random.default_rng(0))) if ctx.known else {}
        sources, n_out = [], 0
        for name, direction in zip(ctx.objectives, ctx.directions):
            if name in probe:
                sources.append(_Source(name, direction, "known", name))
            elif ESTIMATED_BY.get(name) in probe:
                sources.append(_Source(name, direction, "corrected", ESTIMATED_BY[name], n_out))
                n_out += 1
            else:
                sources.append(_Source(name, direction, "model", None, n_out))
                n_out += 1
        return sources

    def _known_and_feasible(self, values: Mapping[str, Any]) -> tuple[dict[str, float], bool]:
        key = tuple(sorted(values.items()))
        hit = self._cache.get(key)
        if hit is None:
            try:
                feasible = self._ctx.is_feasible(values)
                known = self._ctx.known_values(values) if feasible else {}
            except AutoPEFTError:  # a point the model cannot take is as good as over budget
                feasible, known = False, {}
            hit = (known, feasible)
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _known_columns(self, points: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(n, n_known) known values in source order (for 'known' and 'corrected'), in the maximisation frame of
        the objective they stand for (a 'corrected' one's estimate on its objective's scale)."""
        cols = [s for s in self._sources if s.known is not None]
        if not cols:
            return np.zeros((len(points), 0))
        raw = [[self._known_and_feasible(v)[0][s.known] for s in cols] for v in points]
        return to_frame(np.array(raw, dtype=float).reshape(len(points), len(cols)), [s.name for s in cols],
                        [s.direction for s in cols], "maximize")

    def _scaled_reference(self) -> list[float] | None:
        ref = self._ctx.reference_point
        if ref is None:
            return None
        return to_frame([[ref[n] for n in self._ctx.objectives]], self._ctx.objectives, self._ctx.directions,
                        "maximize")[0].tolist()

    # ------------------------------------------------------------------ start-up design
    def _space_filling(self, rng: np.random.Generator, existing: list[FrozenTrial], seen: set) -> dict[str, Any]:
        """A random feasible unseen point; with known objectives, the one of a few that is farthest from the
        existing points along them (so the first trials span small to large configurations).

        Spreading along the *features* instead would push every dimension to its bounds (farthest-point
        designs favour corners), which is where a black-box objective is rarely best.
        """
        pool = self._feasible_pool(rng, 32, seen)
        if not pool:
            return {}
        known = self._known_columns(pool)
        if not existing or not known.shape[1]:
            return pool[0]
        span = np.array([self._known_span(j) for j in range(known.shape[1])])
        have = self._known_columns([t.params for t in existing]) / span
        dist = np.abs((known / span)[:, None, :] - have[None, :, :]).sum(-1).min(1)
        return pool[int(np.argmax(dist))]

    def _known_span(self, j: int) -> float:
        """Scale of the j-th known column: its reference-point magnitude (1 without a reference point)."""
        scaled_ref = self._scaled_reference()
        if scaled_ref is None:
            return 1.0
        s = [s for s in self._sources if s.known is not None][j]
        return max(1e-9, abs(scaled_ref[self._sources.index(s)]))

    def _feasible_pool(self, rng: np.random.Generator, n: int, seen: set) -> list[dict[str, Any]]:
        """``n`` random points (several size skews) that meet the budgets, are new and distinct."""
        out, keys = [], set()
        skews = (0.5, 1.0, 2.0, 4.0)
        for i in range(20 * n):
            if len(out) >= n:
                break
            self._add_if_new(self._enc.sample(rng, skews[i % len(skews)]), seen, keys, out)
        return out

    def _add_if_new(self, v: dict[str, Any], seen: set, keys: set, out: list[dict[str, Any]]) -> None:
        """Append ``v`` to ``out`` (its key to ``keys``) if it is in neither ``seen`` nor ``keys`` and meets the
        budgets."""
        k = self._enc.key(v)
        if k in seen or k in keys or not self._known_and_feasible(v)[1]:
            return
        keys.add(k)
        out.append(v)

    # ------------------------------------------------------------------ the model-based proposal
    def _inputs(self, points: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """(n, F + n_known) tensor: features, then the known columns the objective reads."""
        x = self._enc.encode_many(points)
        k = self._known_columns(points)
        return torch.as_tensor(np.hstack([x, k]), dtype=torch.double)

    def _model_input_columns(self) -> torch.Tensor:
        f = self._enc.num_features
        n_known = sum(1 for s in self._sources if s.known is not None)
        cols = list(range(f)) + (list(range(f, f + n_known)) if self._known_features else [])
        return torch.tensor(cols, dtype=torch.long)

    def _fit(self, X: torch.Tensor, Y: torch.Tensor):
        """A GP on the model columns of ``X``; hyperparameters warm-started, re-estimated on schedule."""
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.input import FilterFeatures, Normalize
        from botorch.models.transforms.outcome import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        cols = self._model_input_columns()
        transform = FilterFeatures(feature_indices=cols)
        if self._known_features and len(cols) > self._enc.num_features:
            # known columns are on their own scales (log params ~ 0..15): bring them to [0, 1] too
            from botorch.models.transforms.input import ChainedInputTransform

            lo, hi = X[:, cols].min(0).values, X[:, cols].max(0).values
            hi = torch.where(hi - lo > 1e-9, hi, lo + 1.0)
            transform = ChainedInputTransform(filter=transform, normalize=Normalize(
                d=len(cols), bounds=torch.stack([lo, hi])))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. constant scores early on: the fit copes, the warning is noise
            mean = None
            if self._mean == "linear" and len(cols) > self._enc.num_features:
                from gpytorch.means import LinearMean

                class KnownLinearMean(LinearMean):
                    """Constant + slope on the known columns (last in the model's input)."""

                    def forward(self, x: torch.Tensor) -> torch.Tensor:
                        return super().forward(x[..., -n_known:])

                n_known = len(cols) - self._enc.num_features
                mean = KnownLinearMean(n_known, batch_shape=torch.Size([Y.shape[-1]]) if Y.shape[-1] > 1
                                       else torch.Size())
                torch.nn.init.zeros_(mean.weights)  # no slope until the data show one (and no random init)
            model = SingleTaskGP(X, Y, outcome_transform=Standardize(m=Y.shape[-1]), input_transform=transform,
                                 mean_module=mean)
            mll = ExactMarginalLogLikelihood(model.likelihood, model)
            warm = self._warm is not None
            if warm:
                try:
                    model.load_state_dict(self._warm, strict=False)
                except RuntimeError:  # shapes changed (another space): start from the priors
                    warm = False
            n = len(X)
            if not warm or n < 30 or n % self._refit_every == 0:
                fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": self._max_fit_iter}})
            model.eval()
        self._warm = {k: v.detach().clone() for k, v in model.state_dict().items()
                      if ("raw_" in k or k.startswith("mean_module.")) and "input_transform" not in k
                      and "outcome_transform" not in k}
        return model

    def _bayesian(self, rng: np.random.Generator, complete: list[FrozenTrial], pending: list[FrozenTrial],
                  seen: set) -> dict[str, Any]:
        from botorch.acquisition.multi_objective.logei import (qLogExpectedHypervolumeImprovement,
                                                                qLogNoisyExpectedHypervolumeImprovement)
        from botorch.acquisition.multi_objective.objective import GenericMCMultiOutputObjective
        from botorch.sampling import SobolQMCNormalSampler
        from botorch.utils.multi_objective.box_decompositions.non_dominated import FastNondominatedPartitioning
        from botorch.utils.multi_objective.pareto import is_non_dominated

        torch.manual_seed(int(rng.integers(2**31)))
        points = [t.params for t in complete]
        X = self._inputs(points)
        n_model = sum(1 for s in self._sources if s.output is not None)
        known_col = {}
        f = self._enc.num_features
        for s in self._sources:
            if s.known is not None:
                known_col[s.name] = f + len(known_col)
        # observed objectives in the maximisation frame; targets of the modelled ones
        obs = torch.tensor(to_frame([t.values for t in complete], self._ctx.objectives, self._ctx.directions,
                                    "maximize"), dtype=torch.double)
        Y = torch.zeros(len(complete), max(n_model, 1), dtype=torch.double)
        for j, s in enumerate(self._sources):
            if s.kind == "model":
                Y[:, s.output] = obs[:, j]
            elif s.kind == "corrected":
                Y[:, s.output] = obs[:, j] - X[:, known_col[s.name]]
        if n_model == 0:
            raise RuntimeError("every objective is known: nothing to model")
        model = self._fit(X, Y)
        sources = self._sources

        def assemble(samples: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
            cols = []
            for s in sources:
                if s.kind == "model":
                    cols.append(samples[..., s.output])
                else:
                    exact = X[..., known_col[s.name]].expand(samples.shape[:-1])
                    cols.append(exact if s.kind == "known" else exact + samples[..., s.output])
            return torch.stack(cols, dim=-1)

        ref = self._scaled_reference()
        if ref is None:  # no fixed point given: the usual heuristic on what was observed
            from botorch.utils.multi_objective.hypervolume import infer_reference_point

            ref = infer_reference_point(obs).tolist()
        X_pending = self._inputs([t.params for t in pending]) if pending else None
        objective = GenericMCMultiOutputObjective(assemble)

        def sampler(n: int) -> SobolQMCNormalSampler:
            return SobolQMCNormalSampler(sample_shape=torch.Size([n]), seed=seed)

        seed = int(rng.integers(2**31))
        # screening: qLogEHVI with few samples, cheap enough for the whole pool
        if self._front == "observed":
            front = obs
        else:
            with torch.no_grad():
                front = assemble(model.posterior(X).mean.unsqueeze(0), X).squeeze(0)
        partitioning = FastNondominatedPartitioning(ref_point=torch.tensor(ref, dtype=torch.double), Y=front)
        screen = qLogExpectedHypervolumeImprovement(model=model, ref_point=ref, partitioning=partitioning,
                                                    objective=objective, sampler=sampler(self._screen_samples),
                                                    X_pending=X_pending)

        # candidates: random feasible points + mutations of the observed Pareto set, then local search
        pareto = [points[i] for i in torch.nonzero(is_non_dominated(obs)).view(-1).tolist()]
        pool = self._feasible_pool(rng, self._candidates, seen)
        keys = {self._enc.key(v) for v in pool}
        pool += self._neighbours(rng, pareto, max(8, self._candidates // max(1, len(pareto))), seen, keys)
        if not pool:
            return {}
        scores = self._score(screen, pool)
        for _ in range(self._local_rounds):
            top = [pool[i] for i in np.argsort(-scores)[:8]]
            new = self._neighbours(rng, top, 16, seen, keys)
            if not new:
                break
            pool += new
            scores = np.concatenate([scores, self._score(screen, new)])

        # the short list, scored by the acquisition proper
        short = [pool[i] for i in np.argsort(-scores)[:FINAL_CANDIDATES]]
        if self._acquisition == "nehvi":
            acq = qLogNoisyExpectedHypervolumeImprovement(
                model=model, ref_point=ref, X_baseline=X, objective=objective, sampler=sampler(self._mc_samples),
                X_pending=X_pending, prune_baseline=True, cache_root=False)
        else:
            acq = qLogExpectedHypervolumeImprovement(model=model, ref_point=ref, partitioning=partitioning,
                                                     objective=objective, sampler=sampler(self._mc_samples),
                                                     X_pending=X_pending)
        final = self._score(acq, short)
        logger.debug("mobo: %d candidates, best log-acquisition %.3f", len(pool), float(final.max()))
        return short[int(np.argmax(final))]

    def _neighbours(self, rng: np.random.Generator, centres: Sequence[Mapping[str, Any]], per: int,
                    seen: set, keys: set) -> list[dict[str, Any]]:
        out = []
        for c in centres:
            for _ in range(per):
                self._add_if_new(self._enc.mutate(c, rng, n_changes=1 + int(rng.poisson(0.7))), seen, keys, out)
        return out

    def _score(self, acq, points: Sequence[Mapping[str, Any]]) -> np.ndarray:
        X = self._inputs(points).unsqueeze(1)
        with torch.no_grad():
            vals = torch.cat([acq(X[i:i + 256]) for i in range(0, len(X), 256)])
        return vals.numpy()
