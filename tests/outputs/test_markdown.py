"""Summary, report and figures on a stand-in run, without NUTS.

Prior draws of the sampling model (which include every deterministic, the
precision probabilities among them) stand in for the posterior, so the
summary, README and plot code runs in seconds for any hypothesis, including
ones that pin a quantity with a ``Constant`` prior.
"""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pymc as pm
import pytest
import xarray as xr
from matplotlib.figure import Figure

from llmsize import plots
from llmsize.config import validate
from llmsize.model import build_model
from llmsize.outputs.markdown import headline_table, render_readme
from llmsize.sampling import SampleSettings, observed_dataset, sample_prior
from llmsize.summary import COLUMNS, diagnostics, summary_table

from ..conftest import SEED

N_CHAINS, N_DRAWS = 2, 100


_STAND_INS: dict[tuple[int, int], tuple[object, object, xr.DataTree]] = {}


def stand_in_run(design, hyp) -> xr.DataTree:
    """A run-shaped tree of prior draws for ``design`` under ``hyp``; made once per
    pair of objects (two prior-predictive compiles each) and handed out as a deep
    copy, so a test may change its own."""
    key = (id(design), id(hyp))
    if key not in _STAND_INS:
        _STAND_INS[key] = (design, hyp, _make_stand_in_run(design, hyp))
    return _STAND_INS[key][2].copy(deep=True)


def _make_stand_in_run(design, hyp) -> xr.DataTree:
    model = build_model(design, hyp)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The effect of Potentials")
        idata = pm.sample_prior_predictive(draws=N_CHAINS * N_DRAWS, model=model, random_seed=SEED)
    flat = idata["prior"].to_dataset().isel(chain=0, drop=True)
    chunks = [
        flat.isel(draw=slice(c * N_DRAWS, (c + 1) * N_DRAWS)).assign_coords(draw=np.arange(N_DRAWS))
        for c in range(N_CHAINS)
    ]
    post = xr.concat(chunks, dim="chain").assign_coords(chain=np.arange(N_CHAINS))
    prior = sample_prior(
        design, hyp, SampleSettings(draws=1, tune=0, chains=1, seed=SEED, prior_draws=200)
    )
    stats = xr.Dataset(
        {"diverging": (("chain", "draw"), np.zeros((N_CHAINS, N_DRAWS), dtype=bool))}
    )
    return xr.DataTree.from_dict(
        {
            "posterior": post,
            "sample_stats": stats,
            "prior": prior["prior"].to_dataset(),
            "prior_predictive": prior["prior_predictive"].to_dataset(),
            "posterior_predictive": prior["prior_predictive"].to_dataset(),
            "observed_data": observed_dataset(
                design, {k: list(v) for k, v in model.coords.items()}
            ),
        }
    )


def pinned(hyp, **priors):
    raw = hyp.to_dict()
    for name, value in priors.items():
        raw["priors"][name] = {"distribution": "Constant", "value": value}
    return validate(raw)


HYPOTHESES = {
    "default": {},
    "dense_only": {"active_fraction": 1.0},
    "fixed_mbu": {"mbu": 0.7},
}


@pytest.mark.parametrize(
    "which",
    # The pinned variants are other model structures: each compiles its forward
    # graphs cold (about 50 s on 2 cores), so they run with --run-slow.
    [w if w == "default" else pytest.param(w, marks=pytest.mark.slow) for w in HYPOTHESES],
)
def test_report_and_figures(which, tiny_design, default_hypothesis):
    hyp = pinned(default_hypothesis, **HYPOTHESES[which])
    tree = stand_in_run(tiny_design, hyp)
    table = summary_table(tree, tiny_design)
    assert list(table.columns) == COLUMNS
    # 2 unknown-model epochs of closed-x + 1 of closed-y, 8 quantities each.
    assert len(table) == 3 * 8
    diag = diagnostics(tree, table)
    assert diag.chains == N_CHAINS
    assert diag.draws == N_DRAWS
    assert diag.divergences == 0
    for fig in (
        plots.plot_size_by_date(tree, tiny_design),
        plots.plot_prior_posterior(tree, tiny_design),
        plots.plot_ppc(tree, tiny_design),
    ):
        assert isinstance(fig, Figure)
        plt.close(fig)
    attrs = {
        "llmsize_version": "0",
        "seed": str(SEED),
        "data_sha256": "a" * 64,
        "hypothesis_sha256": "b" * 64,
    }
    text = render_readme(
        tree=tree, design=tiny_design, hyp=hyp, table=table, diag=diag, attrs=attrs, command="x"
    )
    assert text.startswith(f"# llmsize report: `{hyp.name}`")
    assert "## Diagnostics" in text
    head = headline_table(tree, tiny_design)
    # No gpt-3.5-turbo in the fixture: the headline falls back to every unknown model.
    assert list(head["model"]) == ["closed-x", "closed-x", "closed-y"]


def test_summary_quantiles_match_draws(tiny_design, default_hypothesis):
    tree = stand_in_run(tiny_design, default_hypothesis)
    table = summary_table(tree, tiny_design)
    row = table[(table["model"] == "closed-y") & (table["quantity"] == "params_total_b")].iloc[0]
    draws = tree["posterior"]["params_total_b"].sel(unknown_model="closed-y").values.reshape(-1)
    for q, col in ((0.05, "q05"), (0.5, "q50"), (0.95, "q95")):
        assert row[col] == pytest.approx(np.quantile(draws, q), rel=1e-12)
    assert row["mean"] == pytest.approx(draws.mean(), rel=1e-12)
    # Independent prior draws split into two chains: R-hat near 1 (|R-hat - 1| < 0.05
    # holds for 2 x 100 iid draws with overwhelming probability) and ESS near 200.
    assert abs(row["r_hat"] - 1) < 0.05
    assert 100 < row["ess_bulk"] < 400


def test_sensitivity_section_flags_prior_driven_quantities():
    import pandas as pd

    from llmsize.outputs.markdown import sensitivity_section

    sens = pd.DataFrame(
        {
            "quantity": ["params_total_b", "params_total_b", "tokens_t"],
            "model": ["a", "b", "a"],
            "prior": [0.2, 0.01, 0.3],
            "likelihood": [0.01, 0.3, 0.4],
            "diagnosis": ["prior-driven", "ok", "prior-data conflict"],
            "driving_prior": ["log10_params_total_b", "mbu", "log10_overtrain"],
            "driving_prior_sensitivity": [0.2, 0.01, 0.25],
        }
    )
    text = "\n".join(sensitivity_section(sens))
    assert "1 of 3 quantities prior-driven" in text
    assert "1 of 3 quantities prior-data conflict" in text
    assert "Prior-driven: a params_total_b." in text
    assert "`log10_overtrain` (0.250)" in text
    assert sensitivity_section(None) == []


@pytest.mark.parametrize(
    "draws",
    [
        np.random.default_rng(SEED).normal(1.7, 0.3, 12_000),
        np.r_[
            np.random.default_rng(1).normal(0.0, 0.05, 500),
            np.random.default_rng(2).normal(3.0, 1.0, 4000),
        ],
        np.random.default_rng(3).normal(4.4, 0.6, 800),  # partly beyond the grid's right end
    ],
    ids=["one mode", "narrow and wide", "off the grid"],
)
def test_binned_kde_matches_the_kernel_sum(draws):
    """The ridge plots' density (binned, convolved) against the direct kernel sum."""
    grid = np.linspace(-1.0, 4.5, 440)
    bw = 1.06 * draws.std() * draws.size ** (-0.2) + 1e-6
    z = (grid[:, None] - draws[None, :]) / bw
    exact = np.exp(-0.5 * z**2).sum(axis=1) / (draws.size * bw * np.sqrt(2 * np.pi))
    got = plots._kde(draws, grid)
    assert np.abs(got - exact).max() < 1e-3 * exact.max()


def test_method_section_quotes_the_run_and_the_hypothesis(tiny_design, default_hypothesis):
    from llmsize.outputs.markdown import method_section

    tree = stand_in_run(tiny_design, default_hypothesis)
    text = method_section(tree, tiny_design, default_hypothesis)
    post = tree["posterior"]
    # The elasticity is the run's own posterior median, formatted as in the text.
    median = float(np.quantile(post["price_elasticity_mu"].values, 0.5))
    assert f"elasticity of price in work is {median:.2f} [" in text
    assert "Beta (alpha 0.6, beta 0.4" in text
    assert f"{tiny_design.n_epochs} price points" in text
    # No statement in the tiny data: no sentence about one.
    assert "90% between December 2022" not in text
    # A hypothesis that pins the active fraction says so instead of the Beta prior
    # (the sentence comes from the hypothesis, so the default's draws serve: a
    # stand-in run of its own would compile two more models).
    raw = default_hypothesis.to_dict()
    raw["priors"]["active_fraction"] = {"distribution": "Constant", "value": 1.0}
    dense = validate(raw)
    text = method_section(tree, tiny_design, dense)
    assert "which this hypothesis pins (value 1)" in text
