"""``llmsize compare``: evidence by SMC, PSIS-LOO, claims, and the command itself."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr
from click.testing import CliRunner
from scipy import stats

from llmsize import compare as cmp
from llmsize.cli import EXIT_INPUT, cli

from .conftest import DEFAULT_HYPOTHESIS, HYPOTHESIS_FIXTURES, SEED, TINY_DIR


def test_smc_evidence_matches_the_exact_marginal_likelihood():
    # y_i ~ N(mu, 1), mu ~ N(0, 1): y ~ N(0, I + 11'), so log Z is known exactly.
    y = np.array([0.3, -0.5, 1.2, 0.8, 0.1])
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 1)
        pm.Normal("y", mu, 1, observed=y)
    exact = stats.multivariate_normal(np.zeros(5), np.eye(5) + 1).logpdf(y)
    ev = cmp.run_smc(model, draws=400, chains=4, cores=1, seed=SEED)
    assert ev.log_ml.shape == (4,)
    assert ev.reliable
    assert abs(ev.estimate - exact) < max(4 * ev.se, 0.15)


def test_smc_evidence_flags_spread_chains():
    # Standard error 1.5 nats: too spread to rank hypotheses by.
    assert not cmp.SmcEvidence(np.array([-10.0, -14.0, -9.0]), 1.0).reliable
    assert not cmp.SmcEvidence(np.array([-10.0, np.nan]), 1.0).reliable
    ev = cmp.SmcEvidence(np.array([-10.0, -10.2]), 1.0)
    assert ev.reliable
    # The mean of Z, not of log Z.
    assert ev.estimate == pytest.approx(np.log(np.mean(np.exp([-10.0, -10.2]))))


def _fake_fit(name, log_ml, elpd_i, k, divergences=0, r_hat=1.001, ess=900.0):
    elpd_i = np.asarray(elpd_i, dtype=float)
    return SimpleNamespace(
        name=name,
        smc=cmp.SmcEvidence(np.asarray(log_ml, dtype=float), 1.0),
        bridge=None,
        loo=SimpleNamespace(
            elpd=elpd_i.sum(), se=1.0, p=2.0, elpd_i=elpd_i, pareto_k=np.asarray(k, dtype=float)
        ),
        diagnostics=SimpleNamespace(divergences=divergences, max_r_hat=r_hat, min_ess_bulk=ess),
        seconds=1.0,
    )


def test_evidence_table_bayes_factors_and_flags():
    rng = np.random.default_rng(SEED)
    base = rng.normal(-1, 0.3, 40)
    fits = [
        _fake_fit("ref", [-100.0, -100.1, -99.9], base, np.full(40, 0.2)),
        # Much more evidence, but clearly worse LOO: flagged as a disagreement.
        _fake_fit("bf_up_loo_down", [-90.0, -90.1, -89.9], base - 0.5, np.full(40, 0.2)),
        # SMC chains far apart, one bad Pareto k, divergences.
        _fake_fit("shaky", [-95.0, -101.0, -90.0], base, np.r_[np.full(39, 0.2), 0.9], 3),
        # A fit below the R-hat and ESS thresholds.
        _fake_fit("unmixed", [-100.0, -100.1, -99.9], base, np.full(40, 0.2), r_hat=1.05, ess=120),
    ]
    t = cmp.evidence_table(fits, "ref").set_index("hypothesis")
    assert t.loc["ref", "log_bf_smc"] == 0
    assert t.loc["ref", "notes"] == "reference"
    assert t.loc["bf_up_loo_down", "log_bf_smc"] == pytest.approx(10.0, abs=0.01)
    assert t.loc["bf_up_loo_down", "elpd_diff_vs_ref"] == pytest.approx(-20.0)
    assert "evidence and LOO disagree" in t.loc["bf_up_loo_down", "notes"]
    notes = t.loc["shaky", "notes"]
    assert "SMC unreliable" in notes
    assert "1 Pareto k > 0.7" in notes
    assert "3 divergences" in notes
    notes = t.loc["unmixed", "notes"]
    assert "R-hat 1.050 > 1.01" in notes and "bulk ESS 120 < 400" in notes
    assert "R-hat" not in t.loc["ref", "notes"]


def test_bridge_sampling_matches_the_exact_marginal_likelihood():
    import nutpie

    y = np.array([0.3, -0.5, 1.2, 0.8, 0.1])
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 1)
        pm.Normal("y", mu, 1, observed=y)
        # A positive quantity the data do not touch: log-transformed, prior-only.
        pm.HalfNormal("s", 1)
    exact = stats.multivariate_normal(np.zeros(5), np.eye(5) + 1).logpdf(y)
    trace = nutpie.sample(
        nutpie.compile_pymc_model(model),
        draws=1000,
        tune=500,
        chains=2,
        seed=SEED,
        progress_bar=False,
    )
    ev = cmp.bridge_evidence(model, trace["posterior"].to_dataset(), seed=SEED)
    assert ev.reliable
    assert abs(ev.estimate - exact) < 0.05


def test_bridge_sampling_survives_repeated_draws():
    """Stuck chains repeat draws and leave the proposal's covariance without full
    rank; the estimate must still be a number (NaN before the relative ridge)."""
    d = 30
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 10, shape=d)
        pm.Normal("y", mu, 10, observed=np.zeros(d))
    rng = np.random.default_rng(SEED)
    distinct = rng.normal(0, 1, size=(10, d)) * np.r_[5.0, np.ones(d - 1)]
    draws = distinct[rng.integers(0, 10, size=60)]  # 60 draws, rank 10 in 30 dimensions
    post = xr.Dataset({"mu": (("chain", "draw", "mu_dim_0"), draws.reshape(2, 30, d))})
    ev = cmp.bridge_evidence(model, post, seed=SEED)
    assert np.isfinite(ev.log_ml).all()


def test_evidence_notes_when_smc_and_bridge_disagree():
    rng = np.random.default_rng(SEED)
    base = rng.normal(-1, 0.3, 40)
    ref = _fake_fit("ref", [-100.0, -100.1], base, np.full(40, 0.2))
    other = _fake_fit("other", [-95.0, -95.1], base, np.full(40, 0.2))
    ref.bridge = cmp.BridgeEvidence(np.array([-100.0, -100.05]))
    other.bridge = cmp.BridgeEvidence(np.array([-104.0, -104.05]))
    t = cmp.evidence_table([ref, other], "ref").set_index("hypothesis")
    assert t.loc["other", "log_bf_bridge"] == pytest.approx(-4.0)
    assert "SMC and bridge sampling disagree by +9.0 nats" in t.loc["other", "notes"]


def test_claim_probabilities_from_draws():
    sizes = np.array([[[5.0, 10.0], [8.0, 4.0], [12.0, 13.0], [30.0, 60.0]]])  # chain, draw, model
    ds = xr.Dataset(
        {"params_total_b": (("chain", "draw", "unknown_model"), sizes.reshape(1, 4, 2))},
        coords={"unknown_model": ["a", "b"]},
    )
    about = cmp.Claim("a is about 8B", "test", "a", about_b=8)
    # 8 / 1.5 = 5.33 .. 12: draws 10 and 8 and 12 of a's (5, 8, 12, 30) -> 8 and 12.
    assert cmp._claim_probability(ds, about) == pytest.approx(2 / 4)
    smaller = cmp.Claim("a < b", "test", "a", smaller_than="b")
    assert cmp._claim_probability(ds, smaller) == pytest.approx(3 / 4)


def test_compare_rejects_bad_input_before_fitting(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cmp"
    res = runner.invoke(
        cli, ["compare", str(DEFAULT_HYPOTHESIS), str(DEFAULT_HYPOTHESIS), "--out", str(out)]
    )
    assert res.exit_code == EXIT_INPUT
    assert "share the hypothesis name 'default'" in res.output
    res = runner.invoke(
        cli, ["compare", str(DEFAULT_HYPOTHESIS), "--reference", "nope", "--out", str(out)]
    )
    assert res.exit_code == EXIT_INPUT
    assert "--reference 'nope'" in res.output
    bad = HYPOTHESIS_FIXTURES / "wrong_unknown_prior.toml"
    res = runner.invoke(cli, ["compare", str(DEFAULT_HYPOTHESIS), str(bad), "--out", str(out)])
    assert res.exit_code == EXIT_INPUT
    assert res.output.count("\n") == 1
    assert not out.exists()


def _compare_args(out, *hypotheses, smc: bool) -> list[str]:
    return [
        "compare",
        *map(str, hypotheses),
        "--data",
        str(TINY_DIR),
        "--out",
        str(out),
        "--draws",
        "100",
        "--tune",
        "100",
        "--chains",
        "2",
        "--smc-draws",
        "50",
        "--smc-chains",
        "2",
        "-q",
        *([] if smc else ["--no-smc"]),
    ]


COMPARE_FILES = (
    "README.md",
    "comparison.csv",
    "evidence.csv",
    "claims.csv",
    "psense.csv",
    "hypotheses.json",
    "compare_sizes.png",
    "compare_evidence.png",
)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_compare_of_one_model_under_two_names(
    tmp_path, hypothesis_dir, tiny_infer_subprocess, tiny_subprocess_cache, monkeypatch
):
    """The command end to end at no compile cost: the default hypothesis against
    a copy of it under another name. Same structure, so both fits load the model
    the shared tiny fit compiled (a copy of its cache); same model, data and
    seed, so the same draws: the evidence and the sizes must agree exactly."""
    import shutil

    cache_copy = tmp_path / "cache"
    shutil.copytree(tiny_subprocess_cache, cache_copy)
    monkeypatch.setenv("LLMSIZE_CACHE_DIR", str(cache_copy))
    twin = hypothesis_dir / "default_twin.toml"
    twin.write_text('extends = "default.toml"\nname = "default_twin"\n', encoding="utf-8")
    out = tmp_path / "cmp"
    res = CliRunner().invoke(
        cli, _compare_args(out, hypothesis_dir / "default.toml", twin, smc=False)
    )
    assert res.exit_code == 0, res.output
    for name in COMPARE_FILES:
        assert (out / name).is_file(), name
    ev = pd.read_csv(out / "evidence.csv").set_index("hypothesis")
    assert list(ev.index) == ["default", "default_twin"]
    assert np.isfinite(ev["log_evidence_bridge"]).all()
    assert ev["log_evidence_bridge"].nunique() == 1
    assert (ev["log_bf_bridge"] == 0).all()
    # Reweighting the reference's draws by a prior ratio of one: a Bayes factor of
    # exactly 1, trusted, with no tail to fit.
    assert (ev["log_bf_reweighted"] == 0).all()
    assert ev["log_bf_reweighted_reliable"].all()
    assert "log_evidence_smc" not in ev
    assert ev["elpd_loo"].nunique() == 1
    sizes = pd.read_csv(out / "comparison.csv")
    assert set(sizes["model"]) == {"closed-x", "closed-y"}
    by = sizes.set_index(["hypothesis", "model"]).sort_index()
    np.testing.assert_array_equal(
        by.loc["default", ["q05_b", "median_b", "q95_b"]].to_numpy(),
        by.loc["default_twin", ["q05_b", "median_b", "q95_b"]].to_numpy(),
    )
    # Nothing was compiled: the copied cache holds the same entries as before.
    assert sorted(p.name for p in (cache_copy / "compiled").iterdir()) == sorted(
        p.name for p in (tiny_subprocess_cache / "compiled").iterdir()
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("smc", [pytest.param(False, id="bridge-only"), pytest.param(True, id="with-smc")])
def test_compare_end_to_end_on_tiny_data(tmp_path, hypothesis_dir, smc):
    # Two hypotheses of different priors: two compiles, so slow (the command's
    # plumbing is checked at no compile cost above, SMC against an exact
    # evidence at the top of this file).
    out = tmp_path / "cmp"
    res = CliRunner().invoke(
        cli,
        _compare_args(
            out,
            hypothesis_dir / "default.toml",
            hypothesis_dir / "good_override_size.toml",
            smc=smc,
        ),
    )
    assert res.exit_code == 0, res.output
    for name in COMPARE_FILES:
        assert (out / name).is_file(), name
    ev = pd.read_csv(out / "evidence.csv").set_index("hypothesis")
    assert list(ev.index) == ["default", "good_override_size"]
    assert ev.loc["default", "log_bf_bridge"] == 0
    assert np.isfinite(ev["log_evidence_bridge"]).all()
    if smc:
        assert ev.loc["default", "log_bf_smc"] == 0
        assert np.isfinite(ev["log_evidence_smc"]).all()
    else:
        assert "log_evidence_smc" not in ev
    assert np.isfinite(ev["elpd_loo"]).all()
    sizes = pd.read_csv(out / "comparison.csv")
    # The tiny data's models of unknown size stand in for gpt-3.5-turbo's snapshots.
    assert set(sizes["model"]) == {"closed-x", "closed-y"}
    assert (sizes["q05_b"] <= sizes["median_b"]).all()
    assert (sizes["median_b"] <= sizes["q95_b"]).all()
    ps = pd.read_csv(out / "psense.csv")
    assert {"prior", "likelihood", "diagnosis", "hypothesis"} <= set(ps.columns)
    assert set(json.loads((out / "hypotheses.json").read_text())) == set(ev.index)
    text = (out / "README.md").read_text()
    # The command that made it, with its files as given.
    assert f"`llmsize compare {hypothesis_dir / 'default.toml'} " in text
    for section in (
        "## The public claims put to the test",
        "## Which hypothesis do the data favour?",
        "## Prior sensitivity",
    ):
        assert section in text
    # No gpt-3.5-turbo in the tiny data: each claim says why it was not evaluated.
    assert text.count("not evaluated") == len(cmp.CLAIMS)


def test_each_hypothesis_is_fitted_with_its_own_sampler_table(default_hypothesis):
    """As ``infer`` does: the reference's row is its report's fit. Settings given to
    ``compare`` apply to every hypothesis instead."""
    own = cmp.sample_settings(default_hypothesis, cmp.CompareSettings())
    sampler = default_hypothesis.sampler
    assert (own.draws, own.tune, own.chains, own.seed, own.target_accept) == (
        sampler.draws, sampler.tune, sampler.chains, sampler.seed, sampler.target_accept,
    )  # fmt: skip
    other = default_hypothesis.model_copy(
        update={"sampler": sampler.model_copy(update={"draws": 321, "target_accept": 0.95})}
    )
    assert cmp.sample_settings(other, cmp.CompareSettings()).draws == 321
    given = cmp.CompareSettings(draws=50, tune=20, chains=2, seed=7)
    for hyp in (default_hypothesis, other):
        s = cmp.sample_settings(hyp, given)
        assert (s.draws, s.tune, s.chains, s.seed) == (50, 20, 2, 7)
    assert cmp.sample_settings(other, given).target_accept == 0.95


def test_too_few_draws_in_a_sampler_table_is_refused_before_any_fit(tmp_path):
    short = tmp_path / "short.toml"
    short.write_text(
        f'extends = "{DEFAULT_HYPOTHESIS}"\nname = "short"\n[sampler]\ndraws = 5\nchains = 2\n',
        encoding="utf-8",
    )
    res = CliRunner().invoke(
        cli,
        ["compare", str(DEFAULT_HYPOTHESIS), str(short), "--data", str(TINY_DIR),
         "--out", str(tmp_path / "out"), "--no-smc"],
    )  # fmt: skip
    assert res.exit_code == EXIT_INPUT, res.output
    assert "short.toml" in res.output and "PSIS-LOO needs at least 25" in res.output
    assert not (tmp_path / "out").exists()
