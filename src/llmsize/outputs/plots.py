"""Figures of a run. Each function takes the run's DataTree and returns a Figure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates  # noqa: E402
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from llmsize.outputs.decompose import FACTORS  # noqa: E402
from llmsize.outputs.families import Family, epochs_of  # noqa: E402
from llmsize.physics.design import Design  # noqa: E402

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


#: Colours of the total and the active size on the headline chart.
_TOTAL_COLOUR, _ACTIVE_COLOUR = "C0", "C1"
#: A model priced at one date only is drawn this many days wide.
_MIN_SPAN_DAYS = 45
#: Claims made more than this many days after a family's last price stand in a strip
#: at the right of its chart, this many days apart.
_LATER_CLAIM_DAYS = 60


def _model_spans(rows: pd.DataFrame) -> list[tuple[str, pd.Timestamp, pd.Timestamp]]:
    """Each model's first and last price date among ``rows``, at least
    ``_MIN_SPAN_DAYS`` apart, in order of first date.
    """
    dates = pd.to_datetime(rows["date"])
    spans = []
    for model in dict.fromkeys(rows["model"]):
        d = dates[rows["model"] == model]
        start, end = d.min(), d.max()
        spans.append((model, start, max(end, start + pd.Timedelta(days=_MIN_SPAN_DAYS))))
    return sorted(spans, key=lambda s: (s[1], s[0]))


def plot_size_by_date(
    tree: xr.DataTree,
    design: Design,
    family: Family | None = None,
) -> Figure:
    """Total and active size of a family's models against date, with their prices.

    Upper panel: for each model, from its first to its last price date, the 50%
    and 90% posterior intervals of its total size (blue) and active size (orange)
    with their medians (a model keeps one size at all its dates). The family's
    public claims are markers at the date they were made: claims, not data.
    Lower panel: each model's blended list price (3 input tokens to 1 output
    token, $ per 1M tokens) at each of its price dates, as steps.
    """
    post = tree["posterior"].to_dataset()
    epochs = family.epochs if family is not None else headline_epochs(design)
    claims = family.claims if family is not None else []
    title = family.title if family is not None else "Models of unknown size"
    rows = design.epochs.iloc[epochs].reset_index(drop=True)
    spans = _model_spans(rows)
    fig, (ax, axp) = plt.subplots(
        2, 1, figsize=(11, 5.0), sharex=True, height_ratios=[3.2, 1], layout="constrained"
    )
    lows, highs = _size_bands(ax, post, spans)
    styles, cutoff, right, later = _claim_markers(ax, claims, spans, lows, highs)
    _size_axis(ax, lows, highs, styles, title)
    _price_steps(axp, rows, spans)
    first = min(start for _, start, _ in spans)
    ticks = matplotlib.dates.AutoDateLocator(maxticks=8).tick_values(
        first, cutoff if later else right
    )
    axp.set_xticks([t for t in ticks if matplotlib.dates.date2num(first - pd.Timedelta(days=30)) <= t
                    <= matplotlib.dates.date2num(cutoff if later else right + pd.Timedelta(days=30))])  # fmt: skip
    axp.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%Y-%m"))
    return fig


def _size_bands(ax, post: xr.Dataset, spans) -> tuple[list[float], list[float]]:
    """Each model's 50% and 90% bands of total size over its span, active size inset,
    with its name; returns the bands' lows and highs (for the axis limits).
    """
    lows, highs = [], []
    for k, (model, start, end) in enumerate(spans):
        # The total over the whole span, the active size inset in its middle half.
        inset = (end - start) / 4
        bounds = []
        for quantity, colour, (x0, x1) in (
            ("params_total_b", _TOTAL_COLOUR, (start, end)),
            ("params_active_b", _ACTIVE_COLOUR, (start + inset, end - inset)),
        ):
            q = np.quantile(
                _draws(post, quantity, unknown_model=model), [0.05, 0.25, 0.5, 0.75, 0.95]
            )
            bounds.append(q)
            ax.fill_between([x0, x1], q[0], q[4], color=colour, alpha=0.22, lw=0)
            ax.fill_between([x0, x1], q[1], q[3], color=colour, alpha=0.5, lw=0)
            ax.plot([x0, x1], [q[2], q[2]], color=colour, lw=2.2)
        lo_q, hi_q = min(b[0] for b in bounds), max(b[4] for b in bounds)
        lows.append(lo_q)
        highs.append(hi_q)
        # Names alternate above and below their bars, so that neighbours do not collide.
        above = k % 2 == 0
        ax.annotate(
            model,
            (start, hi_q if above else lo_q),
            xytext=(0, 3 if above else -3),
            textcoords="offset points",
            va="bottom" if above else "top",
            fontsize=8,
            color="0.15",
        )
    return lows, highs


def _claim_markers(ax, claims, spans, lows: list[float], highs: list[float]):
    """The claims about the spans' models as markers at their dates (``lows`` and
    ``highs`` extended by their values); returns (styles by claim label, the end of
    the time axis, its right end with the strip of later claims, how many are there).
    """
    styles: dict[str, tuple[str, str]] = {}
    # Claims made long after the last price stand in a strip at the right, each with
    # its date, so that they do not stretch the time axis over years without prices.
    first = min(start for _, start, _ in spans)
    last = max(end for _, _, end in spans)
    cutoff = last + pd.Timedelta(days=_LATER_CLAIM_DAYS)
    later = 0
    for c in claims:
        if not any(c.applies_to(m) for m, _, _ in spans):
            continue
        if c.label not in styles:
            i = len(styles)
            styles[c.label] = (f"C{(i + 2) % 10}", _CLAIM_MARKERS[i % len(_CLAIM_MARKERS)])
        colour, marker = styles[c.label]
        face = colour if c.quantity == "params_total_b" else "white"
        when = pd.Timestamp(c.date)
        if when > cutoff:
            when = cutoff + pd.Timedelta(days=_LATER_CLAIM_DAYS * (0.5 + later))
            later += 1
            ax.annotate(
                c.date.strftime("%Y-%m"), (when, c.params_b), xytext=(0, -9),
                textcoords="offset points", ha="center", va="top", fontsize=6.5, color="0.3",
            )  # fmt: skip
        ax.plot(when, c.params_b, marker, ms=8, mfc=face, mec=colour, mew=1.6, ls="")
        lows.append(c.params_b)
        highs.append(c.params_b)
    right = cutoff + pd.Timedelta(days=_LATER_CLAIM_DAYS * later) if later else last
    ax.set_xlim(first - pd.Timedelta(days=30), right + pd.Timedelta(days=30))
    if later:
        # The strip is not a time axis: shaded, and without date ticks.
        ax.axvspan(cutoff, right + pd.Timedelta(days=30), color="0.96", lw=0, zorder=0)
        ax.text(
            cutoff, 0.99, " claims made later,\n dated below each",
            transform=ax.get_xaxis_transform(), fontsize=7, color="0.35", va="top",
        )  # fmt: skip
    return styles, cutoff, right, later


def _size_axis(ax, lows: list[float], highs: list[float], styles, title: str) -> None:
    """Log size axis over the bands and claims, its legend and the chart's title."""
    ax.set_yscale("log")
    lo, hi = min(lows) / 2.0, max(highs) * 2.0
    ax.set_ylim(lo, hi)
    ticks = [t for t in (0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000) if lo <= t <= hi]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_ylabel("parameters (billions, log scale)", fontsize=9)
    ax.grid(color="0.9", lw=0.6)
    handles = [
        matplotlib.patches.Patch(
            color=_TOTAL_COLOUR, alpha=0.5, label="total: 50% and 90% intervals, median"
        ),
        matplotlib.patches.Patch(
            color=_ACTIVE_COLOUR, alpha=0.5, label="active: 50% and 90% intervals, median"
        ),
        *[
            plt.Line2D(
                [], [], ls="", marker=m, ms=8, mfc=c, mec=c, mew=1.6, label=f"claim: {label}"
            )
            for label, (c, m) in styles.items()
        ],
    ]
    if styles:
        handles.append(
            plt.Line2D(
                [],
                [],
                ls="",
                marker="o",
                ms=8,
                mfc="white",
                mec="0.3",
                mew=1.6,
                label="(hollow: a claim of the active size)",
            )
        )
    ax.legend(
        handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False
    )
    ax.set_title(f"{title}: posterior size by date (claims are not data)", fontsize=11, loc="left")


def _price_steps(axp, rows: pd.DataFrame, spans) -> None:
    """Each model's blended list price at its price dates, as steps, on ``axp``."""
    dates = pd.to_datetime(rows["date"])
    blended = (3 * rows["input_usd_per_mtok"] + rows["output_usd_per_mtok"]) / 4
    for model, _, end in spans:
        mine = (rows["model"] == model).to_numpy()
        d = list(dates[mine]) + [end]
        p = list(blended[mine]) + [float(blended[mine].iloc[-1])]
        axp.step(d, p, where="post", color="0.35", lw=1.5)
        axp.plot(dates[mine], blended[mine], "o", color="0.35", ms=4)
    axp.set_yscale("log")
    axp.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axp.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"${v:g}"))
    axp.minorticks_off()
    axp.tick_params(axis="y", labelsize=8)
    axp.set_ylim(float(blended.min()) / 1.8, float(blended.max()) * 1.8)
    axp.set_ylabel("list price\n($/1M tokens,\n3 in : 1 out)", fontsize=8)
    axp.grid(color="0.9", lw=0.6)


def plot_cuts(decomposition: pd.DataFrame, title: str) -> Figure:
    """Each price cut split into its causes: posterior mean of each factor's
    contribution to the log blended price (they add up to the modelled change),
    price noise, and the observed change; under each bar, every factor's 90%
    interval, and the modelled change's, so that a reader sees which causes the
    data tell apart.
    """
    parts = [*FACTORS, "noise"]
    cuts = list(dict.fromkeys(decomposition["cut"]))
    fig, ax = plt.subplots(figsize=(11, 1.25 * len(cuts) + 2.4))
    colour = {part: "0.6" if part == "noise" else f"C{i}" for i, part in enumerate(parts)}
    for k, cut in enumerate(cuts):
        rows = decomposition[decomposition["cut"] == cut].set_index("part")
        y = len(cuts) - 1 - k
        neg = pos = 0.0
        for part in parts:
            v = float(rows.loc[part, "mean_log"]) / np.log(10)
            left = neg + v if v < 0 else pos
            ax.barh(
                y + 0.2,
                abs(v),
                left=left,
                color=colour[part],
                edgecolor="white",
                height=0.4,
                label=(FACTORS.get(part, "price noise") if k == 0 else None),
            )
            if v < 0:
                neg += v
            else:
                pos += v
        obs = float(rows.loc["observed", "mean_log"]) / np.log(10)
        ax.plot(obs, y + 0.2, "kD", ms=6, label="observed change" if k == 0 else None)
        # The 90% intervals, one thin line each, the modelled change first.
        for i, part in enumerate(["modelled", *parts]):
            if part not in rows.index:
                continue
            lo, mid, hi = np.log10(rows.loc[part, ["q05", "q50", "q95"]].astype(float))
            yy = y - 0.06 - 0.075 * i
            c = "k" if part == "modelled" else colour[part]
            ax.plot([lo, hi], [yy, yy], color=c, lw=1.6, solid_capstyle="butt")
            ax.plot(mid, yy, "|", color=c, ms=5, mew=1.6)
    ax.plot([], [], color="k", lw=1.6, label="all five (modelled): 90% interval")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(cuts))[::-1], [c.replace(" to ", "\nto ") for c in cuts], fontsize=8)
    ticks = np.array([0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30])
    ax.set_xticks(np.log10(ticks), [f"x{t:g}" for t in ticks])
    lo = min(-0.3, ax.get_xlim()[0])
    ax.set_xlim(lo, max(0.3, ax.get_xlim()[1]))
    ax.set_ylim(-0.75, len(cuts) - 0.4)
    ax.set_xlabel(
        "factor on the blended price (3:1 input:output), log scale\n"
        "bars: posterior means, adding up to the modelled change; lines below: 90% intervals, "
        "median marked",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4, frameon=False)
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


#: One panel of :func:`plot_prior_posterior`: title, prior draws, posterior draws, and
#: whether the draws are log10 billions of parameters (labelled in billions).
Panel = tuple[str, np.ndarray, np.ndarray, bool]


def plot_prior_posterior(tree: xr.DataTree, design: Design) -> Figure:
    """Prior (grey) against posterior (blue) of the size of each unknown model and
    of the shared serving and quality parameters.
    """
    return draw_prior_posterior(prior_posterior_panels(tree, design))


def prior_posterior_panels(tree: xr.DataTree, design: Design) -> list[Panel]:
    """The draws :func:`plot_prior_posterior` shows, one panel per quantity that is not
    pinned by the hypothesis (a few MB at the default draws: cheap to send to a
    worker process that draws the figure).
    """
    post = tree["posterior"].to_dataset()
    prior = tree["prior"].to_dataset()
    # (title, prior draws, posterior draws, drawn in log10 units of billions)
    panels: list[Panel] = []
    for m in design.unknown:
        panels.append(
            (
                f"total parameters (billions)\n{m}",
                _draws(prior, "log10_params_total_b", unknown_model=m),
                _draws(post, "log10_params_total_b", unknown_model=m),
                True,
            )
        )
    for v in SCALARS:
        if v in post and v in prior and post[v].ndim == 2:
            panels.append((v, _draws(prior, v), _draws(post, v), False))
    # A quantity pinned by the hypothesis has nothing to show.
    return [p for p in panels if np.ptp(p[1]) > 0 or np.ptp(p[2]) > 0]


def draw_prior_posterior(panels: list[Panel]) -> Figure:
    """The figure of :func:`plot_prior_posterior` from its panels."""
    ncol = 4
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.3 * nrow))
    for ax, (title, pr, po, log_billions) in zip(axes.flat, panels, strict=False):
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
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_yticks([])
        if log_billions:  # labelled in billions
            ticks = [t for t in (0.3, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000)
                     if lo <= np.log10(t) <= hi]  # fmt: skip
            ax.set_xticks(np.log10(ticks), [f"{t:g}" for t in ticks])
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Prior against posterior (sizes on a log scale, in billions of parameters)")
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class PpcPanel:
    """One panel of :func:`plot_ppc`: each observation of ``var`` with the median and
    90% interval of its posterior predictive draws, and whether its model's size is known.
    """

    var: str
    label: str
    known: np.ndarray
    observed: np.ndarray
    lo: np.ndarray
    median: np.ndarray
    hi: np.ndarray


def plot_ppc(tree: xr.DataTree, design: Design) -> Figure:
    """Posterior predictive 90% intervals against the observed prices and speeds."""
    return draw_ppc(ppc_panels(tree, design))


def ppc_panels(tree: xr.DataTree, design: Design) -> list[PpcPanel]:
    """The intervals :func:`plot_ppc` shows: prices, and speeds and MMLU where observed."""
    obs = tree["observed_data"].to_dataset()
    pp = tree["posterior_predictive"].to_dataset()
    known_epoch = np.array([m not in design.unknown for m in design.epochs["model"]])
    which = [
        ("output_price", "output price (USD / 1M tokens)", known_epoch),
        ("input_price", "input price (USD / 1M tokens)", known_epoch),
    ]
    if "output_speed" in obs:
        which.append(("output_speed", "output speed (tokens/s)", known_epoch[design.speed_epoch]))
    if "mmlu" in obs:
        which.append(("mmlu", "MMLU (%)", design.mmlu_model < 0))
    panels = []
    for var, label, known in which:
        y = obs[var].values
        draws = pp[var].values.reshape(-1, y.size)
        lo, med, hi = np.quantile(draws, [0.05, 0.5, 0.95], axis=0)
        panels.append(PpcPanel(var, label, known, y, lo, med, hi))
    return panels


def draw_ppc(panels: list[PpcPanel]) -> Figure:
    """The figure of :func:`plot_ppc` from its panels."""
    ncol = min(len(panels), 2)
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.5 * ncol, 4.6 * nrow), squeeze=False)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels, strict=False):
        var, label, known = panel.var, panel.label, panel.known
        y, lo, med, hi = panel.observed, panel.lo, panel.median, panel.hi
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
        ax.set_xlabel(f"observed {label}", fontsize=11)
        ax.set_ylabel("predicted (median, 90% interval)", fontsize=11)
        ax.set_title(f"{var}: {inside:.0%} of observations inside 90%", fontsize=12)
        ax.tick_params(labelsize=10)
        ax.legend(fontsize=10)
    fig.suptitle("Posterior predictive check")
    fig.tight_layout()
    return fig


def save(fig: Figure, path) -> None:
    """Write ``fig`` as a PNG without the software tag (same figure, same bytes), and close it."""
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def draw_and_save(draw: Callable[[Any], Figure], panels: Any, path) -> None:
    """``save(draw(panels), path)``: a figure drawn and written in a worker process."""
    save(draw(panels), path)
