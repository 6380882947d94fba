"""``llmsize compare``: reweighted Bayes factors, PSIS-LOO, claims, and the command itself."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner

from llmsize.cli import EXIT_INPUT, cli
from llmsize.inference.evidence import ReweightedEvidence
from llmsize.studies.compare import runner as cmp
from llmsize.studies.compare.bridge import BridgedEvidence

from ...conftest import DEFAULT_HYPOTHESIS, HYPOTHESIS_FIXTURES, SEED, TINY_DIR


def _fake_fit(name, elpd_i, k, divergences=0, r_hat=1.001, ess=900.0):
    elpd_i = np.asarray(elpd_i, dtype=float)
    return SimpleNamespace(
        name=name,
        loo=cmp.LooResult(
            elpd=elpd_i.sum(), se=1.0, p=2.0, elpd_i=elpd_i, pareto_k=np.asarray(k, dtype=float)
        ),
        diagnostics=SimpleNamespace(divergences=divergences, max_r_hat=r_hat, min_ess_bulk=ess),
        seconds=1.0,
    )


def test_evidence_table_bayes_factors_and_flags():
    rng = np.random.default_rng(SEED)
    base = rng.normal(-1, 0.3, 40)
    fits = [
        _fake_fit("ref", base, np.full(40, 0.2)),
        # Much more evidence, but clearly worse LOO: flagged as a disagreement.
        _fake_fit("bf_up_loo_down", base - 0.5, np.full(40, 0.2)),
        # Reweighting with a heavy tail, one bad Pareto k of LOO, divergences.
        _fake_fit("shaky", base, np.r_[np.full(39, 0.2), 0.9], 3),
        # A fit below the R-hat and ESS thresholds, of another structure.
        _fake_fit("unmixed", base, np.full(40, 0.2), r_hat=1.05, ess=120),
        # Both estimates usable, five nats apart.
        _fake_fit("split", base, np.full(40, 0.2)),
    ]
    reweighted = {
        "ref": ReweightedEvidence(0.0, 0.0, float("nan"), 4000.0),
        "bf_up_loo_down": ReweightedEvidence(10.0, 0.2, 0.3, 900.0),
        "shaky": ReweightedEvidence(-3.0, 0.5, 1.4, 12.0),
        "unmixed": "another model structure",
        "split": ReweightedEvidence(-1.0, 0.1, 0.5, 900.0),
    }
    bridged = {
        "ref": BridgedEvidence(0.0, 0.0, 4000.0, 4000.0),
        "bf_up_loo_down": BridgedEvidence(9.9, 0.1, 900.0, 900.0),
        # Where reweighting fails, the bridge still holds: it is the figure to read.
        "shaky": BridgedEvidence(-2.5, 0.2, 500.0, 800.0),
        "unmixed": "another model structure",
        "split": BridgedEvidence(4.0, 0.1, 900.0, 900.0),
    }
    t = cmp.evidence_table(fits, "ref", reweighted, bridged).set_index("hypothesis")
    assert t.loc["ref", "log_bf_reweighted"] == 0
    assert t.loc["ref", "log_bf_bridged"] == 0
    assert t.loc["ref", "notes"] == "reference"
    assert t.loc["bf_up_loo_down", "log_bf_reweighted"] == pytest.approx(10.0)
    assert t.loc["bf_up_loo_down", "log_bf_bridged"] == pytest.approx(9.9)
    assert t.loc["bf_up_loo_down", "elpd_diff_vs_ref"] == pytest.approx(-20.0)
    assert "evidence and LOO disagree" in t.loc["bf_up_loo_down", "notes"]
    notes = t.loc["shaky", "notes"]
    assert t.loc["shaky", "log_bf_bridged_reliable"]
    assert not t.loc["shaky", "log_bf_reweighted_reliable"]
    assert "reweighting unreliable (Pareto k 1.40 > 0.7)" in notes
    assert "bridged estimate unreliable" not in notes
    assert "evidence and LOO disagree" not in notes
    assert "1 Pareto k > 0.7" in notes
    assert "3 divergences" in notes
    notes = t.loc["unmixed", "notes"]
    assert "no Bayes factor: another model structure" in notes
    assert not np.isfinite(t.loc["unmixed", "log_bf_reweighted"])
    assert not np.isfinite(t.loc["unmixed", "log_bf_bridged"])
    assert "R-hat 1.050 > 1.01" in notes
    assert "bulk ESS 120 < 400" in notes
    assert "R-hat" not in t.loc["ref", "notes"]
    assert "bridged and reweighted estimates disagree" in t.loc["split", "notes"]
    assert "bridged and reweighted" not in t.loc["bf_up_loo_down", "notes"]
    # No estimator of a structural hypothesis' marginal likelihood is left in the table.
    assert not [c for c in t.columns if "smc" in c]


def test_an_unreliable_bridge_is_flagged():
    fits = [_fake_fit("ref", np.zeros(5), np.zeros(5)), _fake_fit("far", np.zeros(5), np.zeros(5))]
    bridged = {
        "ref": BridgedEvidence(0.0, 0.0, 100.0, 100.0),
        "far": BridgedEvidence(-40.0, 1.3, 100.0, 100.0),
    }
    t = cmp.evidence_table(fits, "ref", None, bridged).set_index("hypothesis")
    assert not t.loc["far", "log_bf_bridged_reliable"]
    assert "bridged estimate unreliable (se 1.30 > 0.5)" in t.loc["far", "notes"]


def test_structural_evidence_estimators_are_gone():
    """SMC and bridge sampling of each fit's marginal likelihood disagreed by 17-74
    nats on the bundled data and were removed (README, Compare hypotheses); neither
    the module nor the command offers them. The bridge left is between two fits of
    prior-only hypotheses, where the likelihood cancels."""
    for name in ("run_smc", "bridge_evidence", "SmcEvidence", "BridgeEvidence"):
        assert not hasattr(cmp, name), name
    res = CliRunner().invoke(cli, ["compare", "--help"])
    assert res.exit_code == 0
    assert "smc" not in res.output.lower()


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


def _compare_args(out, *hypotheses) -> list[str]:
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
        "-q",
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
    # Through the Python API (the command line calls the same function; its error
    # paths are tested above, its output in the slow test below).
    import llmsize

    got = llmsize.compare(
        [hypothesis_dir / "default.toml", twin],
        TINY_DIR,
        out=out,
        draws=100,
        tune=100,
        chains=2,
    )  # same settings as _compare_args; fmt: skip
    assert got.out_dir == out
    assert got.reference == "default"
    assert [f.name for f in got.fits] == ["default", "default_twin"]
    for name in COMPARE_FILES:
        assert (out / name).is_file(), name
    assert list(got.evidence["hypothesis"]) == ["default", "default_twin"]
    ev = pd.read_csv(out / "evidence.csv").set_index("hypothesis")
    assert list(ev.index) == ["default", "default_twin"]
    # Reweighting the reference's draws by a prior ratio of one: a Bayes factor of
    # exactly 1, trusted, with no tail to fit.
    assert (ev["log_bf_reweighted"] == 0).all()
    assert ev["log_bf_reweighted_reliable"].all()
    # Bridged between two fits with the same draws: exactly 1 too, no error.
    assert (ev["log_bf_bridged"] == 0).all()
    assert (ev["log_bf_bridged_se"] == 0).all()
    assert ev["log_bf_bridged_reliable"].all()
    # Each fit keeps its tables, not its draws: the prior quantities alone.
    assert all("batch_z" not in f.prior_quantities for f in got.fits)
    assert "log10_params_total_b" in got.fits[0].prior_quantities
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
def test_compare_end_to_end_on_tiny_data(tmp_path, hypothesis_dir):
    # Two hypotheses of different priors: two compiles, so slow (the command's
    # plumbing is checked at no compile cost above).
    out = tmp_path / "cmp"
    res = CliRunner().invoke(
        cli,
        _compare_args(
            out,
            hypothesis_dir / "default.toml",
            hypothesis_dir / "good_override_size.toml",
        ),
    )
    assert res.exit_code == 0, res.output
    for name in COMPARE_FILES:
        assert (out / name).is_file(), name
    ev = pd.read_csv(out / "evidence.csv").set_index("hypothesis")
    assert list(ev.index) == ["default", "good_override_size"]
    assert ev.loc["default", "log_bf_reweighted"] == 0
    assert np.isfinite(ev["log_bf_reweighted"]).all()
    assert ev.loc["default", "log_bf_bridged"] == 0
    assert np.isfinite(ev["log_bf_bridged"]).all()
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
         "--out", str(tmp_path / "out")],
    )  # fmt: skip
    assert res.exit_code == EXIT_INPUT, res.output
    assert "short.toml" in res.output
    assert "PSIS-LOO needs at least 25" in res.output
    assert not (tmp_path / "out").exists()
