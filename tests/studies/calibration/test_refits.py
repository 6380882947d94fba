"""Calibration runs: baselines, collection of stored fits, outputs, SBC, the command.

Hold-outs and metrics have their own tests in ``tests/studies/calibration``. The
refits themselves run only in the slow end-to-end tests; the fast ones replace the
Dask queue with fits made up from the truth, so everything around the sampler
(hold-outs, stored fits and their names, resume, tables, report, command line) runs
for real.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from llmsize.cli import cli
from llmsize.inputs.data import load_dataset
from llmsize.studies.calibration import baselines, refits, report, store
from llmsize.studies.calibration import holdouts as ho
from llmsize.studies.calibration import sbc as sbc_module
from llmsize.studies.calibration.metrics import class_metrics

from ...conftest import DEFAULT_HYPOTHESIS, TINY_DIR, subprocess_env
from .conftest import CAL_DIR

# --------------------------------------------------------------------------- baselines


def test_price_ratio_baseline_by_hand(tiny_data, tiny_design):
    # mid-70b at HostA (2023-12-01, $1.00 out): the only other known model there is
    # small-7b (7B, $0.15) -> 7 * 1.00 / 0.15 = 46.7B. At HostB (2024-03-01, $0.90 out)
    # moe-47b and small-7b tie on date; the first in epoch order (sorted by model name)
    # is moe-47b (46.7B total, $0.70) -> 46.7 * 0.90 / 0.70 = 60.0B. The estimate is
    # the geometric mean of the two.
    est = baselines.price_ratio_baseline(tiny_data, tiny_design, ["mid-70b"])["mid-70b"]
    expected = math.sqrt((7 * 1.00 / 0.15) * (46.7 * 0.90 / 0.70))
    assert math.isclose(est, expected, rel_tol=1e-9)


def test_price_ratio_baseline_sees_only_the_ladders_prices(cal_data, cal_design):
    ladder = next(h for h in ho.build_holdouts(cal_data, cal_design) if h.kind == "ladder")
    ep = ho.holdout_epochs(cal_data, cal_design, ladder)
    est = baselines.price_ratio_baseline(cal_data, cal_design, ["labm-22b", "labm-moe"], epochs=ep)
    # In the ladder both are priced at LabM only, where the one known model is the
    # anchor labm-7b (7B, $0.25 out): 7 * 0.90 / 0.25 and 7 * 6.00 / 0.25.
    assert est == pytest.approx({"labm-22b": 7 * 0.90 / 0.25, "labm-moe": 7 * 6.00 / 0.25})
    # With every price (its family hold-out), labm-22b's LabM reference is labm-moe,
    # nearest in date (141B, $6.00), and at HostA (2025-01-15, $0.40) labm-7b
    # (first in model order of three 2023-12-01 prices, 7B, $0.15).
    est = baselines.price_ratio_baseline(cal_data, cal_design, ["labm-22b"])["labm-22b"]
    assert est == pytest.approx(math.sqrt((141 * 0.90 / 6.00) * (7 * 0.40 / 0.15)))


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
    est = baselines.size_tier_baseline(data, ["mid-70b", "small-7b", "moe-47b"])
    assert math.isclose(est["mid-70b"], math.sqrt(8.1 * 80))
    # A lower bound of 0 is taken as 0.5B.
    assert math.isclose(est["small-7b"], math.sqrt(0.5 * 8))
    # moe-47b is priced only at HostB, which publishes no tiers.
    assert "moe-47b" not in est


# --------------------------------------------------------------------------- stored fits


def test_result_path_names_the_holdout_definition(tmp_path, cal_data, cal_design):
    hs = ho.build_holdouts(cal_data, cal_design)
    paths = {store.result_path(tmp_path, h, "full", "k") for h in hs}
    assert len(paths) == len(hs)
    h = hs[0]
    p = store.result_path(tmp_path, h, "full", "k")
    assert p.parent == tmp_path / "fits-k"
    assert p.name == f"{h.name}__full__{h.digest()[:10]}.json"
    # A changed definition is another file (so a resume refits); a changed split is not.
    other = dataclasses.replace(h, held_out=(*h.held_out, "x"))
    assert store.result_path(tmp_path, other, "full", "k") != p
    assert store.result_path(tmp_path, dataclasses.replace(h, split="x"), "full", "k") == p


def _fake_fit(data_dir, hyp_json, holdout_json, variant, settings):
    """What ``fit_holdout`` returns, made up: a x3 interval around twice the truth."""
    from llmsize.inputs.hypothesis import Hypothesis

    data = load_dataset(data_dir)
    h = ho.as_holdout(data, holdout_json)
    design = ho.holdout_design(data, Hypothesis.model_validate_json(hyp_json), h, variant)
    known = data.known_models.set_index("model")
    rows = []
    for m in (m for m in design.unknown if m in set(h.held_out)):
        row = {"holdout": h.name, "kind": h.kind, "variant": variant, "model": m, "divergences": 0}
        for q in ("total", "active"):
            truth = float(known.loc[m, f"{q}_params_b"])
            row[f"true_{q}_b"] = truth
            row.update({f"{q}_q05": truth / 1.5, f"{q}_q50": 2 * truth, f"{q}_q95": 6 * truth})
            row[f"{q}_pit"] = 0.1
        rows.append(row)
    return rows


def _fake_parallel(tasks, **_):
    for fn, args, path in tasks:
        if path.exists():
            continue
        assert fn in (refits.fit_holdout, sbc_module.sbc_batch)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_fake_fit(*args)), encoding="utf-8")


SETTINGS = {"draws": 10, "tune": 10, "chains": 1, "seed": 1, "target_accept": 0.8}


def test_run_calibration_collects_holdouts_splits_and_classes(
    tmp_path, monkeypatch, default_hypothesis
):
    monkeypatch.setattr(refits, "run_parallel", _fake_parallel)
    table, mets, sbc = refits.run_calibration(
        data_dir=CAL_DIR,
        hyp=default_hypothesis,
        out_dir=tmp_path,
        settings=SETTINGS,
        variants=["full"],
    )
    assert sbc is None
    full = table[table["variant"] == "full"]
    # Every hold-out of both kinds was fitted once and stored under its own name.
    assert len(list(tmp_path.glob("fits-*/*.json"))) == 8
    ladder = full[full["kind"] == "ladder"].set_index("model")
    assert set(ladder.index) == {"labm-22b", "labm-moe"}
    assert set(ladder["holdout"]) == {"ladder-LabM"}
    assert set(ladder["anchor"]) == {"labm-7b"}
    assert set(ladder["split"]) == {"score"}
    assert ladder.loc["labm-moe", ["architecture", "regime", "era", "family", "lab"]].tolist() == [
        "moe",
        "first-party",
        "2024",
        "labm-moe",
        "LabM",
    ]
    # Its family hold-out sees the reseller price too.
    fam = full[(full["kind"] == "family")].set_index(["holdout", "model"])
    assert fam.loc[("labm-moe", "labm-moe"), "regime"] == "reseller"
    assert fam.loc[("labm-7b+small", "small-7b"), "split"] == "score"
    assert fam.loc[("mid", "mid-70b"), "split"] == "choose"
    assert set(full["model"]) >= {"small-7b", "labm-7b", "mid-70b", "moe-47b", "big-175b"}
    # Baselines are scored on the ladder's own prices.
    base = table[(table["holdout"] == "ladder-LabM") & (table["variant"] == "baseline")]
    ratio = base[base["method"].str.contains("price ratio")].set_index("model")["total_q50"]
    assert ratio["labm-22b"] == pytest.approx(7 * 0.90 / 0.25)
    # Made-up intervals [truth / 1.5, 6 truth] always cover: coverage 100%, width x9.
    m = mets[mets["method"] == ho.VARIANT_LABELS["full"]].iloc[0]
    assert m["coverage_90_models"] == 1.0
    assert m["median_width_factor_90"] == pytest.approx(9.0)
    assert m["families"] == 8
    # Only the ladder, or only one family's hold-outs.
    table, _, _ = refits.run_calibration(
        data_dir=CAL_DIR,
        hyp=default_hypothesis,
        out_dir=tmp_path,
        settings=SETTINGS,
        variants=["full"],
        kinds=["ladder"],
    )
    assert set(table["holdout"]) == {"ladder-LabM"}
    table, _, _ = refits.run_calibration(
        data_dir=CAL_DIR,
        hyp=default_hypothesis,
        out_dir=tmp_path,
        settings=SETTINGS,
        variants=["full"],
        only=["labm-moe"],
    )
    assert set(table["holdout"]) == {"labm-moe", "ladder-LabM"}


def test_no_ladder_without_labs_is_an_input_error(tmp_path, monkeypatch, default_hypothesis):
    from llmsize.exceptions import DataError

    root = tmp_path / "data"
    shutil.copytree(CAL_DIR, root)
    (root / "labs.csv").unlink()
    monkeypatch.setattr(refits, "run_parallel", _fake_parallel)
    with pytest.raises(DataError, match="no hold-out of kind ladder"):
        refits.run_calibration(
            data_dir=root,
            hyp=default_hypothesis,
            out_dir=tmp_path / "cal",  # not the folder holding the data
            settings=SETTINGS,
            kinds=["ladder"],
        )


def test_calibrate_command_kinds_and_resume(tmp_path, monkeypatch):
    """The command on fits made up from the truth; the rerun uses the real Dask queue,
    which finds every fit on disk and starts nothing."""
    out = tmp_path / "cal"
    args = [
        "calibrate", "--data", str(CAL_DIR), "--hypothesis", str(DEFAULT_HYPOTHESIS),
        "--out", str(out), "--variant", "full", "--sbc", "0", "-q",
    ]  # fmt: skip
    real_parallel = refits.run_parallel
    monkeypatch.setattr(refits, "run_parallel", _fake_parallel)
    result = CliRunner().invoke(cli, [*args, "--kind", "ladder"])
    assert result.exit_code == 0, result.output
    assert "On 1 hold-out (2 held-out models scored)" in result.output
    assert "score split: 2 rows" in result.output
    assert "judged on the score split only" in result.output
    table = pd.read_csv(out / "calibration.csv")
    assert set(table["holdout"]) == {"ladder-LabM"}
    assert set(table["split"]) == {"score"}
    classes = pd.read_csv(out / "class_metrics.csv")
    assert {"split", "grouping", "class", "quantity", "coverage_90_lo"} <= set(classes.columns)
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "### Score split" in readme
    written = {p: p.stat().st_mtime_ns for p in out.glob("fits-*/*.json")}
    assert len(written) == 1

    monkeypatch.setattr(refits, "run_parallel", real_parallel)
    result = CliRunner().invoke(cli, [*args, "--kind", "ladder"])
    assert result.exit_code == 0, result.output
    assert {p: p.stat().st_mtime_ns for p in out.glob("fits-*/*.json")} == written

    result = CliRunner().invoke(cli, [*args, "--kind", "nope"])
    assert result.exit_code == 2
    assert "Invalid value for '--kind'" in result.output
    result = CliRunner().invoke(cli, [*args, "--family", "nope"])
    assert result.exit_code == 2
    assert "no such hold-out or family with prices: nope" in result.output


def test_calibrate_from_python_returns_its_tables(tmp_path, monkeypatch):
    """``llmsize.calibrate`` runs what the command runs (here on made-up fits) and
    hands back the tables it wrote, with the provenance a report checks."""
    import llmsize
    from llmsize.outputs.provenance import model_code_digest

    monkeypatch.setattr(refits, "run_parallel", _fake_parallel)
    out = tmp_path / "cal"
    got = llmsize.calibrate(
        DEFAULT_HYPOTHESIS, CAL_DIR, {"sampler.seed": 3}, out=out, kinds=["ladder"],
        variants=["full"], simulations=0, draws=10, tune=10, chains=1,
    )  # fmt: skip
    assert got.out_dir == out
    assert got.sbc is None
    assert set(got.table["holdout"]) == {"ladder-LabM"}
    written = pd.read_csv(out / "class_metrics.csv")
    assert len(got.classes) == len(written)
    np.testing.assert_allclose(got.classes["coverage_90"], written["coverage_90"], rtol=1e-3)
    assert list(got.metrics["method"]) == list(pd.read_csv(out / "metrics.csv")["method"])
    made = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert made["code_sha256"] == model_code_digest()
    with pytest.raises(llmsize.exceptions.LlmsizeError, match="no such hold-out"):
        llmsize.calibrate(DEFAULT_HYPOTHESIS, CAL_DIR, out=tmp_path / "x", families=["nope"])


# --------------------------------------------------------------------------- outputs


def test_sbc_uniformity_flags_skewed_ranks():
    rng = np.random.default_rng(3)
    uniform = rng.integers(0, sbc_module.SBC_RANKS + 1, size=400)
    skewed = np.minimum(rng.integers(0, sbc_module.SBC_RANKS + 1, size=400), 40)
    tests = sbc_module.sbc_uniformity(
        pd.DataFrame({"simulation": range(400), "u": uniform, "s": skewed})
    )
    p = dict(zip(tests["quantity"], tests["p_value"], strict=True))
    # A uniform sample passes at 1% (fixed seed); ranks capped at 40 fail overwhelmingly.
    assert p["u"] > 0.01
    assert p["s"] < 1e-10


def _scored_table():
    t = pd.DataFrame(
        {
            "holdout": ["a", "b", "ladder-X"],
            "kind": ["family", "family", "ladder"],
            "split": ["choose", "score", "score"],
            "anchor": ["", "", "x-7b"],
            "variant": "full",
            "model": ["m0", "m1", "m2"],
            "method": ho.VARIANT_LABELS["full"],
            "architecture": ["dense", "dense", "moe"],
            "regime": ["reseller", "reseller", "first-party"],
            "era": ["2023", "2024", "2024"],
            "true_total_b": [10.0, 100.0, 7.0],
            "total_q05": [5.0, 50.0, 3.0],
            "total_q50": [10.0, 90.0, 7.0],
            "total_q95": [20.0, 200.0, 30.0],
            "total_pit": [0.5, 0.3, 0.2],
            "true_active_b": [10.0, 100.0, 2.0],
            "active_q05": [5.0, 50.0, 1.0],
            "active_q50": [10.0, 90.0, 2.0],
            "active_q95": [20.0, 200.0, 4.0],
        }
    )
    base = t.assign(
        variant="baseline",
        method="baseline: price ratio to a reference model",
        total_q05=np.nan,
        total_q95=np.nan,
        total_pit=np.nan,
        active_q05=np.nan,
        active_q50=np.nan,
        active_q95=np.nan,
    )
    return pd.concat([t, base], ignore_index=True)


def test_outputs_written(tmp_path):
    table = _scored_table()
    ranks = pd.DataFrame({"simulation": range(20), "divergences": 0, "x": np.arange(20) * 5})
    report.write_outputs(
        tmp_path, table, refits.metrics(table), (ranks, sbc_module.sbc_uniformity(ranks))
    )
    for name in (
        "calibration.csv",
        "metrics.csv",
        "class_metrics.csv",
        "README.md",
        "calibration_pred_vs_true.png",
        "calibration_coverage.png",
        "calibration_error.png",
        "sbc_ranks.png",
        "sbc_tests.csv",
    ):
        assert (tmp_path / name).is_file(), name
    text = (tmp_path / "README.md").read_text()
    assert "On 3 hold-outs (3 held-out models scored), 90% intervals covered" in text
    assert "## Simulation-based calibration" in text
    assert "## By class" in text
    written = pd.read_csv(tmp_path / "calibration.csv")
    assert written["split"].tolist()[:3] == ["choose", "score", "score"]
    classes = pd.read_csv(tmp_path / "class_metrics.csv")
    assert len(classes) == len(class_metrics(table))


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
    assert "On 1 hold-out (1 held-out model scored)" in proc.stdout
    table = pd.read_csv(out / "calibration.csv")
    assert set(table.loc[table["variant"] == "full", "model"]) == {"mid-70b"}
    assert (out / "sbc_ranks.csv").is_file()
    # A rerun finds every fit on disk and refits nothing.
    written = {p: p.stat().st_mtime_ns for p in next(out.glob("fits-*")).iterdir()}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), check=False)
    assert proc.returncode == 0, proc.stderr
    assert {p: p.stat().st_mtime_ns for p in next(out.glob("fits-*")).iterdir()} == written


@pytest.mark.slow
def test_one_ladder_holdout_fit(cal_data, cal_design, default_hypothesis):
    """A real refit of the fixture's lab ladder, tiny sampler settings (a cold compile
    and sampling took about 140 s on 2 shared cores: slow)."""
    ladder = next(h for h in ho.build_holdouts(cal_data, cal_design) if h.kind == "ladder")
    settings = {
        "draws": 50,
        "tune": 50,
        "chains": 1,
        "seed": 1,
        "target_accept": 0.8,
        "adaptation": default_hypothesis.sampler.adaptation,
        "cores": 1,
        "prior_draws": 1,
    }
    rows = refits.fit_holdout(
        str(CAL_DIR), default_hypothesis.model_dump_json(), ladder.to_json(), "full", settings
    )
    assert {r["model"] for r in rows} == {"labm-22b", "labm-moe"}
    for r in rows:
        assert (r["holdout"], r["kind"]) == ("ladder-LabM", "ladder")
        assert 0 < r["total_q05"] <= r["total_q50"] <= r["total_q95"]
        assert r["active_q50"] <= r["total_q50"] * (1 + 1e-9)
