"""The design arrays, the PyMC model built from them, and a prior predictive check."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytensor
import pytest
from scipy.special import logsumexp

from llmsize.inference.model import build_model
from llmsize.inference.sampling import SampleSettings, sample_prior
from llmsize.inputs.hypothesis import load_hypothesis, validate
from llmsize.physics import forward
from llmsize.physics.design import build_design, years_since_2024

from ..conftest import MODELS_DIR, SEED


@pytest.fixture(scope="module", autouse=True)
def _python_backend():
    """Evaluate the graphs built here with PyTensor's Python backend (numpy).

    They are evaluated a few times each, so compiling them to C (gcc for every
    fused kernel) would cost most of their time, and most of a test run on a
    machine without PyTensor's compile cache. The compiled paths (nutpie's Numba
    callbacks, the C predictive draws) run in the shared fits of the suite.
    """
    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        yield


def _joint_logp_at_start(model) -> float:
    """The model's joint log density at its initial point, summed term by term in numpy
    (the Python backend adds at most 32 tensors in one operation).
    """
    terms = model.compile_fn(
        model.logp(sum=False), inputs=model.value_vars, on_unused_input="ignore"
    )(model.initial_point())
    return float(sum(np.sum(t) for t in terms))


# --- design on the tiny fixture ------------------------------------------------------


def test_tiny_epochs(tiny_design):
    d = tiny_design
    # Every price row is at a GPU provider: 9 epochs, sorted by model, provider, date.
    assert d.n_epochs == 9
    keys = list(zip(d.epochs["model"], d.epochs["provider"], d.epochs["date"], strict=True))
    assert keys == sorted(keys)
    assert d.unknown == ["closed-x", "closed-y"]
    assert d.providers == ["HostA", "HostB", "Vendor"]
    assert [d.models[i] for i in d.unknown_pos] == d.unknown
    # Index arrays point back at the right names.
    for e, r in enumerate(d.epochs.itertuples()):
        assert d.models[d.epoch_model[e]] == r.model
        assert d.providers[d.epoch_provider[e]] == r.provider
        assert d.epoch_year[e] == pytest.approx(years_since_2024(r.date))
    np.testing.assert_allclose(
        np.exp(d.log_price_out), d.epochs["output_usd_per_mtok"].astype(float)
    )
    np.testing.assert_allclose(np.exp(d.log_price_in), d.epochs["input_usd_per_mtok"].astype(float))
    # Known sizes in parameters, NaN for unknown models.
    i7 = d.models.index("small-7b")
    assert d.known_total[i7] == 7e9
    assert np.isnan(d.known_total[d.unknown_pos]).all()
    assert d.known_active[d.models.index("moe-47b")] == pytest.approx(12.9e9)


def test_tiny_epoch_zero_and_years():
    assert years_since_2024(dt.date(2024, 1, 1)) == 0
    assert years_since_2024(dt.date(2025, 1, 1)) == pytest.approx(366 / 365.25)


def test_tiny_hardware_and_gpu_prices(tiny_design):
    d = tiny_design
    assert d.hardware == ["A100-80GB", "H100-SXM"]
    # One rental price per family in the fixture: $2.00 (A100, 2023-06-01) and $3.00
    # (H100, 2024-06-01), each moved to 2024-01-01 along the prior's mean trend of
    # -0.4 per year: by hand, ln 2 + 0.4 * (-214 / 365.25) and ln 3 + 0.4 * (152 / 365.25).
    np.testing.assert_allclose(
        d.log_gpu_hour_mu,
        [np.log(2.0) - 0.4 * 214 / 365.25, np.log(3.0) + 0.4 * 152 / 365.25],
    )
    # Components: (16, 8, 4) bits x (A100, H100); 8-bit uses fp8 math on H100 only.
    assert list(d.component_bits) == [16, 16, 8, 8, 4, 4]
    assert list(d.component_hardware) == [0, 1, 0, 1, 0, 1]
    np.testing.assert_allclose(
        d.component_flops(), [312e12, 989.4e12, 312e12, 1978.9e12, 312e12, 989.4e12]
    )


def test_log_weights_normalise(tiny_design):
    # Each epoch's prior over (bits, hardware) sums to one. Components a fixed
    # serving_bits rules out are clipped to 1e-12 each, so a row can exceed 1 by
    # at most 6e-12: tolerance 1e-9.
    np.testing.assert_allclose(logsumexp(tiny_design.log_weights, axis=1), 0.0, atol=1e-9)


#: Hardware and precision settings written out, so the hand calculation below
#: does not depend on what default.toml currently says.
HAND_SETTINGS = {
    "precision": {"bits": [16, 8, 4], "weights": [0.5, 0.35, 0.15]},
    "hardware": {
        "generations": ["A100-80GB", "H100-SXM"],
        "newer_midpoint": "2023-10-01",
        "newer_width_years": 0.3,
        "newer_max": 0.95,
    },
}


def test_log_weights_by_hand(tiny_data, default_hypothesis):
    raw = default_hypothesis.to_dict()
    raw.update(HAND_SETTINGS)
    d = build_design(tiny_data, validate(raw))
    e = next(i for i, r in enumerate(d.epochs.itertuples()) if r.model == "closed-y")
    # 2024-01-25 is 24 / 365.25 = 0.0657 years after 2024-01-01; the midpoint
    # 2023-10-01 is -92 / 365.25 = -0.2519. P(H100) = 0.95 / (1 + exp(-(0.0657 +
    # 0.2519) / 0.3)) = 0.95 * 0.7424 = 0.7053. 16-bit on H100: 0.5 * 0.7053 = 0.3527.
    p_h100 = 0.95 / (1 + math.exp(-(24 / 365.25 + 92 / 365.25) / 0.3))
    assert p_h100 == pytest.approx(0.7053, abs=1e-4)
    w = np.exp(d.log_weights[e])
    np.testing.assert_allclose(
        w,
        [
            0.5 * (1 - p_h100),
            0.5 * p_h100,
            0.35 * (1 - p_h100),
            0.35 * p_h100,
            0.15 * (1 - p_h100),
            0.15 * p_h100,
        ],
        rtol=1e-12,
    )
    assert w[1] == pytest.approx(0.3527, abs=1e-4)


def test_fixed_serving_bits_zero_other_precisions(tiny_design, default_hypothesis):
    d = tiny_design
    prior_w = np.array(default_hypothesis.precision.weights) / sum(
        default_hypothesis.precision.weights
    )
    # moe-47b at HostB is listed as 8-bit (serving_bits = 8).
    e = next(i for i, r in enumerate(d.epochs.itertuples()) if r.model == "moe-47b")
    w = np.exp(d.log_weights[e])
    eight = d.component_bits == 8
    assert w[~eight].max() <= 1.01e-12  # clipped to 1e-12, exp(log(.)) rounding
    assert w[eight].sum() == pytest.approx(1.0, abs=1e-9)
    # Rows without serving_bits keep the hypothesis' weights (normalised).
    for i, r in enumerate(d.epochs.itertuples()):
        if r.model == "moe-47b":
            continue
        wi = np.exp(d.log_weights[i])
        per_bits = [wi[d.component_bits == b].sum() for b in default_hypothesis.precision.bits]
        np.testing.assert_allclose(per_bits, prior_w, rtol=1e-9)


def test_fixed_bits_outside_hypothesis_is_an_error(tiny_data, default_hypothesis):
    raw = default_hypothesis.to_dict()
    raw["precision"] = {"bits": [16, 4], "weights": [0.7, 0.3]}
    from llmsize.exceptions import HypothesisError

    with pytest.raises(HypothesisError, match="serving bits 8"):
        build_design(tiny_data, validate(raw))


def test_speed_and_mmlu_mapping(tiny_design):
    d = tiny_design
    names = [f"{r.model}|{r.provider}|{r.date}" for r in d.epochs.itertuples()]
    # Each speed maps to the price epoch in force on its date (same model, provider).
    assert [names[e] for e in d.speed_epoch] == [
        "small-7b|HostA|2023-12-01",
        "mid-70b|HostA|2023-12-01",
        "closed-y|Vendor|2024-01-25",
    ]
    np.testing.assert_allclose(np.exp(d.log_speed), [75, 40, 80])
    np.testing.assert_allclose(np.exp(d.log_ttft), [0.5, 0.6, 0.4])
    # MMLU: three known models fix the curve, closed-x's compute is latent.
    np.testing.assert_allclose(d.mmlu_score, [45, 69, 44, 70])
    assert list(d.mmlu_model[:3]) == [-1, -1, -1]
    assert d.models[d.mmlu_model[3]] == "closed-x"
    # small-7b: log10(6 * 7e9 * 2e12) = log10(8.4e22) = 22.924
    assert d.mmlu_known_log10_compute[0] == pytest.approx(22.924, abs=1e-3)
    assert np.isnan(d.mmlu_known_log10_compute[3])


def test_bundled_design(bundled_design):
    d = bundled_design
    assert {"gpt-3.5-turbo-0301", "gpt-3.5-turbo-0125"} <= set(d.unknown)
    # Providers on custom silicon enter through the pricing layer alone, and said so;
    # their speeds are not used.
    assert {"Groq", "Cerebras", "SambaNova"} <= set(d.providers)
    assert any("custom silicon" in n for n in d.notes)
    custom = [d.providers.index(p) for p in ("Groq", "Cerebras", "SambaNova")]
    assert not d.epoch_gpu[np.isin(d.epoch_provider, custom)].any()
    assert d.epoch_gpu[d.speed_epoch].all()
    # OpenAI's prices are its own (labs.csv), resellers' are not.
    openai = d.providers.index("OpenAI")
    assert d.epoch_first_party[d.epoch_provider == openai].all()
    assert not d.epoch_first_party[d.epoch_provider == d.providers.index("DeepInfra")].any()
    np.testing.assert_allclose(logsumexp(d.log_weights, axis=1), 0.0, atol=1e-9)
    assert len(d.speed_epoch) == len(d.log_speed) > 0
    assert np.isfinite(d.log_price_out).all()
    assert np.isfinite(d.log_price_in).all()


# --- the PyMC model ----------------------------------------------------------------


@pytest.mark.parametrize("which", ["tiny", "bundled"])
def test_logp_finite_at_initial_point(which, request, default_hypothesis):
    design = request.getfixturevalue(f"{which}_design")
    model = build_model(design, default_hypothesis)
    logps = model.point_logps()
    assert logps, "no terms"
    bad = {k: v for k, v in logps.items() if not np.isfinite(v)}
    assert not bad
    assert np.isfinite(_joint_logp_at_start(model))
    # Sizes are free only for the unknown models.
    assert model["log10_params_total_b"].eval().shape == (len(design.unknown),)
    assert "serving_loglik" in model.named_vars
    assert "output_price" not in model.named_vars


@pytest.mark.parametrize("predictive", ["prior", "posterior"])
def test_predictive_models_build(tiny_design, default_hypothesis, predictive):
    model = build_model(tiny_design, default_hypothesis, predictive=predictive)
    for var in ("serving_component", "output_price", "input_price", "output_speed", "ttft"):
        assert var in model.named_vars, var
    n = tiny_design.n_epochs
    draw = model.compile_fn(
        model["output_price"], inputs=model.value_vars, on_unused_input="ignore"
    )
    value = draw(model.initial_point())
    assert value.shape == (n,)
    assert np.all(value > 0)


def test_constant_prior_fixes_a_quantity(tiny_design, default_hypothesis):
    raw = default_hypothesis.to_dict()
    raw["priors"]["active_fraction"] = {"distribution": "Constant", "value": 1.0}
    model = build_model(tiny_design, validate(raw))
    # Pinned: recorded as a deterministic, not sampled.
    assert "active_fraction" not in [v.name for v in model.free_RVs]
    assert "active_fraction" in [v.name for v in model.deterministics]
    assert np.isfinite(_joint_logp_at_start(model))


def _prior_draws(design, hyp, names, draws=4000):
    settings = SampleSettings(draws=1, tune=0, chains=1, seed=SEED, prior_draws=draws)
    prior = sample_prior(design, hyp, settings)["prior"]
    return {n: prior[n].values.reshape(draws, -1) for n in names}


def test_markup_parameterisation_keeps_the_prior(bundled_design, default_hypothesis):
    """NUTS samples price levels (model._markups), not the markups and GPU-hour
    prices themselves; the physical quantities must keep the hypothesis' priors:
    independent, with the stated distributions."""
    from scipy import stats

    hyp = default_hypothesis
    names = ["log_markup_out_mu", "log_markup_in_mu", "mfu_prefill", "gpu_hour_z",
             "provider_sigma", "provider_out_z", "provider_in_z"]  # fmt: skip
    got = _prior_draws(bundled_design, hyp, names)
    pr = hyp.priors
    checks = {
        "log_markup_out_mu": stats.norm(pr.log_markup_out_mu.mu, pr.log_markup_out_mu.sigma),
        "log_markup_in_mu": stats.norm(pr.log_markup_in_mu.mu, pr.log_markup_in_mu.sigma),
        "mfu_prefill": stats.beta(pr.mfu_prefill.alpha, pr.mfu_prefill.beta),
        "provider_sigma": stats.halfnorm(scale=pr.provider_sigma.sigma),
    }
    # One KS test per quantity and per provider (about 60 with 29 providers): each at
    # a Bonferroni level, so the whole family has a 1% false-alarm rate (a shifted
    # prior, as the correlation check below describes, gives p-values far below it).
    zs = ("gpu_hour_z", "provider_out_z", "provider_in_z")
    level = 0.01 / (len(checks) + sum(got[n].shape[1] for n in zs))
    for name, dist in checks.items():
        assert stats.kstest(got[name][:, 0], dist.cdf).pvalue > level, name
    for name in zs:
        for j in range(got[name].shape[1]):
            assert stats.kstest(got[name][:, j], stats.norm.cdf).pvalue > level, (name, j)
    # Independent of each other: every pairwise correlation within sampling noise
    # (4000 draws: sd 0.016; a shift left in, e.g. the markup in a GPU-hour price,
    # gives 0.3 or more).
    cols = np.column_stack([got[n] for n in names])
    cols[:, 2] = np.log(cols[:, 2])
    corr = np.corrcoef(cols, rowvar=False)
    off = np.abs(corr[~np.eye(len(corr), dtype=bool)])
    assert off.max() < 0.07


def test_markups_without_a_normal_input_prior_or_a_provider_spread(tiny_design, default_hypothesis):
    """The other branches of model._markups: a non-normal prior of the input markup
    is sampled as it is, and a pinned provider spread (here zero) keeps standard-normal
    offsets."""
    raw = default_hypothesis.to_dict()
    raw["priors"]["log_markup_in_mu"] = {
        "distribution": "TruncatedNormal", "mu": 1.0, "sigma": 1.5, "lower": -1.0
    }  # fmt: skip
    raw["priors"]["provider_sigma"] = {"distribution": "Constant", "value": 0.0}
    hyp = validate(raw)
    model = build_model(tiny_design, hyp)
    free = {v.name for v in model.free_RVs}
    assert {"log_markup_in_mu", "provider_out_z", "provider_in_z"} <= free
    assert not {"log_markup_in_over_out", "provider_billed_out", "provider_billed_in"} & free
    assert np.isfinite(_joint_logp_at_start(model))


@pytest.mark.parametrize("cap", [False, True], ids=["no-cap", "kv-memory-cap"])
def test_log_cost_matches_forward(tiny_design, default_hypothesis, cap):
    """The model's output and input price means equal the forward functions at the same point."""
    raw = default_hypothesis.to_dict()
    raw["constants"] = {**raw["constants"], "kv_memory_cap": cap}
    hyp = validate(raw)
    model = build_model(tiny_design, hyp, predictive="prior")
    d = tiny_design
    # Fix the point: every free value (unconstrained) at its initial value moved by
    # a random amount, so that no offset is zero. Graph outputs are functions of
    # the random variables; evaluate them at the values.
    rng = np.random.default_rng(SEED)
    point = {k: v + rng.uniform(-0.5, 0.5, np.shape(v)) for k, v in model.initial_point().items()}

    def at_point(var, pt_=point):
        [out] = model.replace_rvs_by_values([var])
        return model.compile_fn(out, inputs=model.value_vars, on_unused_input="ignore")(pt_)

    vals = {
        v: at_point(model[v])
        for v in (
            "log_batch_mu",
            "log_batch_trend",
            "log_batch_sigma",
            "usd_per_gpu_hour",
            "mbu",
            "log_markup_out_mu",
            "log_markup_in_mu",
            "mfu_prefill",
            "provider_sigma",
            "model_markup_sigma",
            "price_elasticity_mu",
            "price_elasticity_sigma",
            "first_party_elasticity",
            "first_party_markup",
            "first_party_model_sigma",
            "log_price_floor_mu",
            "log_price_floor_sigma",
            "gpu_hour_trend",
            "mfu_decode",
            "context_tokens",
            "weight_memory_fraction",
        )
    }
    # Sampled as each provider's price level (model._markups); recorded as the offset.
    z_out = at_point(model["provider_out_z"])
    z_in = at_point(model["provider_in_z"])
    # mid-70b is priced by a reseller (HostA) and by its own lab (HostB, labs.csv).
    epochs = [i for i, r in enumerate(d.epochs.itertuples()) if r.model == "mid-70b"]
    assert sorted(d.epoch_first_party[epochs]) == [0.0, 1.0]
    for e in epochs:
        _check_price_means_at(d, hyp, model, at_point, point, vals, (z_out, z_in), e)


def _check_price_means_at(d, hyp, model, at_point, point, vals, z, e):
    """The model's log price means at epoch ``e`` against the same formulas by hand."""
    z_out, z_in = z
    k = 1  # 16-bit on H100
    acc = d.accelerators[d.component_hardware[k]]
    n = 70e9
    # Accelerators of the replica: 2 bytes per weight over the filled share of
    # each one's memory (at least one, by a power mean of sharpness 8), and those
    # splitting a step: at most one node's (a smooth minimum, also of sharpness 8).
    n_gpus = (1.0 + (2.0 * n / (acc.memory_bytes * vals["weight_memory_fraction"])) ** 8) ** (1 / 8)
    node = hyp.constants.gpus_per_node
    width = ((1.0 / n_gpus) ** 8 + (1.0 / node) ** 8) ** (-1.0 / 8)
    kv = forward.kv_bytes_per_token_estimate(n, coef=hyp.constants.kv_bytes_coef)
    # Component k's own batch (each serving component has one).
    b = 1.0 + math.exp(
        vals["log_batch_mu"]
        + vals["log_batch_trend"] * d.epoch_year[e]
        + vals["log_batch_sigma"] * (point["batch_z"][e, k] + 0.3)
    )
    point = {**point, "batch_z": point["batch_z"].copy()}
    point["batch_z"][e, k] += 0.3  # away from the other components' batch
    # The memory left by the weights (2 bytes each at 16 bits) caps the batch, by a
    # power mean of sharpness 8.
    if hyp.constants.kv_memory_cap:
        # Shared among the replica's pipeline stages (n_gpus / width of them).
        limit = (n_gpus * acc.memory_bytes - 2.0 * n) / (vals["context_tokens"] * kv)
        limit *= width / n_gpus
        b = ((1.0 / b) ** 8 + (1.0 / limit) ** 8) ** (-1.0 / 8)
    t = forward.decode_step_time(
        n,
        n,
        16,
        b,
        context_tokens=vals["context_tokens"],
        kv_bytes_per_token=kv,
        n_gpus=width,
        hbm_bytes_per_s=acc.hbm_bytes_per_s,
        flops=acc.flops_at(16),
        mbu=vals["mbu"],
        mfu=vals["mfu_decode"],
    )
    # The pricing layer by hand: GPU-hour price at the epoch's date, elasticity of
    # price in work around the pivot, first-party and per-model offsets, floor.
    p, m = d.epoch_provider[e], d.epoch_model[e]
    fp = d.epoch_first_party[e]
    g = vals["usd_per_gpu_hour"][d.component_hardware[k]] * math.exp(
        vals["gpu_hour_trend"] * d.epoch_year[e]
    )
    eps = (
        vals["price_elasticity_mu"]
        + vals["price_elasticity_sigma"] * point["price_elasticity_z"][p]
        + fp * vals["first_party_elasticity"]
    )
    offset = vals["model_markup_sigma"] * point["model_markup_z"][m] + fp * (
        vals["first_party_markup"]
        + vals["first_party_model_sigma"] * point["first_party_model_z"][m]
    )
    floor = (
        vals["log_price_floor_mu"] + vals["log_price_floor_sigma"] * point["log_price_floor_z"][p]
    )
    pivot = math.log(hyp.constants.price_pivot_gpu_hours_per_mtok)

    def by_hand(work, log_markup):
        raw = math.log(g) + log_markup + pivot + eps * (math.log(work) - pivot) + offset
        return float(np.logaddexp(4.0 * raw, 4.0 * floor) / 4.0)  # floor sharpness 4

    work = forward.output_cost_per_mtok(t, b, n_gpus=width, usd_per_gpu_hour=1.0)
    markup = vals["log_markup_out_mu"] + vals["provider_sigma"] * z_out[p]
    # The model's mean of the log output price, with every epoch's serving
    # component set to k (the LogNormal's inputs are rng, size, mu, sigma).
    mu = model["output_price"].owner.inputs[2]
    point = {**point, "serving_component": np.full(d.n_epochs, k, dtype="int64")}
    got = at_point(mu, point)[e]
    assert got == pytest.approx(by_hand(work, markup), rel=1e-9)

    work_in = forward.input_cost_per_mtok(
        n, flops=acc.flops_at(16), mfu=vals["mfu_prefill"], usd_per_gpu_hour=1.0
    )
    markup_in = vals["log_markup_in_mu"] + vals["provider_sigma"] * z_in[p]
    got_in = at_point(model["input_price"].owner.inputs[2], point)[e]
    assert got_in == pytest.approx(by_hand(work_in, markup_in), rel=1e-9)


# --- prior predictive check on the bundled data ---------------------------------------


@pytest.fixture(scope="module")
def bundled_prior(bundled_design, default_hypothesis):
    settings = SampleSettings(draws=1, tune=0, chains=1, seed=SEED, prior_draws=300)
    return sample_prior(bundled_design, default_hypothesis, settings)


@pytest.mark.parametrize(
    ("var", "field"), [("output_price", "log_price_out"), ("input_price", "log_price_in")]
)
def test_prior_predictive_covers_bundled_prices(bundled_prior, bundled_design, var, field):
    draws = bundled_prior["prior_predictive"][var].values
    draws = draws.reshape(-1, draws.shape[-1])  # (300, epochs)
    assert draws.shape == (300, bundled_design.n_epochs)
    assert np.all(np.isfinite(draws))
    assert np.all(draws > 0)
    observed = np.exp(getattr(bundled_design, field))
    lo, hi = np.quantile(draws, [0.005, 0.995], axis=0)
    inside = np.mean((observed >= lo) & (observed <= hi))
    # A calibrated prior puts ~99% of observations inside their central 99%
    # interval. With 300 draws the 0.5%/99.5% quantiles rest on ~1.5 draws per
    # tail, so they are noisy; >= 90% leaves room for that and for a prior that
    # is merely weakly informative, while a unit error or a cost model off by
    # orders of magnitude puts most observations outside (prices span 0.03-60 $/M).
    assert inside >= 0.90, f"{inside:.2%} of observed {var} inside the prior's 99% interval"
    # The prior predictive sd of log price is ~2.2-2.5 nats (size: 1 decade =
    # 2.3 nats; markups: 1-1.5 nats); a median off by a factor 30 (3.4 nats, about
    # 1.5 prior sd) means the prior is centred in the wrong place.
    ratio = np.median(draws) / np.median(observed)
    assert 1 / 30 < ratio < 30, f"prior median / observed median = {ratio:.3g}"


def test_prior_group_has_latents(bundled_prior, bundled_design, default_hypothesis):
    prior = bundled_prior["prior"]
    assert prior["log10_params_total_b"].sizes["unknown_model"] == len(bundled_design.unknown)
    # The prior of log10 size is Normal(mu, sigma) (default: 1.5, 1). 300 draws of
    # 6 models (1800 values) give a mean within 3.5 sigma / sqrt(1800) = 0.08 sigma
    # of mu, and an sd within 3.5 * sqrt(1 / (2 * 1800)) = 6% of sigma.
    spec = default_hypothesis.priors.log10_params_total_b
    assert spec.distribution == "Normal"
    x = prior["log10_params_total_b"].values
    assert x.mean() == pytest.approx(spec.mu, abs=0.08 * spec.sigma)
    assert x.std() == pytest.approx(spec.sigma, rel=0.06)


# --- every hypothesis in models/ builds and draws from its prior ----------------------


@pytest.mark.filterwarnings("ignore:The effect of Potentials:UserWarning")
@pytest.mark.parametrize("path", sorted(MODELS_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_every_model_file_builds_and_draws_prior_predictive(path, tiny_data):
    import pymc as pm

    hyp = load_hypothesis(path)
    design = build_design(tiny_data, hyp)
    build_model(design, hyp)
    model = build_model(design, hyp, predictive="prior")
    # FAST_COMPILE: a prior draw needs no optimised kernels, and twelve files must stay cheap.
    tree = pm.sample_prior_predictive(
        draws=10, model=model, random_seed=SEED, compile_kwargs={"mode": "FAST_COMPILE"}
    )
    prices = tree["prior"]["output_price"].values
    assert prices.shape[-1] == design.n_epochs
    assert np.all(np.isfinite(prices))
    assert np.all(prices > 0)


# --- per-model priors and the hidden-size evidence ------------------------------------


def test_model_priors_apply_to_matching_models_only(tiny_data, default_hypothesis):
    import pymc as pm

    raw = default_hypothesis.to_dict()
    raw["model_priors"] = {
        "closed-*": {"log10_overtrain": {"distribution": "Normal", "mu": 1.0, "sigma": 0.1}},
        "closed-x": {
            "log10_params_total_b": {"distribution": "Normal", "mu": 1.301, "sigma": 0.05}
        },
    }
    hyp = validate(raw)
    design = build_design(tiny_data, hyp)
    model = build_model(design, hyp)
    size, omega = pm.draw(
        [model["log10_params_total_b"], model["log10_overtrain"]], draws=4000, random_seed=SEED
    )
    ix, iy = design.unknown.index("closed-x"), design.unknown.index("closed-y")
    base = default_hypothesis.priors.log10_params_total_b
    # closed-x takes its own size prior; closed-y keeps the default one.
    assert size[:, ix].mean() == pytest.approx(1.301, abs=0.01)
    assert size[:, ix].std() == pytest.approx(0.05, rel=0.1)
    assert size[:, iy].mean() == pytest.approx(base.mu, abs=0.08)
    assert size[:, iy].std() == pytest.approx(base.sigma, rel=0.1)
    # Both match "closed-*" for the training prior.
    assert omega.mean(axis=0) == pytest.approx([1.0, 1.0], abs=0.02)


def _hidden_size_setup(tiny_copy, default_hypothesis, on=True):
    from llmsize.inputs.data import load_dataset

    (tiny_copy / "hidden_size.csv").write_text(
        "model,date,hidden_size,source\nclosed-y,2024-03-01,4096,test row\n", encoding="utf-8"
    )
    raw = default_hypothesis.to_dict()
    raw["evidence"] = {"hidden_size": on}
    hyp = validate(raw)
    return hyp, build_design(load_dataset(tiny_copy), hyp)


def test_hidden_size_likelihood_matches_hand_calculation(tiny_copy, default_hypothesis):
    from scipy import stats

    hyp, design = _hidden_size_setup(tiny_copy, default_hypothesis)
    model = build_model(design, hyp)
    assert "log_hidden_size" in model.named_vars
    point = model.initial_point()
    from scipy.special import expit

    values = {
        "log10_params_total_b": point["log10_params_total_b"],
        "active_fraction": expit(point["active_fraction_logodds__"]),
        "log_depth": point["log_depth"],
        "log_params_per_layer_d2": point["log_params_per_layer_d2"],
    }
    iy = design.unknown.index("closed-y")
    n_act = values["active_fraction"][iy] * 10 ** values["log10_params_total_b"][iy] * 1e9
    d = 4096.0
    # Active = coef * depth * d^2 + 2 * vocab * d, so d = sqrt((active - embeddings) / (coef * depth)).
    core = n_act - 2 * hyp.evidence.vocab_size * d
    mu = 0.5 * (np.log(core) - values["log_params_per_layer_d2"][0] - values["log_depth"][0])
    expected = stats.norm.logpdf(np.log(d), mu, hyp.evidence.hidden_size_log_sigma)
    got = model.compile_logp(vars=[model["log_hidden_size"]])(point)
    assert got == pytest.approx(expected, rel=1e-9)


def test_hidden_size_is_off_unless_the_hypothesis_turns_it_on(tiny_copy, default_hypothesis):
    hyp, design = _hidden_size_setup(tiny_copy, default_hypothesis, on=False)
    assert list(design.hidden_size) == [4096.0]
    model = build_model(design, hyp)
    assert "log_hidden_size" not in model.named_vars
    assert "log_depth" not in model.named_vars


def test_pointwise_log_likelihood_sums_to_the_potential(tiny_design, default_hypothesis):
    model = build_model(tiny_design, default_hypothesis, pointwise=True)
    point = model.initial_point()
    fn = model.compile_fn(
        model.replace_rvs_by_values([model["loglik_serving"], model["loglik_mmlu"]]),
        inputs=model.value_vars,
        on_unused_input="ignore",
    )
    serving, mmlu = fn(point)
    assert serving.shape == (tiny_design.n_epochs,)
    potential = model.compile_fn(
        model.replace_rvs_by_values([model.potentials[0]])[0],
        inputs=model.value_vars,
        on_unused_input="ignore",
    )(point)
    assert serving.sum() == pytest.approx(float(potential), rel=1e-9)
    mmlu_logp = model.compile_logp(vars=[model["mmlu"]])(point)
    assert mmlu.sum() == pytest.approx(float(mmlu_logp), rel=1e-9)


# --- a provider's stated cost ratio (cost_statements.csv) ------------------------------


def _statement_setup(tiny_copy, default_hypothesis, ratio, sigma):
    from llmsize.inputs.data import load_dataset

    (tiny_copy / "cost_statements.csv").write_text(
        "provider,from_model,from_date,to_model,to_date,cost_ratio,source\n"
        f"Vendor,big-175b,2022-09-01,closed-x,2023-03-01,{ratio},test row\n",
        encoding="utf-8",
    )
    raw = default_hypothesis.to_dict()
    raw["evidence"] = {"cost_statements": True, "cost_statement_log_sigma": sigma}
    hyp = validate(raw)
    return hyp, build_design(load_dataset(tiny_copy), hyp)


def _serving_loglik(design, hyp):
    model = build_model(design, hyp, pointwise=True)
    # Graph outputs are functions of the random variables: evaluate them at the values.
    outs = model.replace_rvs_by_values([model["serving_loglik"], model["p_bits"]])
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")
    return fn(model.initial_point())


def test_cost_statement_pairs_two_epochs(tiny_copy, default_hypothesis):
    hyp, design = _statement_setup(tiny_copy, default_hypothesis, 0.1, 0.25)
    e1, e2 = design.statement_epochs[0]
    assert design.epochs["model"].iloc[e1] == "big-175b"
    assert design.epochs["model"].iloc[e2] == "closed-x"
    assert design.statement_log_ratio[0] == pytest.approx(math.log(0.1))
    off = validate({**hyp.to_dict(), "evidence": {"cost_statements": False}})
    assert len(build_design(design_data(tiny_copy), off).statement_log_ratio) == 0


def design_data(folder):
    from llmsize.inputs.data import load_dataset

    return load_dataset(folder)


def test_cost_statement_flat_limit_recovers_the_product_of_marginals(tiny_copy, default_hypothesis):
    """With a statement so loose that its density is flat, summing the two epochs'
    components out together must give the product of their own sums out: the
    likelihood moves by the normal density's constant alone."""
    hyp, design = _statement_setup(tiny_copy, default_hypothesis, 0.1, 1e6)
    off = validate({**hyp.to_dict(), "evidence": {"cost_statements": False}})
    with_st, p_bits = _serving_loglik(design, hyp)
    without, _ = _serving_loglik(build_design(design_data(tiny_copy), off), off)
    assert float(with_st - without) == pytest.approx(
        -math.log(1e6 * math.sqrt(2 * math.pi)), rel=1e-9
    )
    np.testing.assert_allclose(p_bits.sum(axis=1), 1.0, rtol=1e-9)


def test_cost_statement_prefers_the_ratio_the_model_implies(tiny_copy, default_hypothesis):
    # At the initial point the two epochs' modelled costs are within a few x of each
    # other: a stated ratio of 1e-6 is far less likely than one of 0.5.
    near, _ = _serving_loglik(*reversed(_statement_setup(tiny_copy, default_hypothesis, 0.5, 0.25)))
    far, _ = _serving_loglik(*reversed(_statement_setup(tiny_copy, default_hypothesis, 1e-6, 0.25)))
    assert float(near) > float(far) + 50


# --- hardware at a measurement's own date --------------------------------------------


def test_hardware_transition_hand_numbers():
    from llmsize.physics.design import hardware_transition

    # Later measurement: p(newer) 0.2 at the price date, 0.6 at the measurement.
    # Older at the price date: newer later with (0.6 - 0.2) / 0.8 = 0.5.
    # Earlier measurement: 0.6 at the price, 0.2 at the measurement. Newer at the
    # price date: still newer earlier with 0.2 / 0.6 = 1/3.
    t = hardware_transition([0.2, 0.6, 0.0, 1.0], [0.6, 0.2, 0.0, 1.0])
    np.testing.assert_allclose(t[0], [[0.5, 0.5], [0.0, 1.0]])
    np.testing.assert_allclose(t[1], [[1.0, 0.0], [2.0 / 3.0, 1.0 / 3.0]])
    # No chance of the newer generation (or certainty of it): the generation stays.
    np.testing.assert_allclose(t[2], np.eye(2))
    np.testing.assert_allclose(t[3], np.eye(2))
    np.testing.assert_allclose(t.sum(axis=2), 1.0)
    # The paths' chances add back to the prior at the measurement date.
    a, b = 0.2, 0.6
    prior = np.array([1 - a, a]) @ t[0]
    np.testing.assert_allclose(prior, [1 - b, b])


def test_measurements_take_hardware_at_their_own_date(bundled_design, default_hypothesis):
    from llmsize.physics.design import hardware_transition, newer_share

    d = bundled_design
    hw = default_hypothesis.hardware
    names = [f"{r.model}|{r.provider}|{r.date}" for r in d.epochs.itertuples()]
    assert d.speed_measure.max() < len(d.measure_epoch)
    np.testing.assert_array_equal(d.measure_epoch[d.speed_measure], d.speed_epoch)
    np.testing.assert_array_equal(d.measure_epoch[d.ttft_measure], d.ttft_epoch)
    # gpt-3.5-turbo-1106 at OpenAI priced 2023-11-06 and measured on 2024-04-10:
    # the hardware transition is the one of the two dates' chances of H100.
    e = names.index("gpt-3.5-turbo-1106|OpenAI|2023-11-06")
    ms = np.flatnonzero(d.measure_epoch == e)
    assert len(ms) >= 2  # several dates, one measurement each

    def p(date):
        return newer_share(
            years_since_2024(date),
            midpoint_year=years_since_2024(hw.newer_midpoint),
            width_years=hw.newer_width_years,
            cap=hw.newer_max,
        )

    want = hardware_transition(p(dt.date(2023, 11, 6)), p(dt.date(2024, 4, 10)))[0]
    k_old16 = [i for i, lab in enumerate(d.component_labels) if lab.startswith("16-bit A100")][0]
    k_new16 = [i for i, lab in enumerate(d.component_labels) if lab.startswith("16-bit H100")][0]
    got = [np.exp(d.measure_log_transition[m][k_old16, [k_old16, k_new16]]) for m in ms]
    assert any(np.allclose(g, want[0]) for g in got)
    assert want[0][1] > 0.2  # the later date gives H100 a real chance
    # The precision is the epoch's: no chance of another bit width.
    k8 = [i for i, lab in enumerate(d.component_labels) if lab.startswith("8-bit")]
    assert np.exp(d.measure_log_transition[ms][:, k_old16, k8]).max() < 1e-200
    np.testing.assert_allclose(np.exp(d.measure_log_transition).sum(axis=2), 1.0, atol=1e-12)


def test_prior_draws_in_a_worker_process_are_the_ones_made_here(tiny_design, default_hypothesis):
    """``fit(executor=...)`` makes the prior draws in the report's figures worker
    (:func:`llmsize.pipeline.report_worker`) while the chains run: the same seed,
    the same draws, to rounding (on the tiny data, 10 of 100 draws of ``tokens_t``
    differed in the last bit of a float64 from one process to the other)."""
    from llmsize.pipeline import report_worker

    settings = SampleSettings(draws=1, tune=0, chains=1, seed=SEED, prior_draws=50)
    here = sample_prior(tiny_design, default_hypothesis, settings)
    with report_worker() as pool:
        there = pool.submit(sample_prior, tiny_design, default_hypothesis, settings).result()
    for group in ("prior", "prior_predictive"):
        a, b = here[group].to_dataset(), there[group].to_dataset()
        assert sorted(a.data_vars) == sorted(b.data_vars)
        for name in a.data_vars:
            np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-12, err_msg=name)
