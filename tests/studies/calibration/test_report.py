"""The calibration report's Markdown: targets, hold-outs, per-class tables by split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmsize.outputs.tables import markdown_table
from llmsize.studies.calibration import report as rp
from llmsize.studies.calibration.holdouts import VARIANT_LABELS
from llmsize.studies.calibration.metrics import class_metrics, metrics

FULL = VARIANT_LABELS["full"]


def _table():
    n = 6
    truth = np.array([10.0, 20.0, 40.0, 80.0, 160.0, 320.0])
    return pd.DataFrame(
        {
            "holdout": ["a", "b", "c", "d", "ladder-L", "ladder-L"],
            "kind": ["family"] * 4 + ["ladder"] * 2,
            "split": ["choose", "choose", "score", "score", "score", "score"],
            "anchor": [""] * 4 + ["l-7b"] * 2,
            "variant": "full",
            "model": [f"m{i}" for i in range(n)],
            "method": FULL,
            "architecture": ["dense"] * 5 + ["moe"],
            "regime": ["reseller"] * 4 + ["first-party"] * 2,
            "era": ["2023", "2024", "2024", "2024", "2025 and after", "2025 and after"],
            "true_total_b": truth,
            "total_q05": truth / 2,
            "total_q50": truth,
            "total_q95": truth * 2,
            "total_pit": 0.5,
            # m5's active interval misses its truth.
            "true_active_b": [*truth[:5], 30.0],
            "active_q05": [*(truth[:5] / 2), 40.0],
            "active_q50": [*truth[:5], 50.0],
            "active_q95": [*(truth[:5] * 2), 60.0],
        }
    )


def test_markdown_table_escapes_pipes():
    t = pd.DataFrame({"a": ["x|y"], "b": [1]})
    assert markdown_table(t) == "| a | b |\n|---|---|\n| x\\|y | 1 |"


def test_class_table_shows_cp_intervals_and_targets():
    classes = class_metrics(_table())
    shown = rp.class_table(classes, FULL, "all").set_index("class")
    overall = shown.loc["all held-out models"]
    # 6 of 6 covered: 100% with the exact interval [54%, 100%]; above 95%, so NO.
    assert overall["90% coverage [95% CP]"] == "100% [54%, 100%] (6/6)"
    assert overall["coverage holds"] == "NO"
    assert overall["median 90% width"] == "x4.0"
    assert overall["width holds"] == "yes"
    dense = shown.loc["architecture: dense"]
    assert (dense["n"], dense["coverage holds"], dense["error holds"]) == (5, "yes", "yes")
    active = shown.loc["architecture: moe (active size)"]
    # 0 of 1: the exact upper bound is 1 - 0.025 = 97.5%, shown as 98%.
    assert active["90% coverage [95% CP]"] == "0% [0%, 98%] (0/1)"
    assert active["coverage holds"] == "-"  # one row: not judged


def test_render_markdown_sections_and_split_rule():
    table = _table()
    text = rp.render_markdown(table, metrics(table), class_metrics(table))
    assert text.startswith("# Calibration on models of known size\n")
    assert "On 5 hold-outs (6 held-out models scored)" in text
    assert "4 family hold-outs and 1 lab-ladder hold-out." in text
    assert "| ladder-L | ladder | score | l-7b | m4, m5 |" in text
    for title in ("### All hold-outs", "### Choose split", "### Score split"):
        assert title in text
    score = text.split("### Score split")[1]
    assert score.lstrip().startswith(rp.SPLIT_RULE)
    assert "| 90% intervals cover 85%-95% of held-out models | NO | 100% [54%, 100%]" in text
    assert "| each class of 5 or more: 90% coverage >= 80% | yes |" in text
    # Without class metrics the report still renders (older callers).
    assert "## By class" not in rp.render_markdown(table, metrics(table))
