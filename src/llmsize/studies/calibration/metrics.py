"""Scores of the calibration refits: coverage, error and width, overall and per class.

The input is the table of scored rows, one per (held-out model, hold-out, method),
with the model's true sizes, its posterior quantiles (``total_q05`` ... ``_q95``,
``active_q05`` ... ``_q95``; point estimates have the median only), its PIT values
and its classes (:func:`llmsize.studies.calibration.holdouts.classify`).

Each coverage comes with its exact (Clopper–Pearson) 95% interval: with 20 rows a
measured 85% is consistent with anything from 62% to 97%, which the reader should
see before trusting (or distrusting) a calibration.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from llmsize.studies.calibration.holdouts import ARCHITECTURES, ERAS, KINDS, REGIMES, SPLITS

#: Targets (issue 12, "Done when"): overall 90% coverage in this range ...
COVERAGE_RANGE = (0.85, 0.95)
#: ... at least this much in each class with at least MIN_CLASS_SIZE rows ...
MIN_CLASS_COVERAGE = 0.80
MIN_CLASS_SIZE = 5
#: ... a median abs log10 error of total size at most this (a factor of 1.8) ...
MAX_MEDIAN_LOG_ERROR = 0.25
#: ... and a median 90% interval no wider than this factor.
MAX_WIDTH_FACTOR = 10.0
NOMINAL_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: Confidence level of the Clopper–Pearson interval of each coverage.
CP_LEVEL = 0.95
#: How the class table groups rows, and the order of the classes in each grouping.
GROUPINGS: dict[str, tuple[str, ...]] = {
    "overall": ("all",),
    "kind": KINDS,
    "architecture": ARCHITECTURES,
    "regime": REGIMES,
    "era": ERAS,
}


def coverage(pit: np.ndarray, level: float) -> float:
    """Share of truths inside the central ``level`` interval, from their PIT values."""
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    return float(np.mean((pit >= lo) & (pit <= hi)))


def clopper_pearson(k: int, n: int, confidence: float = CP_LEVEL) -> tuple[float, float]:
    """Exact binomial interval of a proportion ``k / n`` (NaN, NaN when ``n`` is 0)."""
    if n == 0:
        return (math.nan, math.nan)
    from scipy import stats

    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return (float(ci.low), float(ci.high))


def _inside(t: pd.DataFrame, q: str = "total") -> pd.Series:
    truth = t[f"true_{q}_b"]
    return (t[f"{q}_q05"] <= truth) & (truth <= t[f"{q}_q95"])


def metrics(table: pd.DataFrame) -> pd.DataFrame:
    """Per method: hold-outs, coverage, median |log10 error|, median 90% width.

    ``families`` counts hold-outs (a group of same-size families or a lab ladder);
    a hold-out is covered when the 90% interval holds the true total size of every
    model it scores (``coverage_90_families``). ``coverage_90_models`` is per scored
    row, with its Clopper–Pearson interval.
    """
    rows = []
    for method, t in table.groupby("method", sort=False):
        err = np.abs(np.log10(t["total_q50"]) - np.log10(t["true_total_b"]))
        row = {"method": method, "models": len(t), "families": t["holdout"].nunique()}
        row["median_abs_log10_error"] = float(np.median(err))
        if t["total_q05"].notna().any():
            inside = _inside(t)
            fam_cov = inside.groupby(t["holdout"]).all()
            lo, hi = clopper_pearson(int(inside.sum()), len(inside))
            row["families_covered_90"] = int(fam_cov.sum())
            row["coverage_90_families"] = float(fam_cov.mean())
            row["models_covered_90"] = int(inside.sum())
            row["coverage_90_models"] = float(inside.mean())
            row["coverage_90_models_lo"] = lo
            row["coverage_90_models_hi"] = hi
            row["coverage_50_models"] = coverage(t["total_pit"].to_numpy(), 0.5)
            row["median_width_factor_90"] = float(np.median(t["total_q95"] / t["total_q05"]))
        rows.append(row)
    return pd.DataFrame(rows)


def _pct_ci(cov: float, lo: float, hi: float) -> str:
    return f"{cov:.0%} [{lo:.0%}, {hi:.0%}]"


def targets(m: pd.Series) -> list[tuple[str, bool, str]]:
    """The overall calibration targets for one method's metrics: (name, holds, detail)."""
    cov, n = float(m["coverage_90_models"]), int(m["models"])
    # A metrics.csv written before the counts and intervals were columns has the rate only.
    k = m.get("models_covered_90")
    k = round(cov * n) if k is None or pd.isna(k) else int(k)
    lo, hi = m.get("coverage_90_models_lo"), m.get("coverage_90_models_hi")
    if lo is None or pd.isna(lo):
        lo, hi = clopper_pearson(k, n)
    return [
        (
            f"90% intervals cover {COVERAGE_RANGE[0]:.0%}-{COVERAGE_RANGE[1]:.0%} "
            "of held-out models",
            bool(COVERAGE_RANGE[0] <= cov <= COVERAGE_RANGE[1]),
            f"{_pct_ci(cov, lo, hi)} ({k} of {n}; 95% Clopper-Pearson interval)",
        ),
        (
            f"median abs log10 error <= {MAX_MEDIAN_LOG_ERROR}",
            bool(m["median_abs_log10_error"] <= MAX_MEDIAN_LOG_ERROR),
            f"{m['median_abs_log10_error']:.2f} "
            f"(a factor of {10 ** m['median_abs_log10_error']:.1f})",
        ),
        (
            f"90% interval no wider than x{MAX_WIDTH_FACTOR:.0f}",
            bool(m["median_width_factor_90"] <= MAX_WIDTH_FACTOR),
            f"median x{m['median_width_factor_90']:.1f}",
        ),
    ]


# --------------------------------------------------------------------------- classes


def _class_row(method, split, *, grouping, cls, quantity, t: pd.DataFrame) -> dict:
    q50 = t[f"{quantity}_q50"]
    err = np.abs(np.log10(q50) - np.log10(t[f"true_{quantity}_b"]))
    row = {
        "method": method,
        "split": split,
        "grouping": grouping,
        "class": cls,
        "quantity": quantity,
        "n": len(t),
        "holdouts": t["holdout"].nunique(),
        "covered": math.nan,
        "coverage_90": math.nan,
        "coverage_90_lo": math.nan,
        "coverage_90_hi": math.nan,
        "median_abs_log10_error": float(np.median(err)),
        "median_width_factor_90": math.nan,
    }
    if t[f"{quantity}_q05"].notna().all():
        inside = _inside(t, quantity)
        lo, hi = clopper_pearson(int(inside.sum()), len(inside))
        row.update(
            covered=int(inside.sum()),
            coverage_90=float(inside.mean()),
            coverage_90_lo=lo,
            coverage_90_hi=hi,
            median_width_factor_90=float(np.median(t[f"{quantity}_q95"] / t[f"{quantity}_q05"])),
        )
    judged = grouping == "overall" or len(t) >= MIN_CLASS_SIZE
    cov = row["coverage_90"]
    if judged and not math.isnan(cov):
        lo_ok, hi_ok = COVERAGE_RANGE if grouping == "overall" else (MIN_CLASS_COVERAGE, 1.0)
        row["coverage_ok"] = bool(lo_ok <= cov <= hi_ok)
        row["width_ok"] = bool(row["median_width_factor_90"] <= MAX_WIDTH_FACTOR)
    else:
        row["coverage_ok"] = None
        row["width_ok"] = None
    err_ok = row["median_abs_log10_error"] <= MAX_MEDIAN_LOG_ERROR
    row["error_ok"] = bool(err_ok) if judged else None
    return row


def class_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """Coverage (with its Clopper–Pearson interval), error and width per method, split
    (``all``, ``choose``, ``score``) and class of scored row.

    Classes: overall; hold-out kind; architecture (``moe`` twice: its total size and
    its active size); price regime; era of the first price. ``coverage_ok``,
    ``error_ok`` and ``width_ok`` say whether a target holds (None: not judged, a
    class of fewer than :data:`MIN_CLASS_SIZE` rows, or a point estimate): overall
    coverage within :data:`COVERAGE_RANGE`, per class at least
    :data:`MIN_CLASS_COVERAGE`; error at most :data:`MAX_MEDIAN_LOG_ERROR`; width at
    most :data:`MAX_WIDTH_FACTOR`.
    """
    rows = []
    for method, t in table.groupby("method", sort=False):
        for split in ("all", *SPLITS):
            s = t if split == "all" else t[t["split"] == split]
            if s.empty:
                continue
            for grouping, classes in GROUPINGS.items():
                for cls in classes:
                    sub = s if grouping == "overall" else s[s[grouping] == cls]
                    if sub.empty:
                        continue
                    rows.append(
                        _class_row(
                            method, split, grouping=grouping, cls=cls, quantity="total", t=sub
                        )
                    )
                    if (
                        grouping == "architecture"
                        and cls == "moe"
                        and "active_q50" in sub
                        and sub["active_q50"].notna().all()
                    ):
                        rows.append(
                            _class_row(
                                method, split, grouping=grouping, cls=cls, quantity="active", t=sub
                            )
                        )
    return pd.DataFrame(rows)


def class_label(r) -> str:
    """How a class row is named in the report, e.g. ``moe (active size)``."""
    if r["grouping"] == "overall":
        return "all held-out models"
    label = f"{r['grouping']}: {r['class']}"
    if r["grouping"] == "architecture" and r["class"] == "moe":
        label += f" ({r['quantity']} size)"
    return label


def class_targets(
    classes: pd.DataFrame, method: str, split: str = "all"
) -> list[tuple[str, bool, str]]:
    """Whether every judged class of ``method`` in ``split`` meets the class targets."""
    c = classes[
        (classes["method"] == method)
        & (classes["split"] == split)
        & (classes["grouping"] != "overall")
    ]
    out = []
    for name, col, show in (
        (
            f"each class of {MIN_CLASS_SIZE} or more: 90% coverage >= {MIN_CLASS_COVERAGE:.0%}",
            "coverage_ok",
            lambda r: _pct_ci(r["coverage_90"], r["coverage_90_lo"], r["coverage_90_hi"]),
        ),
        (
            f"each class of {MIN_CLASS_SIZE} or more: median abs log10 error <= "
            f"{MAX_MEDIAN_LOG_ERROR}",
            "error_ok",
            lambda r: f"{r['median_abs_log10_error']:.2f}",
        ),
        (
            f"each class of {MIN_CLASS_SIZE} or more: median 90% width <= x{MAX_WIDTH_FACTOR:.0f}",
            "width_ok",
            lambda r: f"x{r['median_width_factor_90']:.1f}",
        ),
    ):
        judged = c[c[col].notna()] if col in c else c.iloc[0:0]
        failed = judged[~judged[col].astype(bool)]
        if judged.empty:
            detail = f"no class has {MIN_CLASS_SIZE} or more rows"
        elif failed.empty:
            detail = f"all {len(judged)} judged classes"
        else:
            detail = "missed by " + "; ".join(
                f"{class_label(r)} {show(r)} (n={int(r['n'])})" for _, r in failed.iterrows()
            )
        out.append((name, bool(failed.empty), detail))
    return out
