"""Figures of a run. Each function takes the run's DataTree and returns a Figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from llmsize.decompose import FACTORS  # noqa: E402
from llmsize.design import Design  # noqa: E402
from llmsize.families import Family, epochs_of  # noqa: E402

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
    models = [m for m in design.unknown if m.startswith(prefix)]
    return epochs_of(design, models or design.unknown)


#: Markers of the claims on a family chart, in turn.
_CLAIM_MARKERS = ("D", "s", "^", "v", "P", "X", "*")


def plot_size_by_date(
    tree: xr.DataTree,
    design: Design,
    family: Family | None = None,
) -> Figure:
    """Posterior of total and active parameters at each price point of a family.

    Each row is a price point (a model keeps one size at all its dates). The
    family's public claims are drawn as markers on the rows of the models they
    are about, in the panel of the quantity they state: claims, not data.
    """
    post = tree["posterior"].to_dataset()
    prior = tree["prior"].to_dataset()
    epochs = family.epochs if family is not None else headline_epochs(design)
    claims = family.claims if family is not None else []
    title = family.title if family is not None else "Models of unknown size"
    fig, axes = plt.subplots(
        1, 2, figsize=(13, 0.62 * len(epochs) + 2.2), sharey=True, width_ratios=[1.25, 1]
    )
    grid = np.linspace(-1.0, 4.5, 440)
    styles: dict[str, tuple[str, str]] = {}
    for ax, quantity, name in (
        (axes[0], "params_total_b", "total"),
        (axes[1], "params_active_b", "active"),
    ):
        prior_draws = np.log10(prior[quantity].values.reshape(-1)) if quantity in prior else None
        prior_dens = _kde(prior_draws, grid) if prior_draws is not None else None
        for k, e in enumerate(epochs):
            model = design.epochs["model"].iloc[e]
            x = np.log10(_draws(post, quantity, unknown_model=model))
            dens = _kde(x, grid)
            y0 = len(epochs) - 1 - k
            scale = 0.85 / dens.max()
            ax.fill_between(grid, y0, y0 + dens * scale, color="C0", alpha=0.55, lw=0)
            if prior_dens is not None:
                ax.plot(grid, y0 + prior_dens * scale, color="0.5", lw=0.8, ls=":")
            q = np.quantile(x, [0.05, 0.5, 0.95])
            ax.plot([q[0], q[2]], [y0 + 0.05] * 2, color="k", lw=2)
            ax.plot(q[1], y0 + 0.05, "o", color="k", ms=4)
            ax.text(
                4.45,
                y0 + 0.3,
                f"{_fmt(10 ** q[1])}B [{_fmt(10 ** q[0])}-{_fmt(10 ** q[2])}]",
                ha="right",
                fontsize=8,
            )
            for c in claims:
                if c.quantity != quantity or not c.applies_to(model):
                    continue
                if c.label not in styles:
                    i = len(styles)
                    styles[c.label] = (f"C{(i + 1) % 10}", _CLAIM_MARKERS[i % len(_CLAIM_MARKERS)])
                color, marker = styles[c.label]
                ax.plot(
                    np.log10(c.params_b), y0 + 0.45, marker, color=color, ms=7, mec="k", mew=0.6
                )
        ticks = [0.1, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000]
        ax.set_xticks(np.log10(ticks), [f"{t:g}" for t in ticks])
        ax.set_xlim(-1.0, 4.5)
        ax.set_ylim(-0.2, len(epochs) + 0.2)
        ax.set_xlabel(f"{name} parameters (billions, log scale)", fontsize=9)
        ax.grid(axis="x", color="0.9", lw=0.6)
    axes[0].set_yticks(
        [len(epochs) - 1 - k + 0.3 for k in range(len(epochs))],
        [
            f"{design.epochs['model'].iloc[e]}\n{design.epochs['date'].iloc[e]}  "
            f"${design.epochs['input_usd_per_mtok'].iloc[e]:g}/${design.epochs['output_usd_per_mtok'].iloc[e]:g}"
            for e in epochs
        ],
        fontsize=8,
    )
    handles = [
        plt.Line2D(
            [], [], ls="", marker=m, color=c, mec="k", mew=0.6, ms=7, label=f"claim: {label}"
        )
        for label, (c, m) in styles.items()
    ]
    handles.append(plt.Line2D([], [], color="0.5", ls=":", lw=0.8, label="prior"))
    handles.append(
        plt.Line2D([], [], color="k", lw=2, marker="o", ms=4, label="median, 90% interval")
    )
    fig.legend(
        handles=handles, loc="lower center", ncol=min(len(handles), 3), fontsize=8, frameon=False
    )
    fig.suptitle(f"{title}: posterior size at each price point (claims are not data)", fontsize=11)
    fig.tight_layout(rect=(0, 0.04 + 0.025 * ((len(handles) + 2) // 3), 1, 1))
    return fig


def _fmt(x: float) -> str:
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def plot_cuts(decomposition: pd.DataFrame, title: str) -> Figure:
    """Each price cut split into its causes: posterior mean of each factor's
    contribution to the log blended price (they add up to the modelled change),
    price noise, and the observed change."""
    parts = [*FACTORS, "noise"]
    cuts = list(dict.fromkeys(decomposition["cut"]))
    fig, ax = plt.subplots(figsize=(11, 0.75 * len(cuts) + 2.4))
    for k, cut in enumerate(cuts):
        rows = decomposition[decomposition["cut"] == cut].set_index("part")
        y = len(cuts) - 1 - k
        neg = pos = 0.0
        for i, part in enumerate(parts):
            v = float(rows.loc[part, "mean_log"]) / np.log(10)
            left = neg + v if v < 0 else pos
            ax.barh(
                y,
                abs(v),
                left=left,
                color="0.75" if part == "noise" else f"C{i}",
                edgecolor="white",
                height=0.6,
                label=(FACTORS.get(part, "price noise") if k == 0 else None),
            )
            if v < 0:
                neg += v
            else:
                pos += v
        obs = float(rows.loc["observed", "mean_log"]) / np.log(10)
        ax.plot(obs, y, "kD", ms=6, label="observed change" if k == 0 else None)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(cuts))[::-1], [c.replace(" to ", "\nto ") for c in cuts], fontsize=8)
    ticks = np.array([0.01, 0.03, 0.1, 0.3, 1, 3, 10])
    ax.set_xticks(np.log10(ticks), [f"x{t:g}" for t in ticks])
    lo = min(-0.3, ax.get_xlim()[0])
    ax.set_xlim(lo, max(0.3, ax.get_xlim()[1]))
    ax.set_xlabel("factor on the blended price (3:1 input:output), log scale; posterior means")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, frameon=False)
    ax.set_title(f"{title}: what each price cut is attributed to", fontsize=11)
    fig.tight_layout()
    return fig


def _kde(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density on the evenly spaced ``grid`` (Silverman bandwidth).

    The draws are binned linearly onto the grid, widened by four bandwidths on
    each side so that draws just off it still count, and the bin weights are
    convolved with the kernel: the exact kernel sum up to the grid spacing
    squared, in time linear in the draws rather than draws times grid points.
    """
    x = x[np.isfinite(x)]
    bw = 1.06 * x.std() * x.size ** (-0.2) + 1e-6
    dx = float(grid[1] - grid[0])
    pad = int(np.ceil(4.0 * bw / dx))
    n = grid.size + 2 * pad
    pos = (x - (grid[0] - pad * dx)) / dx
    pos = pos[(pos >= 0) & (pos < n - 1)]
    i = np.floor(pos).astype(int)
    w = pos - i
    weights = np.bincount(i, 1.0 - w, minlength=n) + np.bincount(i + 1, w, minlength=n)
    kernel = np.exp(-0.5 * (np.arange(-pad, pad + 1) * dx / bw) ** 2) / (bw * np.sqrt(2 * np.pi))
    return np.convolve(weights, kernel, mode="same")[pad : pad + grid.size] / x.size


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
        for draws, color, alpha, label in ((pr, "0.6", 0.6, "prior"), (po, "C0", 0.7, "posterior")):
            ax.hist(
                draws,
                bins=bins,
                density=True,
                histtype="stepfilled",
                color=color,
                alpha=alpha,
                label=label,
            )
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
