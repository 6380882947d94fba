"""Simulation-based calibration (Talts et al. 2018) of the Bayesian machinery itself.

Sizes and serving quantities are drawn from the prior, prices (and speeds, TTFTs and
MMLU scores) simulated from them on the bundled design, the model refitted to each
simulated dataset, and the rank of each truth among its posterior draws recorded; a
correct sampler and model give uniform ranks (:func:`sbc_uniformity`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from llmsize.inputs.data import load_dataset
from llmsize.physics.design import build_design
from llmsize.studies.calibration.store import run_key

#: Shared quantities checked by SBC besides each unknown model's size.
SBC_SCALARS = ("log_batch_mu", "mbu", "log_markup_out_mu", "provider_sigma", "price_sigma")
SBC_RANKS = 99  # posterior draws a truth is ranked against (ranks 0..99)
SBC_BINS = 10
SBC_BATCH = 10  # simulations per Dask task (the model is compiled once per task)
#: Each SBC refit is one chain: ranks need draws, not between-chain diagnostics.
#: nutpie adapts in a few hundred steps, and 400 draws thinned to 99 keep the
#: ranks nearly independent (Talts et al. 2018 thin for the same reason).
SBC_SETTINGS = {"chains": 1, "tune": 300, "draws": 400}


def sbc_batch(data_dir: str, hyp_json: str, first: int, size: int, settings: dict) -> list[dict]:
    """Simulate datasets ``first .. first + size - 1`` from the prior, refit each,
    and rank the truths.

    The model is compiled once per batch; each simulated dataset replaces the
    observations through the model's data containers.
    """
    import warnings

    import nutpie
    import pymc as pm

    from llmsize.inference.compiled import compile_model
    from llmsize.inference.model import build_model
    from llmsize.inputs.hypothesis import Hypothesis

    warnings.filterwarnings("ignore")
    logging.getLogger("pymc").setLevel(logging.ERROR)
    hyp = Hypothesis.model_validate_json(hyp_json)
    design = build_design(load_dataset(data_dir), hyp)
    seed = int(settings["seed"])
    prior = pm.sample_prior_predictive(
        draws=size,
        model=build_model(design, hyp, predictive="prior"),
        random_seed=seed + 1_000_000 + first,
    )
    pr = prior["prior"].to_dataset()
    obs_pp = prior["prior_predictive"].to_dataset()
    # The same compile as ``infer`` (exact math, the compiled-model cache): every
    # batch of every SBC run loads one compiled model instead of compiling its own.
    compiled = compile_model(build_model(design, hyp))
    quantities = [("log10_params_total_b", m) for m in design.unknown] + [
        (v, None) for v in SBC_SCALARS if v in pr and pr[v].ndim == 2
    ]
    rows = []
    for i in range(size):

        def pick(var, _i=i):
            return (pr[var] if var in pr else obs_pp[var]).isel(chain=0, draw=_i).values

        data = {
            "obs_log_price_out": np.log(pick("output_price")),
            "obs_log_price_in": np.log(pick("input_price")),
        }
        if len(design.log_speed):
            data["obs_log_speed"] = np.log(pick("output_speed"))
        if len(design.log_ttft):
            data["obs_log_ttft"] = np.log(pick("ttft"))
        if len(design.mmlu_score):
            data["obs_mmlu"] = pick("mmlu")
        trace = nutpie.sample(
            compiled.with_data(**data),
            draws=settings["draws"],
            tune=settings["tune"],
            chains=settings["chains"],
            seed=seed + 2_000_000 + first + i,
            target_accept=settings["target_accept"],
            adaptation=settings.get("adaptation", "diag"),
            progress_bar=False,
            cores=1,
        )
        post = trace["posterior"].to_dataset()
        row = {
            "simulation": first + i,
            "divergences": int(trace["sample_stats"]["diverging"].sum()),
        }
        for var, model in quantities:
            truth = pr[var].isel(chain=0, draw=i)
            draws = post[var]
            label = var
            if model is not None:
                truth, draws, label = (
                    truth.sel(unknown_model=model),
                    draws.sel(unknown_model=model),
                    f"{var}[{model}]",
                )
            flat = draws.values.reshape(-1)
            thin = flat[np.linspace(0, flat.size - 1, SBC_RANKS).astype(int)]
            row[label] = int(np.sum(thin < float(truth)))
        rows.append(row)
    return rows


def sbc_uniformity(ranks: pd.DataFrame) -> pd.DataFrame:
    """Chi-square test of uniform ranks (``SBC_BINS`` bins) for every quantity."""
    from scipy import stats

    rows = []
    for col in ranks.columns:
        if col in ("simulation", "divergences"):
            continue
        counts = np.histogram(ranks[col], bins=SBC_BINS, range=(0, SBC_RANKS + 1))[0]
        chi = stats.chisquare(counts)
        rows.append(
            {
                "quantity": col,
                "simulations": int(counts.sum()),
                "chi2": float(chi.statistic),
                "p_value": float(chi.pvalue),
            }
        )
    return pd.DataFrame(rows)


def sbc_tasks(
    data_dir: Path,
    hyp_json: str,
    *,
    data_digest: str,
    out_dir: Path,
    simulations: int,
    settings: dict,
    batch_size: int = SBC_BATCH,
) -> list[tuple[Callable, tuple, Path]]:
    """SBC refits in batches of at most ``batch_size`` (one compiled model per batch)."""
    key = run_key(hyp_json, data_digest, settings)
    tasks = []
    for first in range(0, simulations, batch_size):
        size = min(batch_size, simulations - first)
        tasks.append(
            (
                sbc_batch,
                (str(data_dir), hyp_json, first, size, settings),
                out_dir / f"sbc-{key}" / f"sims_{first:04d}_{first + size - 1:04d}.json",
            )
        )
    return tasks


def sbc_collect(
    tasks: list[tuple[Callable, tuple, Path]], simulations: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ranks of the first ``simulations`` simulations and their uniformity tests."""
    rows = []
    for _, _, path in tasks:
        rows += json.loads(path.read_text(encoding="utf-8"))
    ranks = pd.DataFrame(rows).sort_values("simulation").head(simulations)
    return ranks.reset_index(drop=True), sbc_uniformity(ranks)


def plot_sbc(ranks: pd.DataFrame, tests: pd.DataFrame):
    """Rank histograms with the 99% band of a uniform histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    cols = list(tests["quantity"])
    ncol = 4
    nrow = max(1, math.ceil(len(cols) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.4 * nrow), squeeze=False)
    n = len(ranks)
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / SBC_BINS)
    for ax, col in zip(axes.flat, cols, strict=False):
        ax.hist(ranks[col], bins=SBC_BINS, range=(0, SBC_RANKS + 1), color="C0", alpha=0.8)
        ax.axhspan(lo, hi, color="0.85", zorder=0)
        p = float(tests.loc[tests["quantity"] == col, "p_value"].iloc[0])
        ax.set_title(f"{col}\nchi2 p = {p:.2f}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(cols) :]:
        ax.axis("off")
    fig.suptitle(f"SBC rank histograms ({n} simulations; grey: 99% band if uniform)", fontsize=9)
    fig.tight_layout()
    return fig
