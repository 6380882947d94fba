"""Calibration: hold-outs, baselines, metrics and report on hand-made inputs.

The refits themselves are exercised by one end-to-end run of the command on
the tiny data (one hold-out, two SBC simulations); everything else here runs
without sampling.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from llmsize import calibration as cal
from llmsize.data import load_dataset
from llmsize.design import build_design

from .conftest import DEFAULT_HYPOTHESIS, TINY_DIR, subprocess_env


def test_families_group_priced_known_models(tiny_data, tiny_design):
    fams = cal.families(tiny_data, tiny_design)
    assert fams == {
        "small": ["small-7b"],
        "mid": ["mid-70b"],
        "moe": ["moe-47b"],
        "big": ["big-175b"],
    }


def test_bundled_families_include_gpt3(bundled_data, bundled_design):
    fams = cal.families(bundled_data, bundled_design)
    assert fams["gpt-3-175b"] == ["davinci"]
    # CodeLlama-70B starts from Llama 2 70B's weights, so it leaves with it.
    assert set(fams["llama-2-70b"]) == {"Llama-2-70B-chat", "CodeLlama-70B-Instruct"}


def test_holdout_makes_the_family_unknown(tiny_data, default_hypothesis):
    design = cal.holdout_design(tiny_data, default_hypothesis, "mid", "full")
    assert "mid-70b" in design.unknown
    assert set(design.unknown) == {"closed-x", "closed-y", "mid-70b"}
    # Its MMLU now depends on its latent compute.
    assert np.isnan(design.mmlu_known_log10_compute[design.mmlu_model >= 0]).all()
    assert np.all(design.price_mask == 1.0)


def test_no_speed_and_no_price_variants(tiny_data, default_hypothesis):
    d = cal.holdout_design(tiny_data, default_hypothesis, "mid", "no_speed")
    assert len(d.speed_epoch) == 0
    assert len(d.ttft_epoch) == 0
    d = cal.holdout_design(tiny_data, default_hypothesis, "mid", "no_price")
    masked = d.epochs.loc[d.price_mask == 0.0, "model"]
    assert set(masked) == {"mid-70b"}
    assert (d.price_mask[d.epochs["model"] != "mid-70b"] == 1.0).all()
    with pytest.raises(ValueError, match="unknown variant"):
        cal.holdout_design(tiny_data, default_hypothesis, "mid", "no_such")


def test_unpriced_base_checkpoint_leaves_with_its_family(bundled_data, default_hypothesis):
    # Llama-2-70B (base) has an MMLU row but no price: held out, it cannot be placed.
    held = cal.holdout_dataset(bundled_data, "llama-2-70b", "full")
    assert "Llama-2-70B" not in set(held.quality["model"])
    assert "Llama-2-70B-chat" not in set(held.known_models["model"])
    build_design(held, default_hypothesis)  # still a valid design


def test_price_ratio_baseline_by_hand(tiny_data, tiny_design):
    # mid-70b at HostA (2023-12-01, $1.00 out): the only other known model there is
    # small-7b (7B, $0.15) -> 7 * 1.00 / 0.15 = 46.7B. At HostB (2024-03-01, $0.90 out)
    # moe-47b and small-7b tie on date; the first in epoch order (sorted by model name)
    # is moe-47b (46.7B total, $0.70) -> 46.7 * 0.90 / 0.70 = 60.0B. The estimate is
    # the geometric mean of the two.
    est = cal.price_ratio_baseline(tiny_data, tiny_design, ["mid-70b"])["mid-70b"]
    expected = math.sqrt((7 * 1.00 / 0.15) * (46.7 * 0.90 / 0.70))
    assert math.isclose(est, expected, rel_tol=1e-9)


def test_size_tier_baseline_inverts_matching_tier(tmp_path, default_hypothesis):
    root = tmp_path / "data"
    shutil.copytree(TINY_DIR, root)
    (root / "size_tiers.csv").write_text(
        "provider,date,min_params_b,max_params_b,kind,input_usd_per_mtok,output_usd_per_mtok,source\n"
        "HostA,2023-11-01,0,8,dense,0.15,0.15,synthetic\n"
        "HostA,2023-11-01,8.1,80,dense,1.0,1.0,synthetic\n"
        "HostA,2023-11-01,0,56,moe,0.5,0.5,synthetic\n",
        encoding="utf-8",
    )
    data = load_dataset(root)
    est = cal.size_tier_baseline(data, ["mid-70b", "small-7b", "moe-47b"])
    assert math.isclose(est["mid-70b"], math.sqrt(8.1 * 80))
    # A lower bound of 0 is taken as 0.5B.
    assert math.isclose(est["small-7b"], math.sqrt(0.5 * 8))
    # moe-47b is priced only at HostB, which publishes no tiers.
    assert "moe-47b" not in est


def _table(pits, truths, q05, q50, q95, families):
    return pd.DataFrame(
        {
            "family": families,
            "model": [f"m{i}" for i in range(len(pits))],
            "method": cal.VARIANT_LABELS["full"],
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
        families=["a", "b", "c", "c"],
    )
    m = cal.metrics(t).iloc[0]
    assert m["families"] == 3
    # b's truth (100) is outside [20, 80]; a and c (both models) are covered.
    assert m["families_covered_90"] == 2
    assert math.isclose(m["coverage_90_families"], 2 / 3)
    assert math.isclose(m["coverage_90_models"], 3 / 4)
    # |log10 error|: 0, log10(2), 0, 0 -> median 0.
    assert m["median_abs_log10_error"] == 0.0
    assert math.isclose(m["median_width_factor_90"], np.median([4.0, 4.0, 10.0, 5.0]))
    checks = {name: ok for name, ok, _ in cal.targets(m)}
    assert checks == {
        "90% intervals cover 85-95% of held-out families": False,
        "median abs log10 error <= 0.3": True,
        "90% interval no wider than x10": True,
    }
    assert "On 3 held-out model families" in cal.sentence(m)


def test_coverage_from_pit():
    pit = np.array([0.01, 0.05, 0.5, 0.96, 0.999])
    # Central 90%: [0.05, 0.95] holds 0.05 and 0.5; 0.01, 0.96 and 0.999 fall outside.
    assert cal.coverage(pit, 0.9) == 2 / 5
    assert cal.coverage(pit, 0.5) == 1 / 5


def test_sbc_uniformity_flags_skewed_ranks():
    rng = np.random.default_rng(3)
    uniform = rng.integers(0, cal.SBC_RANKS + 1, size=400)
    skewed = np.minimum(rng.integers(0, cal.SBC_RANKS + 1, size=400), 40)
    tests = cal.sbc_uniformity(pd.DataFrame({"simulation": range(400), "u": uniform, "s": skewed}))
    p = dict(zip(tests["quantity"], tests["p_value"], strict=True))
    # A uniform sample passes at 1% (fixed seed); ranks capped at 40 fail overwhelmingly.
    assert p["u"] > 0.01
    assert p["s"] < 1e-10


def test_outputs_written(tmp_path):
    t = _table(
        pits=[0.5, 0.3, 0.2],
        truths=[10.0, 100.0, 7.0],
        q05=[5.0, 50.0, 3.0],
        q50=[10.0, 90.0, 7.0],
        q95=[20.0, 200.0, 30.0],
        families=["a", "b", "c"],
    )
    base = t.assign(
        method="baseline: price ratio to a reference model",
        total_q05=np.nan,
        total_q95=np.nan,
        total_pit=np.nan,
    )
    table = pd.concat([t, base], ignore_index=True)
    ranks = pd.DataFrame({"simulation": range(20), "divergences": 0, "x": np.arange(20) * 5})
    cal.write_outputs(tmp_path, table, cal.metrics(table), (ranks, cal.sbc_uniformity(ranks)))
    for name in (
        "calibration.csv",
        "metrics.csv",
        "README.md",
        "calibration_pred_vs_true.png",
        "calibration_coverage.png",
        "calibration_error.png",
        "sbc_ranks.png",
        "sbc_tests.csv",
    ):
        assert (tmp_path / name).is_file(), name
    text = (tmp_path / "README.md").read_text()
    assert "On 3 held-out model families, 90% intervals covered" in text
    assert "## Simulation-based calibration" in text


@pytest.mark.slow
def test_calibrate_cli_end_to_end_and_resume(tmp_path):
    """One held-out refit and two SBC simulations on the tiny data (two cold compiles,
    about 70 s: slow, so the default run keeps its 5-minute budget)."""
    out = tmp_path / "cal"
    cmd = [
        sys.executable, "-m", "llmsize", "calibrate", "--data", str(TINY_DIR),
        "--hypothesis", str(DEFAULT_HYPOTHESIS), "--out", str(out), "--family", "mid",
        "--variant", "full", "--draws", "200", "--tune", "200", "--sbc", "2", "-q",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "On 1 held-out model families" in proc.stdout
    table = pd.read_csv(out / "calibration.csv")
    assert set(table.loc[table["variant"] == "full", "model"]) == {"mid-70b"}
    assert (out / "sbc_ranks.csv").is_file()
    # A rerun finds every fit on disk and refits nothing.
    written = {p: p.stat().st_mtime_ns for p in next(out.glob("fits-*")).iterdir()}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), check=False)
    assert proc.returncode == 0, proc.stderr
    assert {p: p.stat().st_mtime_ns for p in next(out.glob("fits-*")).iterdir()} == written
