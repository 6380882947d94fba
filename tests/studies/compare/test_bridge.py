"""Bayes factors bridged between two fits (``llmsize.studies.compare.bridge``) against
known answers.

A conjugate normal model, ``y_i ~ N(theta_i, 1)`` in many dimensions with
independent normal priors, has an analytic marginal likelihood under any normal
prior, so the log Bayes factor between two priors is known exactly; exact
posterior draws stand in for the two fits. The dimension (1,700) is the bundled
model's; the priors differ in a block of 20, as a hypothesis file changes the
priors of a few quantities of the models of unknown size.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from llmsize.inference.evidence import K_MAX, reweighted_log_bf
from llmsize.studies.compare.bridge import SE_MAX, bridged_log_bf

from ...conftest import SEED

DIM, BLOCK = 1700, 20
Y = np.random.default_rng(SEED).normal(0.5, 1.3, DIM)


def log_evidence(m: float, s: float, y: np.ndarray) -> float:
    """log p(y) of independent y_i ~ N(theta_i, 1), theta_i ~ N(m, s)."""
    return float(stats.norm.logpdf(y, m, math.sqrt(s**2 + 1)).sum())


def draws(m: float, s: float, y: np.ndarray, shape, rng, rho: float = 0.0) -> np.ndarray:
    """Exact posterior draws of theta (chain, draw, dim), as AR(1) chains of
    autocorrelation ``rho`` with the exact posterior as stationary law."""
    prec = 1 / s**2 + 1
    mean, sd = (m / s**2 + y) / prec, 1 / math.sqrt(prec)
    chains, n = shape
    z = rng.normal(size=(chains, n, y.size))
    for t in range(1, n):
        z[:, t] = rho * z[:, t - 1] + math.sqrt(1 - rho**2) * z[:, t]
    return mean + sd * z


def log_ratio(theta: np.ndarray, new: tuple, ref: tuple) -> np.ndarray:
    """Sum over the block of log p_1 - log p_0 (the priors agree elsewhere)."""
    block = theta[..., :BLOCK]
    return (stats.norm.logpdf(block, *new) - stats.norm.logpdf(block, *ref)).sum(axis=-1)


def bridge(new: tuple, ref: tuple, *, seed: int, shape=(4, 1000), rho: float = 0.0):
    """(bridged estimate, reweighted estimate, analytic log Bayes factor)."""
    rng = np.random.default_rng(seed)
    y = Y[:BLOCK]  # only the block's dimensions differ: the rest cancel exactly
    t0 = draws(*ref, y, shape, rng, rho)
    t1 = draws(*new, y, shape, rng, rho)
    truth = log_evidence(*new, y) - log_evidence(*ref, y)
    l0, l1 = log_ratio(t0, new, ref), log_ratio(t1, new, ref)
    rw = reweighted_log_bf(xr.DataArray(l0, dims=("chain", "draw")))
    return bridged_log_bf(l0, l1), rw, truth


@pytest.mark.parametrize(
    ("new", "reweighting_holds"),
    [((0.0, 1.0), True), ((0.3, 0.8), True), ((0.5, 0.5), False), ((1.0, 0.5), False)],
    ids=["same", "near", "narrower", "narrower-shifted"],
)
def test_bridge_recovers_the_analytic_bayes_factor(new, reweighting_holds):
    """Within 4 standard errors, also where the reference's draws alone do not reach the
    hypothesis' posterior (reweighting's Pareto k above 0.7)."""
    got, rw, truth = bridge(new, (0.0, 1.0), seed=SEED)
    assert got.reliable, got
    assert abs(got.log_bf - truth) <= 4 * got.se + 1e-9, (got, truth)
    assert (rw.pareto_k <= K_MAX) == reweighting_holds, rw
    if new == (0.0, 1.0):
        assert got.log_bf == pytest.approx(0.0, abs=1e-12)
        assert got.se == 0.0


def test_standard_error_covers_the_error_across_repeats_with_autocorrelated_draws():
    """Over 200 pairs of AR(1) chains (autocorrelation 0.8, an effective size a ninth of
    the draws), |error| < 2 se in about 95% of them: the effective sizes are used."""
    new, ref = (0.6, 0.5), (0.0, 1.0)
    inside = 0
    for seed in range(200):
        got, _, truth = bridge(new, ref, seed=seed, shape=(2, 400), rho=0.8)
        inside += abs(got.log_bf - truth) < 2 * got.se
    assert 0.88 <= inside / 200 <= 0.99, inside


def test_posteriors_that_barely_overlap_are_flagged():
    """A narrow prior far from the reference's in each of 20 dimensions (the log
    Bayes factor is -27): the standard error says the estimate cannot be used."""
    got, _, truth = bridge((-1.0, 0.15), (0.0, 1.0), seed=SEED)
    assert truth == pytest.approx(-26.9, abs=0.1)
    assert got.se > SE_MAX
    assert not got.reliable


def test_bad_ratios():
    assert not bridged_log_bf(np.array([[0.0, np.inf]]), np.zeros((1, 2))).reliable
    with pytest.raises(ValueError, match="chain, draw"):
        bridged_log_bf(np.zeros(3), np.zeros((1, 3)))
