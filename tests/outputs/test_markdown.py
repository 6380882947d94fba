"""Summary, report and figures on a stand-in run, without NUTS.

Prior draws of the sampling model (which include every deterministic, the
precision probabilities among them) stand in for the posterior, so the
summary, README and plot code runs in seconds for any hypothesis, including
ones that pin a quantity with a ``Constant`` prior.
"""

from __future__ import annotations

import datetime as dt
import warnings
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytest
import xarray as xr
from matplotlib.figure import Figure

from llmsize.inference.model import build_model
from llmsize.inference.sampling import SampleSettings, observed_dataset, sample_prior
from llmsize.inputs.hypothesis import validate
from llmsize.outputs import plots
from llmsize.outputs.markdown import (
    answer_sentence,
    family_diagnostics,
    headline_table,
    model_rows,
    page_question,
    render_readme,
    sd_ratio,
)
from llmsize.outputs.summary import COLUMNS, diagnostics, summary_table

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
    # PyTensor's Python backend: the draws are made once, and compiling their graphs
    # to C would cost far more than drawing them in numpy.
    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        return _draw_stand_in_run(design, hyp)


def _draw_stand_in_run(design, hyp) -> xr.DataTree:
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
        tree=tree, design=tiny_design, hyp=hyp, diag=diag, attrs=attrs, command="x"
    )
    assert text.startswith("# How big are the models of unknown size?\n\n**Answer:**")
    # The results come before the diagnostics, which name the run.
    assert text.index("## Diagnostics") > text.index("## Every model of unknown size")
    assert f"seed {SEED}" in text.split("## Diagnostics")[1]
    head = headline_table(tree, tiny_design)
    # No gpt-3.5-turbo in the fixture: the headline falls back to every unknown model.
    assert list(head["model"]) == ["closed-x", "closed-x", "closed-y"]


def test_sd_ratio_against_hand_numbers():
    post = np.array([0.0, 1.0, 2.0, 3.0])
    assert sd_ratio(post, 2.0 * post + 7.0) == pytest.approx(0.5)
    assert sd_ratio(post, post) == pytest.approx(1.0)
    # A pinned prior has no spread to compare with.
    assert np.isnan(sd_ratio(post, np.full(4, 1.3)))


def test_model_rows_compare_total_and_active_with_their_priors(tiny_design, default_hypothesis):
    # In the stand-in run the "posterior" is itself prior draws: the data have moved
    # neither size, so both ratios sit near 1 (200 draws each: sd within ~10%).
    tree = stand_in_run(tiny_design, default_hypothesis)
    rows = model_rows(tree, tiny_design, tiny_design.unknown)
    assert [r["model"] for r in rows] == list(tiny_design.unknown)
    for r in rows:
        for column in ("posterior/prior sd", "active: posterior/prior sd"):
            assert 0.75 < float(r[column]) < 1.33, (r["model"], column, r[column])


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
    text = sensitivity_section(sens)
    assert "1 of 3 quantities prior-driven" in text
    assert "1 of 3 quantities prior-data conflict" in text
    assert "Prior-driven: a params_total_b." in text
    assert "`log10_overtrain` (0.250)" in text
    assert sensitivity_section(None) == ""
    calm = sensitivity_section(sens.assign(diagnosis="ok"))
    assert "No reported quantity is flagged" in calm
    assert "**Flagged:**" not in calm


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


# --- the answer that opens each page ---------------------------------------------


@pytest.mark.parametrize(
    ("title", "question"),
    [
        ("GPT-3.5: text-davinci-003 and gpt-3.5-turbo (ChatGPT)", "How big is ChatGPT?"),
        ("GPT-4 and GPT-4 Turbo", "How big are GPT-4 and GPT-4 Turbo?"),
        ("Claude: a family", "How big is Claude?"),
        (None, "How big are the models of unknown size?"),
    ],
)
def test_page_question(title, question):
    assert page_question(title) == question


def _hand_tree(sizes: dict[str, tuple[list[float], list[float]]]) -> xr.DataTree:
    """A posterior of one chain whose draws of each model's total and active size are given."""
    models = list(sizes)
    total = np.array([sizes[m][0] for m in models]).T[None]
    active = np.array([sizes[m][1] for m in models]).T[None]
    dims = ("chain", "draw", "unknown_model")
    post = xr.Dataset(
        {"params_total_b": (dims, total), "params_active_b": (dims, active)},
        coords={"unknown_model": models},
    )
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros(total.shape[:2], dtype=bool))})
    return xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})


def test_answer_sentence_against_hand_numbers():
    """Median and 90% interval of each model's total and active size, the model's
    price dates merged into one clause, in the order of the epochs."""
    draws = np.linspace(10.0, 110.0, 101)  # quantiles 5%/50%/95%: 15, 60, 105
    tree = _hand_tree({"m-a": (list(draws), list(draws / 10)), "m-b": ([7.0] * 101, [2.5] * 101)})
    epochs = pd.DataFrame(
        {
            "model": ["m-b", "m-a", "m-a"],
            "date": [dt.date(2024, 1, 1), dt.date(2023, 3, 1), dt.date(2023, 6, 13)],
            "input_usd_per_mtok": [0.5, 2.0, 1.5],
            "output_usd_per_mtok": [1.5, 2.0, 2.0],
        }
    )
    design = SimpleNamespace(epochs=epochs)
    text = answer_sentence(tree, design, [1, 2, 0])
    assert text.startswith("**Answer:**")
    assert text.endswith(
        ": m-a on 2023-03-01 ($2 / $2) and 2023-06-13 ($1.5 / $2): 60B [15-105] total, "
        "6.0B [1.5-10] active; m-b on 2024-01-01 ($0.5 / $1.5): 7.0B [7.0-7.0] total, "
        "2.5B [2.5-2.5] active."
    )
    assert answer_sentence(tree, design, []) == ""


def test_family_diagnostics_reads_its_own_rows():
    tree = _hand_tree({"m-a": ([1.0], [1.0])})
    table = pd.DataFrame(
        {
            "model": ["m-a", "m-a", "other"],
            "date": ["2023-03-01", "2023-06-13", "2024-01-01"],
            "quantity": ["params_total_b", "batch", "params_total_b"],
            "r_hat": [1.004, 1.008, 1.2],
            "ess_bulk": [900.0, 450.0, 30.0],
        }
    )
    got = family_diagnostics(tree, table, ["m-a"])
    assert got == {
        "verdict": "PASS",
        "n": "2",
        "max_r_hat": "1.0080",
        "worst_r_hat": "m-a 2023-06-13 batch",
        "min_ess_bulk": "450",
        "worst_ess": "m-a 2023-06-13 batch",
        "divergences": "0",
    }
    assert family_diagnostics(tree, table, ["other"])["verdict"] == "FAIL"
    assert family_diagnostics(tree, table, ["missing"]) is None
    assert family_diagnostics(tree, None, ["m-a"]) is None


def test_baseline_sentences_name_each_baseline_and_why():
    from llmsize.outputs.markdown import calibration_section

    mets = pd.DataFrame(
        {
            "method": [
                "llmsize (prices, speeds, MMLU)",
                "baseline: price ratio to a reference model",
                "baseline: provider size tiers",
            ],
            "models": [92, 91, 3],
            "families": [39, 38, 2],
            "families_covered_90": [29, np.nan, np.nan],
            "coverage_90_families": [29 / 39, np.nan, np.nan],
            "models_covered_90": [81, np.nan, np.nan],
            "coverage_90_models": [81 / 92, np.nan, np.nan],
            "coverage_90_models_lo": [0.80, np.nan, np.nan],
            "coverage_90_models_hi": [0.94, np.nan, np.nan],
            "median_abs_log10_error": [0.21, 0.31, 0.12],
            "median_width_factor_90": [15.0, np.nan, np.nan],
        }
    )
    text = calibration_section(mets, "reports/calibration-default")
    lines = text.splitlines()
    ratio = next(line for line in lines if line.startswith("- **price ratio"))
    tiers = next(line for line in lines if line.startswith("- **provider size tiers"))
    assert ratio.startswith("- **price ratio to a reference model**: median error 0.31 on the 91")
    assert "against llmsize's 0.21 on 92." in ratio
    assert '"10x cheaper, so 10x smaller"' in ratio
    assert "it cannot place a lab's own prices, ChatGPT's among them" in tiers
    assert "| baseline: provider size tiers | 3 | 0.12 | point estimate |" in lines
    assert "How llmsize compares with the baselines (same hold-outs):" in lines
    assert text.rstrip().endswith("Details: `reports/calibration-default`.")
    # Without llmsize's own row there is nothing to compare with.
    alone = calibration_section(mets.iloc[1:], None)
    assert "Not run for this hypothesis" in alone
    assert "median error" not in alone
