r"""Bayes factors between two fitted hypotheses of one compiled structure.

Two hypotheses :math:`H_0` (the reference) and :math:`H_1` of one compiled
structure differ only in the values the graph reads (prior parameters, the
serving components' prior weights, price levels): their unnormalised
posteriors :math:`q_i(\theta)` over the same variables are the same compiled
log density under two sets of values (:class:`LogDensity`), and where only
prior densities differ their ratio :math:`\ell(\theta) = q_1 / q_0` is the
prior ratio: the likelihood cancels. With draws from both posteriors
(``compare`` fits every hypothesis anyway), the ratio of their normalising
constants, the Bayes factor :math:`B_{10} = Z_1 / Z_0`, is Meng and Wong's
(1996) optimal bridge estimate, the fixed point of

.. math::

    r = \frac{\frac{1}{n_0} \sum_{\theta \sim H_0} \ell / (s_1 \ell + s_0 r)}
             {\frac{1}{n_1} \sum_{\theta \sim H_1} 1 / (s_1 \ell + s_0 r)},
    \qquad s_i = \frac{n_i}{n_0 + n_1}.

Reweighting the reference alone (:mod:`llmsize.inference.evidence`) needs the
reference posterior to reach wherever :math:`H_1`'s posterior lies; a narrow
prior (a claim such as "ChatGPT is 20B") puts it in the reference's tail, and
the Pareto k of the weights says so. The bridge uses both fits: both sums
average bounded terms (at most :math:`1/s_1` and :math:`1/(s_0 r)`), so the
estimate has finite variance however little the posteriors overlap, and its
relative error (Fruhwirth-Schnatter 2004, as in the ``bridgesampling`` package
of Gronau et al. 2017) is

.. math::

    \mathrm{RE}^2 = \frac{\mathrm{Var}_0(f_0)}{\mathrm{ESS}_0\, E_0(f_0)^2}
                  + \frac{\mathrm{Var}_1(f_1)}{\mathrm{ESS}_1\, E_1(f_1)^2},

with :math:`f_0, f_1` the two sums' terms and each effective sample size that
of the terms over the chains (arviz-stats), so autocorrelated NUTS draws count
for what they are worth. Its square root is the standard error of the log
Bayes factor. Little overlap shows as a large standard error; above
:data:`SE_MAX` the estimate is flagged. The known-answer tests
(``tests/studies/compare/test_bridge.py``) recover conjugate models' analytic
Bayes factors, also where reweighting the reference alone is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy import optimize
from scipy.special import logsumexp

#: Largest standard error (nats) at which a bridged log Bayes factor is used: twice
#: it stays within the 1 nat that separates a usable estimate from noise.
SE_MAX = 0.5
#: Tolerance of the fixed point (nats).
TOLERANCE = 1e-10


@dataclass(frozen=True)
class BridgedEvidence:
    """A log Bayes factor of a hypothesis over the reference, bridged between their fits."""

    log_bf: float
    se: float
    #: Effective sample sizes of the two sums' terms (reference draws, hypothesis' draws).
    ess_reference: float
    ess_hypothesis: float

    @property
    def reliable(self) -> bool:
        """Whether the estimate can be used: finite, standard error at most :data:`SE_MAX`."""
        return bool(np.isfinite(self.log_bf) and np.isfinite(self.se) and self.se <= SE_MAX)


def _log_mean_exp(x: np.ndarray) -> float:
    return float(logsumexp(x) - math.log(x.size))


def _ess(values: np.ndarray) -> float:
    import arviz_stats  # noqa: F401 - registers the ``azstats`` accessor

    if np.ptp(values) == 0:
        return float(values.size)
    da = xr.DataArray(values, dims=("chain", "draw"))
    return float(da.azstats.ess(method="mean"))


def bridged_log_bf(ratio_reference: np.ndarray, ratio_hypothesis: np.ndarray) -> BridgedEvidence:
    r"""Log :math:`B_{10}` from the log ratio :math:`\log q_1 - \log q_0` of the two
    unnormalised posteriors (the log prior ratio where only priors differ) at each
    draw of the reference's posterior and of the hypothesis' own.

    Parameters
    ----------
    ratio_reference, ratio_hypothesis : ndarray
        Shape ``(chain, draw)`` each (the chains of one fit, in order).
    """
    l0 = np.asarray(ratio_reference, dtype=np.float64)
    l1 = np.asarray(ratio_hypothesis, dtype=np.float64)
    if l0.ndim != 2 or l1.ndim != 2:
        raise ValueError("each log ratio must have the dimensions (chain, draw)")
    if not (np.all(np.isfinite(l0)) and np.all(np.isfinite(l1))):
        return BridgedEvidence(math.nan, math.inf, 0.0, 0.0)
    n0, n1 = l0.size, l1.size
    log_s0, log_s1 = math.log(n0 / (n0 + n1)), math.log(n1 / (n0 + n1))

    def terms(log_r: float) -> tuple[np.ndarray, np.ndarray]:
        """The log terms of the two sums at ``log_r``: numerator (reference draws)
        and denominator (the hypothesis' draws).
        """
        d0 = np.logaddexp(log_s1 + l0, log_s0 + log_r)
        d1 = np.logaddexp(log_s1 + l1, log_s0 + log_r)
        return l0 - d0, -d1

    def step(log_r: float) -> float:
        """The right-hand side of the fixed point, in logs."""
        t0, t1 = terms(log_r)
        return _log_mean_exp(t0.ravel()) - _log_mean_exp(t1.ravel())

    # The fixed point is unique (Meng and Wong 1996); iterating converges slowly
    # where the posteriors barely overlap, so it is found as the root of
    # step(x) - x, bracketed from reweighting the reference alone.
    start = _log_mean_exp(l0.ravel())
    gap = lambda x: step(x) - x  # noqa: E731
    lo = hi = start
    width = 1.0
    while gap(lo) < 0:
        lo -= width
        width *= 2
    width = 1.0
    while gap(hi) > 0:
        hi += width
        width *= 2
    log_r = start if lo == hi else float(optimize.brentq(gap, lo, hi, xtol=TOLERANCE))
    t0, t1 = terms(log_r)
    # The two sums' terms, scaled by their largest (the relative error is scale-free).
    f0 = np.exp(t0 - np.max(t0))
    f1 = np.exp(t1 - np.max(t1))
    ess0, ess1 = _ess(f0), _ess(f1)
    re2 = f0.var() / (ess0 * f0.mean() ** 2) + f1.var() / (ess1 * f1.mean() ** 2)
    return BridgedEvidence(float(log_r), math.sqrt(re2), ess0, ess1)


#: Most draws of each fit the bridge evaluates the model's density at (thinned
#: evenly within each chain): the effective sizes of a fit are far fewer.
MAX_DRAWS = 4000


def thin(posterior: xr.Dataset, names: list[str], max_draws: int = MAX_DRAWS) -> xr.Dataset:
    """The draws of ``names``, thinned evenly within each chain to at most ``max_draws``
    in all, copied (so the full posterior can be freed).
    """
    step = max(1, math.ceil(posterior.sizes["chain"] * posterior.sizes["draw"] / max_draws))
    return posterior[names].isel(draw=slice(None, None, step)).copy(deep=True)


class LogDensity:
    r"""The unnormalised log posterior density of one compiled structure, at the
    constrained values of its free variables, under any hypothesis' values.

    Hypotheses of one structure (:func:`llmsize.inference.compiled.model_key`)
    differ only in the values of ``prior_values`` (prior parameters, component
    weights, price levels): the density of a draw under another hypothesis is
    the same compiled log density with that hypothesis' values set. It is taken
    over the variables' own (constrained) values, without a Jacobian, so the two
    densities are over one space whatever transforms the sampler used.
    """

    def __init__(self, model):
        import pytensor

        from llmsize.inference.model import PRIOR_VALUES

        rvs = list(model.free_RVs)
        self.names = [rv.name for rv in rvs]
        xs = [rv.type(name=rv.name) for rv in rvs]
        unconstrained = []
        for rv, x in zip(rvs, xs, strict=True):
            tr = model.rvs_to_transforms.get(rv)
            unconstrained.append(x if tr is None else tr.forward(x, *rv.owner.inputs))
        self._forward = pytensor.function(xs, unconstrained, on_unused_input="ignore")
        values = [model.rvs_to_values[rv] for rv in rvs]
        self._logp = pytensor.function(values, model.logp(jacobian=False), mode="FAST_RUN")
        self._prior_values = model[PRIOR_VALUES]

    def at(self, draws: xr.Dataset, prior_values: np.ndarray) -> np.ndarray:
        """The log density at each draw ``(chain, draw)`` with ``prior_values`` set."""
        saved = self._prior_values.get_value()
        self._prior_values.set_value(np.asarray(prior_values, dtype=np.float64))
        try:
            arrays = [
                np.asarray(draws[n].transpose("chain", "draw", ...).values) for n in self.names
            ]
            shape = arrays[0].shape[:2]
            out = np.empty(shape)
            for c, d in np.ndindex(shape):
                out[c, d] = self._logp(*self._forward(*(a[c, d] for a in arrays)))
        finally:
            self._prior_values.set_value(saved)
        return out
