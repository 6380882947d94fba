"""Bayes factors by reweighting (``llmsize.inference.evidence``) against known answers.

A conjugate normal model has an analytic marginal likelihood under any normal
prior, so the log Bayes factor between two priors is known exactly; exact
posterior draws (independent, so the effective size is the number of draws)
stand in for a fit. The bundled-data cases check which of the shipped
hypotheses qualify for reweighting.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from llmsize.inference.evidence import K_MAX, reweightable, reweighted_log_bf
from llmsize.inference.model import build_model
from llmsize.inputs.hypothesis import load_hypothesis
from llmsize.physics.design import build_design

from ..conftest import DEFAULT_HYPOTHESIS

Y = np.array([0.8, 1.4, 0.3, 1.1, 0.9, 1.6, 0.5, 1.2])  # y_i ~ N(mu, 1)


def log_evidence(m0: float, s0: float) -> float:
    """log p(y) under mu ~ N(m0, s0), y_i ~ N(mu, 1): y is jointly normal."""
    n = len(Y)
    cov = np.eye(n) + s0**2 * np.ones((n, n))
    return float(stats.multivariate_normal(np.full(n, m0), cov).logpdf(Y))


def posterior_draws(m0: float, s0: float, shape, seed: int) -> np.ndarray:
    prec = 1 / s0**2 + len(Y)
    mean = (m0 / s0**2 + Y.sum()) / prec
    return np.random.default_rng(seed).normal(mean, 1 / math.sqrt(prec), size=shape)


def ratio(mu: np.ndarray, new: tuple, ref: tuple) -> xr.DataArray:
    lr = stats.norm.logpdf(mu, *new) - stats.norm.logpdf(mu, *ref)
    return xr.DataArray(lr, dims=("chain", "draw"))


@pytest.mark.parametrize(
    "new",
    [(0.0, 1.0), (1.0, 0.5), (-0.5, 2.0), (2.0, 3.0)],
    ids=["same", "narrower-near", "shifted-wide", "far-wide"],
)
def test_reweighting_recovers_the_analytic_bayes_factor(new):
    ref = (0.0, 1.0)
    mu = posterior_draws(*ref, (4, 1000), seed=7)
    got = reweighted_log_bf(ratio(mu, new, ref))
    truth = log_evidence(*new) - log_evidence(*ref)
    assert got.reliable, got
    # Within 4 standard errors, and the standard error itself is small.
    assert abs(got.log_bf - truth) <= 4 * got.se + 1e-12, (got, truth)
    assert got.se < 0.05
    if new == ref:
        assert got.log_bf == pytest.approx(0.0, abs=1e-12)


def test_standard_error_covers_the_error_across_repeats():
    """Over 200 independent reference posteriors, |error| < 2 se in about 95% of them."""
    ref, new = (0.0, 1.0), (1.0, 0.4)
    truth = log_evidence(*new) - log_evidence(*ref)
    inside = 0
    for seed in range(200):
        got = reweighted_log_bf(ratio(posterior_draws(*ref, (2, 500), seed), new, ref))
        inside += abs(got.log_bf - truth) < 2 * got.se
    assert 0.88 <= inside / 200 <= 0.99, inside


def test_a_prior_the_reference_posterior_does_not_cover_is_refused():
    """A narrow prior far in the reference posterior's tail: k-hat above 0.7."""
    ref, new = (0.0, 1.0), (3.0, 0.05)
    got = reweighted_log_bf(ratio(posterior_draws(*ref, (4, 1000), seed=3), new, ref))
    assert got.pareto_k > K_MAX
    assert not got.reliable


def test_an_impossible_draw_gives_no_estimate():
    lr = xr.DataArray(np.array([[0.0, -np.inf, 0.1]]), dims=("chain", "draw"))
    assert not reweighted_log_bf(lr).reliable


def _model(bundled_data, path, overrides=None):
    hyp = load_hypothesis(path, overrides)
    return build_model(build_design(bundled_data, hyp), hyp, pointwise=True)


def test_which_hypotheses_can_be_reweighted(bundled_data):
    """Prior-only changes qualify; a component weight, a GPU-hour trend (it moves
    the price level of each quote) or a pinned value do not."""
    ref = _model(bundled_data, DEFAULT_HYPOTHESIS)
    models = DEFAULT_HYPOTHESIS.parent
    assert reweightable(ref, _model(bundled_data, models / "chatgpt_20b.toml")) is None
    assert reweightable(ref, _model(bundled_data, models / "overtrained.toml")) is None
    assert "enters the likelihood" in reweightable(
        ref, _model(bundled_data, models / "quantized.toml")
    )
    trend = _model(bundled_data, DEFAULT_HYPOTHESIS, ["gpu_hour_trend.mu=-0.1"])
    assert "log_gpu_hour_mu" in reweightable(ref, trend)
    pinned = _model(bundled_data, DEFAULT_HYPOTHESIS, ["mfu_decode.value=0.2"])
    assert "mfu_decode.value" in reweightable(ref, pinned)
