r"""Bayes factors between hypotheses that differ only in prior values, by reweighting one fit.

Two hypotheses :math:`H_0` (the reference, fitted) and :math:`H_1` with the same
likelihood and priors :math:`p_0(\theta)`, :math:`p_1(\theta)` on the same
parameters have marginal likelihoods in the ratio

.. math::

    B_{10} = \frac{Z_1}{Z_0} = \int \frac{p_1(\theta)}{p_0(\theta)}\, p_0(\theta \mid y)\,
    d\theta \approx \frac1S \sum_s \frac{p_1(\theta_s)}{p_0(\theta_s)},

the posterior mean of the prior ratio over the reference fit's draws (the
likelihood cancels). The estimate is Pareto-smoothed (PSIS, Vehtari et al. 2024,
through arviz-stats): the largest ratios are replaced by the quantiles of a
generalised Pareto fitted to them, and the fitted shape :math:`\hat k` says
whether the estimate can be trusted: above 0.7 the reference posterior does not
cover where :math:`H_1`'s posterior lies, and the estimate is refused (a new
fit, or cross-validation, is needed). Its Monte Carlo standard error (on the log
scale) comes from the smoothed weights and the effective sample size of the
ratios. No second fit is needed, so every prior-only hypothesis costs only the
evaluation of its prior densities on the reference draws.

Which hypotheses qualify is checked on the models, not assumed:
:func:`reweightable` compares the two built models' ``prior_values``
(``llmsize.inference.model.prior_data``): same compiled structure, and every value that
differs is a parameter of a prior whose density :func:`llmsize.inference.sampling.log_prior`
evaluates (a prior's starting value may differ too; a component weight, a GPU-hour
price level or anything else that enters the likelihood may not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

#: Largest Pareto shape at which a PSIS estimate is used (Vehtari et al. 2024).
K_MAX = 0.7

#: Prior values that only start the sampler: they may differ between hypotheses.
_START_ONLY = (".centre",)


@dataclass(frozen=True)
class ReweightedEvidence:
    """A log Bayes factor from reweighting a reference fit's draws."""

    log_bf: float
    se: float
    pareto_k: float
    ess: float

    @property
    def reliable(self) -> bool:
        """Whether the estimate can be used: finite, with Pareto k at most :data:`K_MAX`."""
        return bool(np.isfinite(self.log_bf) and self.pareto_k <= K_MAX)


def reweighted_log_bf(log_ratio: xr.DataArray) -> ReweightedEvidence:
    r"""Log B_10 from the log prior ratio :math:`\log p_1 - \log p_0` at each reference draw.

    Parameters
    ----------
    log_ratio : DataArray
        Dimensions ``chain`` and ``draw``.
    """
    import arviz_stats  # noqa: F401 - registers the ``azstats`` accessor

    r = log_ratio.transpose("chain", "draw")
    values = np.asarray(r.values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        return ReweightedEvidence(-math.inf, math.inf, math.inf, 0.0)
    n = values.size
    if np.ptp(values) == 0:  # the same prior at every draw: weights all equal
        return ReweightedEvidence(float(values.flat[0]), 0.0, -math.inf, float(n))
    shifted = np.exp(values - values.max())
    ess = float(xr.DataArray(shifted, dims=("chain", "draw")).azstats.ess(method="mean"))
    r_eff = min(1.0, ess / n)
    # arviz-stats smooths the weights 1/exp(x) (its use in LOO): pass -r.
    log_w, k = (-r).azstats.psislw(dim=["chain", "draw"], r_eff=r_eff)
    log_w = np.asarray(log_w.transpose("chain", "draw").values, dtype=np.float64)
    # The normalised smoothed weights are r~ - logsumexp(r~), and smoothing leaves
    # every draw outside the upper tail as it was, the smallest ratio among them.
    low = np.unravel_index(np.argmin(values), values.shape)
    log_sum = values[low] - log_w[low]
    log_bf = float(log_sum - math.log(n))
    w = np.exp(log_w.ravel())
    rel_var = max(n * float(np.sum(w**2)) - 1.0, 0.0)
    se = math.sqrt(rel_var / (n * r_eff))
    return ReweightedEvidence(log_bf, se, float(k), ess)


def reweightable(reference_model, model) -> str | None:
    """Why ``model`` cannot be scored by reweighting ``reference_model``'s fit (None: it can).

    Both are built by :func:`llmsize.inference.model.build_model`; the caller also checks
    that their compiled structures (:func:`llmsize.inference.compiled.model_key`) agree.
    """
    a = getattr(reference_model, "prior_value_index", None)
    b = getattr(model, "prior_value_index", None)
    if a is None or b is None:
        return "not built by llmsize.inference.model.build_model"
    if a.keys() != b.keys():
        return "the priors differ in kind, not only in value"
    va = reference_model[_values_name()].get_value()
    vb = model[_values_name()].get_value()
    for name, (at, shape) in a.items():
        if b[name] != (at, shape):
            return f"{name} differs in shape"
        if np.array_equal(va[at], vb[at]) or name.endswith(_START_ONLY):
            continue
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != "prior" or parts[2] == "value":
            return f"{name} differs: it enters the likelihood, not only a prior's density"
    return None


def _values_name() -> str:
    from llmsize.inference.model import PRIOR_VALUES

    return PRIOR_VALUES


def log_prior_ratio(new: xr.Dataset, reference: xr.Dataset) -> xr.DataArray:
    """Sum over every prior of ``log p_1 - log p_0`` per draw.

    ``new`` and ``reference``: :func:`llmsize.inference.sampling.log_prior` of the same
    posterior under the two hypotheses. A prior that is a constant under one and
    a distribution under the other cannot be reweighted (a structural change,
    refused before this by :func:`reweightable`).
    """
    if set(new.data_vars) != set(reference.data_vars):
        raise ValueError("the two hypotheses do not have the same priors")
    total = xr.DataArray(0.0)
    for name in reference.data_vars:
        diff = new[name] - reference[name]
        extra = [d for d in diff.dims if d not in ("chain", "draw")]
        total = total + (diff.sum(extra) if extra else diff)
    return total
