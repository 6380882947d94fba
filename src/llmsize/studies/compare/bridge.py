r"""Bayes factors between two fitted hypotheses that differ only in prior densities.

Two hypotheses :math:`H_0` (the reference) and :math:`H_1` with the same
likelihood and priors :math:`p_0(\theta)`, :math:`p_1(\theta)` have unnormalised
posteriors :math:`q_i = L(\theta)\, p_i(\theta)` whose ratio is the prior ratio
:math:`\ell(\theta) = p_1(\theta) / p_0(\theta)`: the likelihood cancels. With
draws from both posteriors (``compare`` fits every hypothesis anyway), the
ratio of their normalising constants, the Bayes factor :math:`B_{10} = Z_1 /
Z_0`, is Meng and Wong's (1996) optimal bridge estimate, the fixed point of

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
    r"""Log :math:`B_{10}` from the log prior ratio :math:`\log p_1 - \log p_0` at each draw
    of the reference's posterior and of the hypothesis' own.

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

    def step(log_r: float) -> float:
        """The right-hand side of the fixed point, in logs."""
        d0 = np.logaddexp(log_s1 + l0, log_s0 + log_r)
        d1 = np.logaddexp(log_s1 + l1, log_s0 + log_r)
        return _log_mean_exp((l0 - d0).ravel()) - _log_mean_exp(-d1.ravel())

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
    d0 = np.logaddexp(log_s1 + l0, log_s0 + log_r)
    d1 = np.logaddexp(log_s1 + l1, log_s0 + log_r)
    # The two sums' terms, scaled by their largest (the relative error is scale-free).
    f0 = np.exp((l0 - d0) - np.max(l0 - d0))
    f1 = np.exp(-d1 - np.max(-d1))
    ess0, ess1 = _ess(f0), _ess(f1)
    re2 = f0.var() / (ess0 * f0.mean() ** 2) + f1.var() / (ess1 * f1.mean() ** 2)
    return BridgedEvidence(float(log_r), math.sqrt(re2), ess0, ess1)
