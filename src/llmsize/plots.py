"""Figures of a run. Each function takes the run's DataTree and returns a Figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from llmsize.design import Design  # noqa: E402

#: Public claims about ChatGPT's size, drawn on the headline chart (billions).
CLAIMS = {
    "~7B (d_model 4096, if dense)": 7.0,
    "20B (CodeFusion, withdrawn)": 20.0,
    "175B (MEDEC list; GPT-3)": 175.0,
}
HEADLINE_PREFIX = "gpt-3.5-turbo"

#: Scalar latents shown prior against posterior.
SCALARS = (
    "log_batch_mu",
    "log_batch_trend",
    "mbu",
    "mfu_prefill",
    "log_markup_out_mu",
    "log_markup_in_mu",
    "provider_sigma",
    "model_markup_sigma",
    "price_sigma",
    "speed_log_bias",
    "speed_sigma",
    "mmlu_slope",
    "mmlu_midpoint",
)


def _draws(ds: xr.Dataset, var: str, **sel) -> np.ndarray:
    return ds[var].sel(**sel).values.reshape(-1)


def headline_epochs(design: Design, prefix: str = HEADLINE_PREFIX) -> list[int]:
    """Epochs of the headline family (all unknown models when none match)."""
    rows = [
        i
        for i, r in enumerate(design.epochs.itertuples())
        if r.model in design.unknown and r.model.startswith(prefix)
    ]
    if not rows:
        rows = [i for i, r in enumerate(design.epochs.itertuples()) if r.model in design.unknown]
    return sorted(
        rows, key=lambda i: (design.epochs["date"].iloc[i], design.epochs["model"].iloc[i])
    )


def plot_size_by_date(tree: xr.DataTree, design: Design, prefix: str = HEADLINE_PREFIX) -> Figure:
    """Posterior of total parameters at each price point, with the public claims."""
    post = tree["posterior"].to_dataset()
    prior = tree["prior"].to_dataset()
    epochs = headline_epochs(design, prefix)
    fig, ax = plt.subplots(figsize=(9, 1.1 * len(epochs) + 1.8))
    grid = np.linspace(-1.0, 4.0, 400)
    prior_draws = (
        np.log10(prior["params_total_b"].values.reshape(-1)) if "params_total_b" in prior else None
    )
    for k, e in enumerate(epochs):
        r = design.epochs.iloc[e]
        x = np.log10(_draws(post, "params_total_b", unknown_model=r["model"]))
        dens = _kde(x, grid)
        y0 = len(epochs) - 1 - k
        scale = 0.85 / dens.max()
        ax.fill_between(grid, y0, y0 + dens * scale, color="C0", alpha=0.55, lw=0)
        if prior_draws is not None:
            pd_ = _kde(prior_draws, grid)
            ax.plot(grid, y0 + pd_ * scale, color="0.5", lw=0.8, ls=":")
        q = np.quantile(x, [0.05, 0.5, 0.95])
        ax.plot([q[0], q[2]], [y0 + 0.05] * 2, color="k", lw=2)
        ax.plot(q[1], y0 + 0.05, "o", color="k", ms=4)
        ax.text(
            4.0,
            y0 + 0.3,
            f"{10 ** q[1]:.0f}B [{10 ** q[0]:.0f}-{10 ** q[2]:.0f}]",
            ha="right",
            fontsize=8,
        )
    ax.set_yticks(
        [len(epochs) - 1 - k + 0.3 for k in range(len(epochs))],
        [
            f"{design.epochs['model'].iloc[e]}\n{design.epochs['date'].iloc[e]}  "
            f"${design.epochs['input_usd_per_mtok'].iloc[e]:g}/${design.epochs['output_usd_per_mtok'].iloc[e]:g}"
            for e in epochs
        ],
        fontsize=8,
    )
    for i, (label, value) in enumerate(CLAIMS.items()):
        ax.axvline(np.log10(value), color=f"C{i + 1}", ls="--", lw=1, label=f"claim: {label}")
    ax.legend(loc="upper left", fontsize=7, framealpha=0.9)
    ticks = [0.1, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000]
    ax.set_xticks(np.log10(ticks), [f"{t:g}" for t in ticks])
    ax.set_xlim(-1.0, 4.0)
    ax.set_ylim(-0.2, len(epochs) + 0.6)
    ax.set_xlabel(
        "total parameters (billions, log scale); bar = 90% interval, dot = median; dotted = prior"
    )
    ax.set_title("Posterior size at each price point")
    fig.tight_layout()
    return fig


def _kde(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density on ``grid`` (Silverman bandwidth)."""
    x = x[np.isfinite(x)]
    bw = 1.06 * x.std() * x.size ** (-0.2) + 1e-6
    z = (grid[:, None] - x[None, :]) / bw
    return np.exp(-0.5 * z**2).sum(axis=1) / (x.size * bw * np.sqrt(2 * np.pi))


def plot_prior_posterior(tree: xr.DataTree, design: Design) -> Figure:
    """Prior (grey) against posterior (blue) of the size of each unknown model and
    of the shared serving and quality parameters."""
    post = tree["posterior"].to_dataset()
    prior = tree["prior"].to_dataset()
    panels: list[tuple[str, np.ndarray, np.ndarray]] = []
    for m in design.unknown:
        panels.append(
            (
                f"log10 params (B)\n{m}",
                _draws(prior, "log10_params_total_b", unknown_model=m),
                _draws(post, "log10_params_total_b", unknown_model=m),
            )
        )
    for v in SCALARS:
        if v in post and v in prior and post[v].ndim == 2:
            panels.append((v, _draws(prior, v), _draws(post, v)))
    # A quantity pinned by the hypothesis has nothing to show.
    panels = [p for p in panels if np.ptp(p[1]) > 0 or np.ptp(p[2]) > 0]
    ncol = 4
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.3 * nrow))
    for ax, (title, pr, po) in zip(axes.flat, panels, strict=False):
        lo, hi = np.quantile(np.concatenate([pr, po]), [0.005, 0.995])
        bins = np.linspace(lo, hi, 50)
        ax.hist(pr, bins=bins, density=True, color="0.6", alpha=0.6, label="prior")
        ax.hist(po, bins=bins, density=True, color="C0", alpha=0.7, label="posterior")
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Prior against posterior")
    fig.tight_layout()
    return fig


def plot_ppc(tree: xr.DataTree, design: Design) -> Figure:
    """Posterior predictive 90% intervals against the observed prices and speeds."""
    obs = tree["observed_data"].to_dataset()
    pp = tree["posterior_predictive"].to_dataset()
    known_epoch = np.array([m not in design.unknown for m in design.epochs["model"]])
    panels = [
        ("output_price", "output price (USD / 1M tokens)", known_epoch),
        ("input_price", "input price (USD / 1M tokens)", known_epoch),
    ]
    if "output_speed" in obs:
        panels.append(("output_speed", "output speed (tokens/s)", known_epoch[design.speed_epoch]))
    if "mmlu" in obs:
        panels.append(("mmlu", "MMLU (%)", design.mmlu_model < 0))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
    for ax, (var, label, known) in zip(np.atleast_1d(axes), panels, strict=True):
        y = obs[var].values
        draws = pp[var].values.reshape(-1, y.size)
        lo, med, hi = np.quantile(draws, [0.05, 0.5, 0.95], axis=0)
        inside = float(np.mean((y >= lo) & (y <= hi)))
        for mask, color, name in ((known, "C0", "known size"), (~known, "C3", "unknown size")):
            if mask.any():
                ax.errorbar(
                    y[mask],
                    med[mask],
                    yerr=[med[mask] - lo[mask], hi[mask] - med[mask]],
                    fmt="o",
                    ms=3,
                    color=color,
                    alpha=0.7,
                    elinewidth=0.8,
                    label=name,
                )
        lims = [min(y.min(), lo.min()), max(y.max(), hi.max())]
        ax.plot(lims, lims, color="k", lw=0.8)
        if var != "mmlu":
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"observed {label}", fontsize=8)
        ax.set_ylabel("predicted (median, 90% interval)", fontsize=8)
        ax.set_title(f"{var}: {inside:.0%} of observations inside 90%", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Posterior predictive check")
    fig.tight_layout()
    return fig


def save(fig: Figure, path) -> None:
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
