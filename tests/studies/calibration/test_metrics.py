"""Metrics of the calibration: Clopper–Pearson intervals, per-method and per-class
scores and their targets, on hand-made tables with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from llmsize.studies.calibration import metrics as mt
from llmsize.studies.calibration.holdouts import VARIANT_LABELS

FULL = VARIANT_LABELS["full"]


# --------------------------------------------------------------------------- Clopper–Pearson


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (17, 20, 0.621, 0.968),  # a calibration of 20 hold-outs at 85%
        (0, 3, 0.0, 0.708),  # 1 - 0.025 ** (1 / 3)
        (3, 3, 0.292, 1.0),  # 0.025 ** (1 / 3)
        (1, 5, 0.005, 0.716),
    ],
)
def test_clopper_pearson_by_hand(k, n, lo, hi):
    got = mt.clopper_pearson(k, n)
    assert got == pytest.approx((lo, hi), abs=6e-4)
    # Independently: the bounds are beta quantiles ...
    beta_lo = 0.0 if k == 0 else stats.beta.ppf(0.025, k, n - k + 1)
    beta_hi = 1.0 if k == n else stats.beta.ppf(0.975, k + 1, n - k)
    assert got == pytest.approx((beta_lo, beta_hi), abs=1e-9)

    # ... and solve the binomial tail equations P(X >= k | lo) = P(X <= k | hi) = 2.5%.
    def tail_ge(p):
        return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))

    def tail_le(p):
        return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k + 1))

    if k > 0:
        assert tail_ge(got[0]) == pytest.approx(0.025, abs=1e-9)
    if k < n:
        assert tail_le(got[1]) == pytest.approx(0.025, abs=1e-9)


def test_clopper_pearson_exact_values_and_empty():
    assert mt.clopper_pearson(0, 3)[1] == pytest.approx(1 - 0.025 ** (1 / 3), rel=1e-12)
    assert mt.clopper_pearson(3, 3)[0] == pytest.approx(0.025 ** (1 / 3), rel=1e-12)
    assert all(math.isnan(v) for v in mt.clopper_pearson(0, 0))
    lo, hi = mt.clopper_pearson(9, 10, confidence=0.5)
    assert lo < 0.9 < hi
    assert hi - lo < np.subtract(*reversed(mt.clopper_pearson(9, 10)))


def test_coverage_from_pit():
    pit = np.array([0.01, 0.05, 0.5, 0.96, 0.999])
    # Central 90%: [0.05, 0.95] holds 0.05 and 0.5; 0.01, 0.96 and 0.999 fall outside.
    assert mt.coverage(pit, 0.9) == 2 / 5
    assert mt.coverage(pit, 0.5) == 1 / 5


# --------------------------------------------------------------------------- per method


def _table(pits, truths, q05, q50, q95, holdouts):
    return pd.DataFrame(
        {
            "holdout": holdouts,
            "model": [f"m{i}" for i in range(len(pits))],
            "method": FULL,
            "true_total_b": truths,
            "total_q05": q05,
            "total_q50": q50,
            "total_q95": q95,
            "total_pit": pits,
        }
    )


def test_metrics_and_targets_by_hand():
    t = _table(
        pits=[0.5, 0.99, 0.2, 0.6],
        truths=[10.0, 100.0, 7.0, 70.0],
        q05=[5.0, 20.0, 3.0, 40.0],
        q50=[10.0, 50.0, 7.0, 70.0],
        q95=[20.0, 80.0, 30.0, 200.0],
        holdouts=["a", "b", "c", "c"],
    )
    m = mt.metrics(t).iloc[0]
    assert m["families"] == 3
    # b's truth (100) is outside [20, 80]; a and c (both models) are covered.
    assert m["families_covered_90"] == 2
    assert math.isclose(m["coverage_90_families"], 2 / 3)
    assert m["models_covered_90"] == 3
    assert math.isclose(m["coverage_90_models"], 3 / 4)
    assert (m["coverage_90_models_lo"], m["coverage_90_models_hi"]) == mt.clopper_pearson(3, 4)
    # |log10 error|: 0, log10(2), 0, 0 -> median 0.
    assert m["median_abs_log10_error"] == 0.0
    assert math.isclose(m["median_width_factor_90"], np.median([4.0, 4.0, 10.0, 5.0]))
    checks = {name: ok for name, ok, _ in mt.targets(m)}
    assert checks == {
        "90% intervals cover 85%-95% of held-out models": False,
        "median abs log10 error <= 0.25": True,
        "90% interval no wider than x10": True,
    }
    detail = mt.targets(m)[0][2]
    assert detail.startswith("75% [19%, 99%] (3 of 4")


# --------------------------------------------------------------------------- per class

#: Seven scored rows: (holdout, kind, split, architecture, regime, era,
#: truth total, q05, q50, q95, truth active, active q05, q50, q95).
ROWS = [
    ("h1", "family", "choose", "dense", "reseller", "2024", 10, 5, 10, 20, 10, 5, 10, 20),
    ("h2", "family", "choose", "dense", "reseller", "2024", 100, 20, 50, 80, 100, 20, 50, 80),
    ("h3", "family", "score", "dense", "reseller", "2023", 7, 3, 7, 30, 7, 3, 7, 30),
    ("h4", "family", "score", "dense", "first-party", "2023", 70, 40, 70, 200, 70, 40, 70, 200),
    ("L", "ladder", "score", "dense", "first-party", "2024", 22, 10, 44, 100, 22, 10, 44, 100),
    ("L", "ladder", "score", "moe", "first-party", "2024", 141, 20, 60, 140, 39, 20, 40, 80),
    ("h5", "family", "choose", "moe", "reseller", "2025 and after", 46.7, 10, 20, 50, 12.9, 8, 13, 20),
]  # fmt: skip


def _class_table():
    cols = [
        "holdout", "kind", "split", "architecture", "regime", "era",
        "true_total_b", "total_q05", "total_q50", "total_q95",
        "true_active_b", "active_q05", "active_q50", "active_q95",
    ]  # fmt: skip
    t = pd.DataFrame(ROWS, columns=cols).astype(dict.fromkeys(cols[6:], float))
    t["method"] = FULL
    t["model"] = [f"m{i}" for i in range(len(t))]
    base = t.assign(
        method="baseline: price ratio to a reference model",
        total_q05=np.nan,
        total_q95=np.nan,
        active_q05=np.nan,
        active_q50=np.nan,
        active_q95=np.nan,
    )
    return pd.concat([t, base], ignore_index=True)


def _row(classes, grouping, cls, quantity="total", split="all", method=FULL):
    c = classes[
        (classes["method"] == method)
        & (classes["split"] == split)
        & (classes["grouping"] == grouping)
        & (classes["class"] == cls)
        & (classes["quantity"] == quantity)
    ]
    assert len(c) == 1, (grouping, cls, quantity, split)
    return c.iloc[0]


def test_class_metrics_by_hand():
    classes = mt.class_metrics(_class_table())
    overall = _row(classes, "overall", "all")
    # Covered: h1, h3, h4, L's dense model and h5 (46.7 in [10, 50]); not h2
    # (100 > 80) nor L's moe model (141 > 140).
    assert (overall["n"], overall["covered"], overall["holdouts"]) == (7, 5, 6)
    assert overall["coverage_90"] == pytest.approx(5 / 7)
    assert (overall["coverage_90_lo"], overall["coverage_90_hi"]) == mt.clopper_pearson(5, 7)
    # |log10 errors|: 0, .301, 0, 0, .301, log10(141/60) = .371, log10(46.7/20) = .368.
    assert overall["median_abs_log10_error"] == pytest.approx(math.log10(2))
    # Widths 4, 4, 10, 5, 10, 7, 5 -> 5.
    assert overall["median_width_factor_90"] == pytest.approx(5.0)
    assert overall["coverage_ok"] is False  # 71% is below 85%
    assert overall["error_ok"] is False  # 0.30 > 0.25
    assert overall["width_ok"] is True

    dense = _row(classes, "architecture", "dense")
    assert (dense["n"], dense["covered"]) == (5, 4)  # 80%: judged, and holds
    assert dense["coverage_ok"] is True
    assert dense["median_abs_log10_error"] == 0.0
    fam = _row(classes, "kind", "family")
    assert (fam["n"], fam["covered"], fam["coverage_ok"]) == (5, 4, True)

    # Fewer than 5 rows: shown, not judged.
    moe_total = _row(classes, "architecture", "moe")
    assert (moe_total["n"], moe_total["covered"]) == (2, 1)
    assert moe_total["coverage_ok"] is None
    assert moe_total["error_ok"] is None
    moe_active = _row(classes, "architecture", "moe", "active")
    assert (moe_active["n"], moe_active["covered"]) == (2, 2)
    assert moe_active["median_abs_log10_error"] == pytest.approx(
        np.median([math.log10(40 / 39), math.log10(13 / 12.9)])
    )
    assert moe_active["median_width_factor_90"] == pytest.approx(np.median([4.0, 2.5]))
    # Only the moe class gets an active row.
    assert set(classes.loc[classes["quantity"] == "active", "class"]) == {"moe"}
    assert _row(classes, "regime", "first-party")["n"] == 3
    assert _row(classes, "era", "2025 and after")["n"] == 1
    # An era nobody is in has no row.
    assert not ((classes["grouping"] == "era") & (classes["class"] == "2022 and before")).any()


def test_class_metrics_per_split():
    classes = mt.class_metrics(_class_table())
    choose = _row(classes, "overall", "all", split="choose")
    score = _row(classes, "overall", "all", split="score")
    assert (choose["n"], choose["covered"]) == (3, 2)  # h1, h2, h5
    assert (score["n"], score["covered"]) == (4, 3)  # h3, h4, L, L
    assert set(classes["split"]) == {"all", "choose", "score"}
    assert _row(classes, "kind", "ladder", split="score")["n"] == 2
    choose = classes[classes["split"] == "choose"]
    assert not ((choose["grouping"] == "kind") & (choose["class"] == "ladder")).any()


def test_class_metrics_of_a_point_estimate():
    classes = mt.class_metrics(_class_table())
    base = "baseline: price ratio to a reference model"
    overall = _row(classes, "overall", "all", method=base)
    assert overall["n"] == 7
    assert math.isnan(overall["coverage_90"])
    assert overall["coverage_ok"] is None
    assert overall["error_ok"] is False
    # No active estimate, so no active row.
    assert not ((classes["method"] == base) & (classes["quantity"] == "active")).any()


def test_class_targets():
    classes = mt.class_metrics(_class_table())
    checks = mt.class_targets(classes, FULL)
    names = [name for name, _, _ in checks]
    assert names == [
        "each class of 5 or more: 90% coverage >= 80%",
        "each class of 5 or more: median abs log10 error <= 0.25",
        "each class of 5 or more: median 90% width <= x10",
    ]
    # Judged classes (n >= 5): kind family and architecture dense, both 4 of 5 covered,
    # errors 0 and widths 5 (dense: 4, 4, 10, 5, 10) and 5 (family: 4, 4, 10, 5, 5).
    assert [ok for _, ok, _ in checks] == [True, True, True]
    assert checks[0][2] == "all 2 judged classes"
    # Miss one: make the dense class 3 of 5 covered.
    t = _class_table()
    t.loc[(t["holdout"] == "h3"), "total_q95"] = 6.0
    checks = mt.class_targets(mt.class_metrics(t), FULL)
    assert checks[0][1] is False
    assert "architecture: dense 60% [15%, 95%] (n=5)" in checks[0][2]
    assert "kind: family 60%" in checks[0][2]
    # The score split has no class of 5: nothing to judge.
    checks = mt.class_targets(mt.class_metrics(t), FULL, "score")
    assert checks[0] == (checks[0][0], True, "no class has 5 or more rows")
