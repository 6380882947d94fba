"""The calibration report: README.md of the calibration folder, its tables and figures.

Analysis is in :mod:`.metrics`; this module only lays its tables out, draws the
figures and writes the folder (:func:`write_outputs`); the prose is in the templates
``calibration.md.j2`` and ``calibration_sbc.md.j2``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from llmsize.outputs.tables import markdown_table
from llmsize.outputs.templating import prose, render
from llmsize.studies.calibration.holdouts import MIN_LADDERS_TO_SPLIT, SPLITS, VARIANT_LABELS
from llmsize.studies.calibration.metrics import (
    CP_LEVEL,
    MIN_CLASS_SIZE,
    NOMINAL_LEVELS,
    class_label,
    class_metrics,
    class_targets,
    coverage,
    targets,
)
from llmsize.studies.calibration.sbc import SBC_RANKS, SBC_SETTINGS, plot_sbc

#: What the report says about the split, wherever it shows results by split.
SPLIT_RULE = (
    "A prior changed after seeing a calibration result must be judged on the **score** "
    "split only: the **choose** split is the one that may be looked at while choosing."
)


def cell(v, fmt: str) -> str:
    """A table cell: numbers formatted (``"metric"``: counts whole, rates to 2 places),
    missing values empty.
    """
    if not isinstance(v, float):
        return str(v)
    if not np.isfinite(v):
        return ""
    if fmt == "metric":
        return f"{v:.0f}" if v.is_integer() and v > 2 else f"{v:.2f}"
    return format(v, fmt)


def sentence(m: pd.Series) -> str:
    """One sentence a reader can trust: hold-outs, coverage, error and width
    (``templates/prose.md.j2``).
    """
    return prose(
        "calibration_sentence",
        int(m["families"]),
        int(m["models"]),
        int(m["families_covered_90"]),
        m["median_abs_log10_error"],
        m["median_width_factor_90"],
    )


def _holds(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return "yes" if v else "NO"


def class_table(classes: pd.DataFrame, method: str, split: str) -> pd.DataFrame:
    """The per-class table of one method and split, as display strings."""
    c = classes[(classes["method"] == method) & (classes["split"] == split)]
    rows = []
    for _, r in c.iterrows():
        if math.isnan(r["coverage_90"]):
            cov = ""
        else:
            cov = (
                f"{r['coverage_90']:.0%} [{r['coverage_90_lo']:.0%}, {r['coverage_90_hi']:.0%}]"
                f" ({int(r['covered'])}/{int(r['n'])})"
            )
        width = r["median_width_factor_90"]
        rows.append(
            {
                "class": class_label(r),
                "n": int(r["n"]),
                "hold-outs": int(r["holdouts"]),
                f"90% coverage [{CP_LEVEL:.0%} CP]": cov,
                "coverage holds": _holds(r["coverage_ok"]),
                "median abs log10 error": f"{r['median_abs_log10_error']:.2f}",
                "error holds": _holds(r["error_ok"]),
                "median 90% width": "" if math.isnan(width) else f"x{width:.1f}",
                "width holds": _holds(r["width_ok"]),
            }
        )
    return pd.DataFrame(rows)


def holdout_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per hold-out: kind, split, lab and anchor, and the models it scores."""
    full = table[table["variant"] != "baseline"]
    rows = []
    for name, t in full.groupby("holdout", sort=False):
        first = t.iloc[0]
        rows.append(
            {
                "hold-out": name,
                "kind": first["kind"],
                "split": first["split"],
                "anchor (size kept)": first.get("anchor", "") or "",
                "scored models": ", ".join(dict.fromkeys(t["model"])),
            }
        )
    return pd.DataFrame(rows)


def render_markdown(
    table: pd.DataFrame, mets: pd.DataFrame, classes: pd.DataFrame | None = None
) -> str:
    """The calibration report (``outputs/templates/calibration.md.j2``): targets,
    hold-outs, classes per split, methods, rows.
    """
    full_label = VARIANT_LABELS["full"]
    full = mets[mets["method"] == full_label]
    checks: list = []
    if len(full):
        checks = targets(full.iloc[0])
        if classes is not None and len(classes):
            checks += class_targets(classes, full_label, "all")
    kinds = table.drop_duplicates("holdout")["kind"].value_counts()
    titles = {"all": "All hold-outs", "choose": "Choose split", "score": "Score split"}
    sections = []
    if classes is not None and len(classes):
        for split in ("all", *SPLITS):
            shown = class_table(classes, full_label, split)
            if not shown.empty:
                sections.append((titles[split], markdown_table(shown), split == "score"))
    cols = [
        "holdout", "split", "model", "method", "architecture", "regime", "era",
        "true_total_b", "total_q05", "total_q50", "total_q95",
        "true_active_b", "active_q05", "active_q50", "active_q95",
    ]  # fmt: skip
    t = table[[c for c in cols if c in table.columns]]
    return render(
        "calibration.md.j2",
        sentence=sentence(full.iloc[0]) if len(full) else "",
        checks=checks,
        n_fam=int(kinds.get("family", 0)),
        n_lad=int(kinds.get("ladder", 0)),
        min_ladders=MIN_LADDERS_TO_SPLIT,
        split_rule=SPLIT_RULE,
        holdouts=markdown_table(holdout_table(table)),
        full_label=full_label,
        cp_level=f"{CP_LEVEL:.0%}",
        min_class=MIN_CLASS_SIZE,
        # A class section only with classes, as before (an empty table is no section).
        class_sections=sections if classes is not None and len(classes) else [],
        methods=markdown_table(mets.map(lambda v: cell(v, "metric"))),
        rows=markdown_table(t.map(lambda v: cell(v, ".3g"))),
    )


def _finish(fig, ax, *, xlabel: str, ylabel: str, title: str):
    """Label, title and legend of a calibration figure, laid out; returns ``fig``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_calibration(table: pd.DataFrame):
    """Predicted against true size; coverage against nominal; log error against size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = table[table["method"] == VARIANT_LABELS["full"]]
    figs = {}

    fig, ax = plt.subplots(figsize=(6, 6))
    methods = list(table["method"].unique())
    for i, method in enumerate(methods):
        t = table[table["method"] == method]
        x = t["true_total_b"].to_numpy() * (1.0 + 0.04 * (i - len(methods) / 2))
        y = t["total_q50"].to_numpy()
        if t["total_q05"].notna().any():
            yerr = [y - t["total_q05"].to_numpy(), t["total_q95"].to_numpy() - y]
            ax.errorbar(
                x, y, yerr=yerr, fmt="o", ms=3, lw=0.8, alpha=0.8, color=f"C{i}", label=method
            )
        else:
            ax.plot(x, y, "x", ms=5, color=f"C{i}", label=method)
    lims = (0.5, 1000)
    ax.plot(lims, lims, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lims)
    ax.set_ylim(0.1, 5000)
    figs["calibration_pred_vs_true.png"] = _finish(
        fig,
        ax,
        xlabel="true total parameters (B)",
        ylabel="estimate (B): median and 90% interval",
        title="Held-out families: estimate against truth",
    )

    fig, ax = plt.subplots(figsize=(5, 5))
    for i, method in enumerate(methods):
        t = table[table["method"] == method]
        if t["total_pit"].notna().any():
            pit = t["total_pit"].to_numpy()
            ax.plot(
                NOMINAL_LEVELS,
                [coverage(pit, lv) for lv in NOMINAL_LEVELS],
                "o-",
                color=f"C{i}",
                label=method,
            )
    ax.plot([0, 1], [0, 1], color="k", lw=0.8)
    if len(full):
        n = len(full)
        lv = np.linspace(0.01, 0.99, 50)
        band = 1.96 * np.sqrt(lv * (1 - lv) / n)
        ax.fill_between(lv, lv - band, lv + band, color="0.85", label=f"95% band for {n} models")
    figs["calibration_coverage.png"] = _finish(
        fig,
        ax,
        xlabel="nominal coverage of the central interval",
        ylabel="empirical coverage",
        title="Coverage of held-out true sizes",
    )

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, method in enumerate(methods):
        t = table[table["method"] == method]
        err = np.log10(t["total_q50"]) - np.log10(t["true_total_b"])
        ax.plot(
            t["true_total_b"],
            err,
            "o" if t["total_pit"].notna().any() else "x",
            color=f"C{i}",
            label=method,
            alpha=0.8,
        )
    ax.axhline(0, color="k", lw=0.8)
    for s in (-0.3, 0.3):
        ax.axhline(s, color="0.6", lw=0.8, ls="--")
    ax.set_xscale("log")
    figs["calibration_error.png"] = _finish(
        fig,
        ax,
        xlabel="true total parameters (B)",
        ylabel="log10(estimate / truth)",
        title="Error against size (dashed: a factor of 2)",
    )
    return figs


def write_outputs(
    out_dir: Path,
    table: pd.DataFrame,
    mets: pd.DataFrame,
    sbc: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    classes: pd.DataFrame | None = None,
) -> None:
    """calibration.csv (with each row's hold-out, split and classes), metrics.csv,
    class_metrics.csv (per split and class, :func:`class_metrics` of ``table`` unless
    given), the plots, SBC results and README.md.
    """
    import matplotlib.pyplot as plt

    if classes is None:
        classes = class_metrics(table)
    text = render_markdown(table, mets, classes)
    if sbc is not None:
        ranks, tests = sbc
        ranks.to_csv(out_dir / "sbc_ranks.csv", index=False, lineterminator="\n")
        tests.to_csv(
            out_dir / "sbc_tests.csv", index=False, float_format="%.4g", lineterminator="\n"
        )
        fig = plot_sbc(ranks, tests)
        fig.savefig(out_dir / "sbc_ranks.png", dpi=110, metadata={"Software": None})
        plt.close(fig)
        text += render(
            "calibration_sbc.md.j2",
            ranks=ranks,
            tests=tests,
            low=list(tests.loc[tests["p_value"] < 0.01, "quantity"]),
            settings=SBC_SETTINGS,
            n_ranks=SBC_RANKS,
        )

    table.to_csv(out_dir / "calibration.csv", index=False, float_format="%.6g", lineterminator="\n")
    mets.to_csv(out_dir / "metrics.csv", index=False, float_format="%.6g", lineterminator="\n")
    classes.to_csv(
        out_dir / "class_metrics.csv", index=False, float_format="%.6g", lineterminator="\n"
    )
    for name, fig in plot_calibration(table).items():
        fig.savefig(out_dir / name, dpi=110, metadata={"Software": None})
        plt.close(fig)
    (out_dir / "README.md").write_text(text, encoding="utf-8")
