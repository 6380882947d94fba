"""The calibration report's Markdown (README.md of the calibration folder).

Analysis is in :mod:`.metrics`; this module only lays its tables out. The SBC
section is appended by :func:`llmsize.calibration.write_outputs`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from llmsize.outputs.tables import markdown_table
from llmsize.outputs.templating import render
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
    """The calibration report (``outputs/templates/calibration.md.j2``): targets,
    hold-outs, classes per split, methods, rows."""
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
