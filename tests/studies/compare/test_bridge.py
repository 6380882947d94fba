"""Bayes factors bridged between two fits (``llmsize.studies.compare.bridge``) against
known answers, and the compiled density they read on the tiny data.

A conjugate normal model, ``y_i ~ N(theta_i, 1)`` in many dimensions with
independent normal priors, has an analytic marginal likelihood under any normal
prior, so the log Bayes factor between two priors is known exactly; exact
posterior draws stand in for the two fits. The dimension (1,700) is the bundled
model's; the priors differ in a block of 20, as a hypothesis file changes the
priors of a few quantities of the models of unknown size. A mixture with a
latent component per observation, each with its own parameter (as each serving
epoch's components have their own batch), checks hypotheses that change the
components' prior weights, where the likelihood does not cancel.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from scipy import stats
from scipy.special import logsumexp

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


K_WEIGHTS = np.array([0.5, 0.35, 0.15])  # the default's precision weights
N_EPOCHS = 60
Y_MIX = np.random.default_rng(SEED + 1).normal(0.0, 1.6, N_EPOCHS)


def mixture_log_evidence(w: np.ndarray) -> float:
    """log p(y) of y_e ~ sum_k w_k N(theta_ek, 1), theta_ek ~ N(0, 1): N(y_e; 0, 2) each."""
    return float(np.log(w.sum() * stats.norm.pdf(Y_MIX, 0.0, math.sqrt(2.0))).sum())


def mixture_draws(w: np.ndarray, n: int, rng) -> np.ndarray:
    """Exact posterior draws (n, E, K): the epoch's component by its posterior chance
    (here its prior weight: every component predicts y_e alike), its parameter from
    N(y_e / 2, 1/2), the others from their prior."""
    theta = rng.normal(size=(n, N_EPOCHS, len(w)))
    k = rng.choice(len(w), size=(n, N_EPOCHS), p=w / w.sum())
    own = rng.normal(Y_MIX / 2, math.sqrt(0.5), size=(n, N_EPOCHS))
    np.put_along_axis(theta, k[..., None], own[..., None], axis=2)
    return theta


def mixture_log_q(theta: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Unnormalised log posterior: the components summed out epoch by epoch."""
    with np.errstate(divide="ignore"):
        log_w = np.log(w)
    lik = stats.norm.logpdf(Y_MIX[:, None], theta, 1.0) + log_w
    return logsumexp(lik, axis=2).sum(axis=1) + stats.norm.logpdf(theta).sum(axis=(1, 2))


@pytest.mark.parametrize(
    "w1",
    [np.array([0.2, 0.5, 0.3]), np.array([1.0, 0.0, 0.0])],
    ids=["quantized-like", "one-component"],
)
def test_bridge_recovers_a_change_of_component_weights(w1):
    """Weights that sum to one leave the evidence unchanged (every component predicts
    alike a priori); the truth here is log 1 = 0, which reweighting the prior alone
    would not see, since the weights sit inside the likelihood."""
    rng = np.random.default_rng(SEED)
    t0, t1 = mixture_draws(K_WEIGHTS, 4000, rng), mixture_draws(w1, 4000, rng)
    l0 = (mixture_log_q(t0, w1) - mixture_log_q(t0, K_WEIGHTS)).reshape(4, 1000)
    l1 = (mixture_log_q(t1, w1) - mixture_log_q(t1, K_WEIGHTS)).reshape(4, 1000)
    truth = mixture_log_evidence(w1) - mixture_log_evidence(K_WEIGHTS)
    got = bridged_log_bf(l0, l1)
    assert got.reliable, got
    assert abs(got.log_bf - truth) <= 4 * got.se + 1e-9, (got, truth)


def test_bridge_recovers_weights_that_do_not_sum_to_one():
    """Weights scaled by 0.6 in every epoch: the evidence falls by 60 log 0.6 = -30.6
    nats exactly, and the draws of both fits are the same law."""
    rng = np.random.default_rng(SEED)
    w1 = 0.6 * K_WEIGHTS
    t0, t1 = mixture_draws(K_WEIGHTS, 2000, rng), mixture_draws(w1, 2000, rng)
    l0 = (mixture_log_q(t0, w1) - mixture_log_q(t0, K_WEIGHTS)).reshape(2, 1000)
    l1 = (mixture_log_q(t1, w1) - mixture_log_q(t1, K_WEIGHTS)).reshape(2, 1000)
    got = bridged_log_bf(l0, l1)
    assert got.log_bf == pytest.approx(N_EPOCHS * math.log(0.6), abs=1e-8)
    assert got.se == pytest.approx(0.0, abs=1e-12)


def test_log_density_is_the_prior_ratio_for_a_prior_only_hypothesis(
    tiny_data, default_hypothesis, hypothesis_dir
):
    """On the tiny data, the compiled density under the hypothesis' values minus the
    reference's equals the log prior ratio of the quantities whose priors differ, at
    any draw: the likelihood cancels, and so does every unchanged prior."""
    from llmsize.inference.model import PRIOR_VALUES, build_model
    from llmsize.inputs.hypothesis import load_hypothesis
    from llmsize.physics.design import build_design
    from llmsize.studies.compare.bridge import LogDensity

    other = load_hypothesis(hypothesis_dir / "good_override_size.toml")
    ref_model = build_model(build_design(tiny_data, default_hypothesis), default_hypothesis)
    model = build_model(build_design(tiny_data, other), other)
    density = LogDensity(ref_model)
    # Draws: the start jittered in the sampler's (unconstrained) space, mapped back.
    rng = np.random.default_rng(SEED)
    start = ref_model.initial_point()
    values = ref_model.unobserved_value_vars
    to_draw = ref_model.compile_fn(values, inputs=ref_model.value_vars, on_unused_input="ignore")
    names = [v.name for v in values]
    rows = []
    for _ in range(6):
        point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in start.items()}
        rows.append(dict(zip(names, to_draw(point), strict=True)))
    draws = xr.Dataset(
        {
            n: (("chain", "draw", *[f"{n}_dim{i}" for i in range(np.ndim(rows[0][n]))]),
                np.stack([r[n] for r in rows]).reshape(2, 3, *np.shape(rows[0][n])))
            for n in density.names
        }
    )  # fmt: skip
    ref_values = ref_model[PRIOR_VALUES].get_value()
    new_values = model[PRIOR_VALUES].get_value()
    got = density.at(draws, new_values) - density.at(draws, ref_values)
    # The one changed prior: log10 size of each model of unknown size.
    x = draws["log10_params_total_b"].values
    want = (stats.norm.logpdf(x, 1.0, 0.5) - stats.norm.logpdf(x, 1.5, 1.0)).sum(axis=-1)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    # The values were put back.
    np.testing.assert_array_equal(ref_model[PRIOR_VALUES].get_value(), ref_values)
