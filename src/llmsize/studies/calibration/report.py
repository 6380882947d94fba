"""The calibration report's Markdown (README.md of the calibration folder).

Analysis is in :mod:`.metrics`; this module only lays its tables out. The SBC
section is appended by :func:`llmsize.calibration.write_outputs`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from llmsize.outputs.tables import markdown_table
from llmsize.studies.calibration.holdouts import MIN_LADDERS_TO_SPLIT, SPLITS, VARIANT_LABELS
from llmsize.studies.calibration.metrics import (
    CP_LEVEL,
    MIN_CLASS_SIZE,
    class_label,
    class_targets,
    targets,
)

#: What the report says about the split, wherever it shows results by split.
SPLIT_RULE = (
    "A prior changed after seeing a calibration result must be judged on the **score** "
    "split only: the **choose** split is the one that may be looked at while choosing."
)


def cell(v, fmt: str) -> str:
    """A table cell: numbers formatted (``"metric"``: counts whole, rates to 2 places),
    missing values empty."""
    if not isinstance(v, float):
        return str(v)
    if not np.isfinite(v):
        return ""
    if fmt == "metric":
        return f"{v:.0f}" if v.is_integer() and v > 2 else f"{v:.2f}"
    return format(v, fmt)


def sentence(m: pd.Series) -> str:
    """One sentence a reader can trust."""
    n, rows = int(m["families"]), int(m["models"])
    return (
        f"On {n} hold-out{'s' if n != 1 else ''} ({rows} held-out model"
        f"{'s' if rows != 1 else ''} scored), 90% intervals covered the true size of every "
        f"model of a hold-out {int(m['families_covered_90'])} times; the median estimate was "
        f"off by a factor of {10 ** m['median_abs_log10_error']:.1f}, and the median 90% "
        f"interval spanned a factor of {m['median_width_factor_90']:.0f}."
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
    """The calibration report: targets, hold-outs, classes per split, methods, rows."""
    full_label = VARIANT_LABELS["full"]
    lines = ["# Calibration on models of known size", ""]
    full = mets[mets["method"] == full_label]
    if len(full):
        m = full.iloc[0]
        checks = targets(m)
        if classes is not None and len(classes):
            checks += class_targets(classes, full_label, "all")
        lines += [sentence(m), "", "| target | holds | measured |", "|---|---|---|"]
        lines += [f"| {name} | {'yes' if ok else 'NO'} | {detail} |" for name, ok, detail in checks]
        lines += [""]
    kinds = table.drop_duplicates("holdout")["kind"].value_counts()
    n_fam, n_lad = int(kinds.get("family", 0)), int(kinds.get("ladder", 0))
    lines += [
        "## Hold-outs",
        "",
        f"{n_fam} family hold-out{'s' if n_fam != 1 else ''} and {n_lad} lab-ladder "
        f"hold-out{'s' if n_lad != 1 else ''}. A *family* hold-out removes the sizes of a "
        "model family (a model with its fine-tunes and variants) together with every "
        "family of the same total and active size (same-size siblings at the same providers would give the "
        "answer away), and refits on all prices. A *lab ladder* mimics the ChatGPT case "
        "(OpenAI priced its own models and only GPT-3 davinci's size is known): for a lab "
        "with its own prices for two or more known sizes, one size is kept (the *anchor*: "
        "the lab's model of known size with the earliest price at its own API), the sizes "
        "of the lab's other models are removed, and so are all their prices but the lab's "
        "own.",
        "",
        "Each hold-out is in one of two fixed splits: *choose* or *score* (a family by the "
        "parity of the first byte of the sha256 of its name; a merged hold-out is in choose "
        "if any of its families is; lab ladders all in score while there are fewer than "
        f"{MIN_LADDERS_TO_SPLIT}). {SPLIT_RULE}",
        "",
        markdown_table(holdout_table(table)),
        "",
    ]
    if classes is not None and len(classes):
        lines += [
            f"## By class ({full_label})",
            "",
            "One row per scored (held-out model, hold-out) pair; a model held out both with "
            "its family and in its lab's ladder counts once in each. *first-party*: every "
            "price the model had in the refit was at its lab's own API; *era*: the year of "
            "its first price in the refit. A mixture-of-experts model is scored on its total "
            "and on its active size. Coverage is the share of 90% intervals holding the true "
            f"size, with its exact {CP_LEVEL:.0%} (Clopper-Pearson) interval. Targets: overall "
            f"coverage in 85-95% and at least 80% in each class of {MIN_CLASS_SIZE} or more "
            "rows, median abs log10 error at most 0.25, median 90% width at most x10; "
            f"classes of fewer than {MIN_CLASS_SIZE} rows are not judged (-).",
            "",
        ]
        for split in ("all", *SPLITS):
            shown = class_table(classes, full_label, split)
            if shown.empty:
                continue
            title = {"all": "All hold-outs", "choose": "Choose split", "score": "Score split"}
            lines += [f"### {title[split]}", ""]
            if split == "score":
                lines += [SPLIT_RULE, ""]
            lines += [markdown_table(shown), ""]
    lines += [
        "## Methods side by side",
        "",
        markdown_table(mets.map(lambda v: cell(v, "metric"))),
        "",
        "*median_abs_log10_error*: 0.3 is a factor of 2. *coverage_90_families*: a hold-out "
        "counts as covered when the 90% interval holds the true size of every one of its "
        "held-out models (*families* counts hold-outs). Baselines give a point estimate "
        "only.",
        "",
        "![estimate against truth](calibration_pred_vs_true.png)",
        "",
        "![coverage](calibration_coverage.png)",
        "",
        "![error against size](calibration_error.png)",
        "",
        "## Every held-out model",
        "",
    ]
    cols = [
        "holdout",
        "split",
        "model",
        "method",
        "architecture",
        "regime",
        "era",
        "true_total_b",
        "total_q05",
        "total_q50",
        "total_q95",
        "true_active_b",
        "active_q05",
        "active_q50",
        "active_q95",
    ]
    t = table[[c for c in cols if c in table.columns]]
    lines.append(markdown_table(t.map(lambda v: cell(v, ".3g"))))
    return "\n".join(lines) + "\n"
