"""Sample a built model with nutpie and gather every group into one DataTree.

The same seed feeds the posterior (nutpie's NUTS), the prior and prior
predictive draws, and the posterior predictive draws, so a run is reproducible
from its data, hypothesis and seed.
"""

from __future__ import annotations

import logging
import warnings
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import nutpie
import pymc as pm
import xarray as xr

from llmsize.inference.compiled import compile_model, exact_math, fast_argument_typing
from llmsize.inference.model import build_model
from llmsize.inputs.hypothesis import (
    PER_MODEL_PRIORS,
    SAMPLER_LIMITS,
    ConstantPrior,
    Hypothesis,
    Sampler,
    check_sampler_options,
)
from llmsize.physics.design import Design

log = logging.getLogger(__name__)

#: Predictive variables written to the prior and posterior predictive groups.
PREDICTIVE_VARS = ("output_price", "input_price", "output_speed", "ttft", "mmlu")

#: Pointwise log-likelihood deterministics and their names in the log_likelihood group.
LOGLIK_VARS = {"loglik_serving": "serving", "loglik_mmlu": "mmlu", "loglik_hidden": "hidden_size"}

#: Deterministics left out of the prior group: the component probabilities are the
#: same for every draw of the prior, and ``batch`` weights the components by their
#: posterior probability, which is not a prior quantity.
_PRIOR_DROP = ("p_bits", "p_hardware", "serving_component", "measure_component", "batch")


@dataclass(frozen=True)
class SampleSettings:
    """What ``infer`` samples: draws, tuning steps, chains, seed, target acceptance."""

    draws: int
    tune: int
    chains: int
    seed: int
    target_accept: float = 0.9
    #: nutpie's mass-matrix adaptation (see ``config.Sampler``).
    adaptation: str = "diag"
    prior_draws: int = 1000
    #: Threads nutpie may use; ``None`` is one per chain, at most two.
    cores: int | None = None

    @classmethod
    def from_hypothesis(cls, sampler: Sampler, **overrides) -> SampleSettings:
        """The hypothesis' ``[sampler]`` table with ``overrides`` (``None``: not given).

        Whole-number overrides outside their range raise
        :class:`~llmsize.exceptions.HypothesisError` (:func:`check_sampler_options`).
        """
        check_sampler_options(**{k: v for k, v in overrides.items() if k in SAMPLER_LIMITS})
        values: dict[str, Any] = {
            "draws": sampler.draws,
            "tune": sampler.tune,
            "chains": sampler.chains,
            "seed": sampler.seed,
            "target_accept": sampler.target_accept,
            "adaptation": sampler.adaptation,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def observed_dataset(design: Design, coords: dict) -> xr.Dataset:
    """The observations in the units and dims of the predictive variables."""
    data = {
        "output_price": ("epoch", np.exp(design.log_price_out)),
        "input_price": ("epoch", np.exp(design.log_price_in)),
    }
    if len(design.log_speed):
        data["output_speed"] = ("speed_obs", np.exp(design.log_speed))
    if len(design.log_ttft):
        data["ttft"] = ("ttft_obs", np.exp(design.log_ttft))
    if len(design.mmlu_score):
        data["mmlu"] = ("mmlu_obs", design.mmlu_score)
    used = {dim for dim, _ in data.values()}
    return xr.Dataset(data, coords={k: v for k, v in coords.items() if k in used})


def sample_posterior(model: pm.Model, settings: SampleSettings, *, progress: bool = False):
    """NUTS with nutpie: compile the model's logp and gradient (or load them from
    the compiled-model cache, :mod:`llmsize.inference.compiled`), then sample.

    An interrupt (SIGINT, or SIGTERM, which the CLI turns into one) while the
    chains run stops them and propagates. ``nutpie.sample`` itself would return
    the draws made so far, and the run would go on to report a truncated fit.
    """
    compiled = compile_model(model)
    sampler = nutpie.sample(
        compiled,
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        seed=settings.seed,
        target_accept=settings.target_accept,
        adaptation=settings.adaptation,
        progress_bar=progress,
        cores=settings.cores or min(settings.chains, 2),
        blocking=False,
    )
    try:
        return sampler.wait()
    except KeyboardInterrupt:
        sampler.cancel()
        raise


@exact_math()
def sample_prior(design: Design, hyp: Hypothesis, settings: SampleSettings) -> xr.DataTree:
    """Draws of the priors and of the observations they predict."""
    model = build_model(design, hyp, predictive="prior")
    present = [v for v in PREDICTIVE_VARS if v in model.named_vars]
    with warnings.catch_warnings():
        # The likelihood is a Potential; the prior rightly ignores it.
        warnings.filterwarnings("ignore", message="The effect of Potentials")
        tree = pm.sample_prior_predictive(
            draws=settings.prior_draws, model=model, random_seed=settings.seed
        )
    # Unobserved predictive copies land in the prior group; the observed MMLU
    # in the prior predictive group. Gather both into one predictive group.
    prior = tree["prior"].to_dataset()
    pp = xr.merge(
        [prior[[v for v in present if v in prior]], tree["prior_predictive"].to_dataset()]
    )[present]
    prior = prior.drop_vars([v for v in (*_PRIOR_DROP, *present) if v in prior.data_vars])
    return xr.DataTree.from_dict({"prior": prior, "prior_predictive": pp})


@exact_math()
@fast_argument_typing()
def sample_posterior_predictive(
    trace: xr.DataTree, design: Design, hyp: Hypothesis, settings: SampleSettings
) -> xr.Dataset:
    """Replicate every observation from the posterior, component included."""
    model = build_model(design, hyp, predictive="posterior")
    present = [v for v in PREDICTIVE_VARS if v in model.named_vars]
    with warnings.catch_warnings():
        # The Potential is the likelihood the posterior already accounts for.
        warnings.filterwarnings("ignore", message="The effect of Potentials")
        pp = pm.sample_posterior_predictive(
            trace,
            model=model,
            var_names=["serving_component", *present],
            # Every parameter keeps its posterior draw. The priors' parameters are
            # data (``model.prior_data``) upstream of them, which PyMC would take
            # as a reason to draw them afresh.
            freeze_vars=[rv.name for rv in model.free_RVs if rv.name in trace["posterior"]],
            random_seed=settings.seed,
            progressbar=False,
        )
    # The drawn serving component (precision x hardware) of each epoch is kept,
    # small integers: the price-cut decomposition reads it draw by draw.
    out = pp["posterior_predictive"].to_dataset()
    return out[present].assign(serving_component=out["serving_component"].astype("int8"))


def _numeric(ds: xr.Dataset) -> xr.Dataset:
    """Drop text-valued sampler statistics (divergence messages), which netCDF cannot hold."""
    return ds.drop_vars([v for v, a in ds.data_vars.items() if a.dtype.kind == "O"])


def split_log_likelihood(posterior: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    """Move the pointwise log-likelihood deterministics into their own dataset."""
    present = {k: v for k, v in LOGLIK_VARS.items() if k in posterior}
    return posterior.drop_vars(list(present)), posterior[list(present)].rename(present)


def log_prior(posterior: xr.Dataset, hyp: Hypothesis) -> xr.Dataset:
    """Log density of each draw under the hypothesis' priors (one variable per prior).

    Only the priors a hypothesis file sets are included, not the standard-normal
    offsets of the hierarchical terms: power-scaling sensitivity then asks how
    much a conclusion depends on what a user can swap. Each prior is evaluated
    at the recorded value of its quantity, also where the model samples that
    quantity through another variable (the input markup mean,
    ``model._markups``); constants are left out.
    """
    out = {}
    for name in type(hyp.priors).model_fields:
        if name not in posterior:
            continue
        values = posterior[name]
        if name in PER_MODEL_PRIORS:
            values = values.transpose(..., "unknown_model")
            specs = [hyp.prior_for(name, m) for m in values["unknown_model"].values]
        else:
            specs = [getattr(hyp.priors, name)]
        if isinstance(specs[0], ConstantPrior):
            continue
        x = values.values
        lp = np.empty_like(x)
        if len(specs) == 1:
            lp[...] = specs[0].logpdf(x)
        else:
            for j, spec in enumerate(specs):
                lp[..., j] = spec.logpdf(x[..., j])
        out[name] = values.copy(data=lp)
    return xr.Dataset(out)


def fit(
    design: Design,
    hyp: Hypothesis,
    settings: SampleSettings,
    *,
    progress: bool = False,
    pointwise: bool = True,
    executor: Executor | None = None,
) -> xr.DataTree:
    """Build, sample and predict: one DataTree with every group of the run.

    With ``pointwise``, the tree also holds ``log_likelihood`` (per serving epoch
    and per MMLU score) and ``log_prior`` groups, for PSIS-LOO and psense.
    With ``executor`` (a process pool), the prior draws are made there while this
    process compiles the model and runs the chains: on a first run of a model's
    structure their compile (about 25 s) then overlaps the model's, which uses
    one core. The draws are the same either way (same seed; to the last bits of a
    float64, which another process's arithmetic can change).
    """
    prior_draws = executor.submit(sample_prior, design, hyp, settings) if executor else None
    model = build_model(design, hyp, pointwise=pointwise)
    log.info(
        "sampling %d chains x %d draws (tune %d) with nutpie",
        settings.chains,
        settings.draws,
        settings.tune,
    )
    trace = sample_posterior(model, settings, progress=progress)
    log.info("prior and predictive draws")
    prior = prior_draws.result() if prior_draws else sample_prior(design, hyp, settings)
    ppc = sample_posterior_predictive(trace, design, hyp, settings)
    posterior, loglik = split_log_likelihood(trace["posterior"].to_dataset())
    groups = {
        "posterior": posterior,
        "sample_stats": _numeric(trace["sample_stats"].to_dataset()),
        "prior": prior["prior"].to_dataset(),
        "prior_predictive": prior["prior_predictive"].to_dataset(),
        "posterior_predictive": ppc,
        "observed_data": observed_dataset(design, {k: list(v) for k, v in model.coords.items()}),
    }
    if pointwise:
        groups["log_likelihood"] = loglik
        groups["log_prior"] = log_prior(posterior, hyp)
    return xr.DataTree.from_dict(groups)
