"""Grouped K-fold cross-validation on known sizes (``studies/compare/crossval.py``)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from llmsize.cli import EXIT_INPUT, cli
from llmsize.inputs.hypothesis import validate
from llmsize.studies.calibration.holdouts import family_holdouts
from llmsize.studies.compare import crossval as cv
from llmsize.studies.compare import runner as cmp

from ...conftest import DEFAULT_HYPOTHESIS, SEED, TINY_DIR
from .test_runner import _fake_fit


@pytest.mark.parametrize("at_sd", [0.0, 1.0, 2.5])
def test_kernel_density_at_the_truth_matches_the_normal_it_smooths(at_sd):
    """Draws of N(0.3, 0.2): the estimate is the normal convolved with the kernel,
    N(0.3, sqrt(0.2^2 + h^2)) with h Scott's bandwidth, up to Monte Carlo error."""
    rng = np.random.default_rng(SEED)
    mu, sd, n = 0.3, 0.2, 20_000
    draws = rng.normal(mu, sd, n)
    h = 1.06 * np.std(draws, ddof=1) * n ** (-0.2)
    s = math.hypot(sd, h)
    y = mu + at_sd * sd
    expected = -0.5 * ((y - mu) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
    assert cv.log_density_at(draws, y) == pytest.approx(expected, abs=0.03 + 0.02 * at_sd)


def test_kernel_density_far_in_the_tail_is_finite_and_ordered():
    """A truth many bandwidths away scores a finite, large negative number, lower
    the farther it is; a pinned quantity (no spread) stays finite too."""
    draws = np.random.default_rng(SEED).normal(1.0, 0.05, 4000)
    near, far = cv.log_density_at(draws, 1.5), cv.log_density_at(draws, 2.0)
    assert np.isfinite(far)
    assert far < near < -10
    assert np.isfinite(cv.log_density_at(np.full(100, 1.3), 1.3))


def test_folds_partition_the_families_of_known_size(bundled_data, bundled_design):
    groups = family_holdouts(bundled_data, bundled_design)
    parts = cv.folds(bundled_data, bundled_design, 5)
    assert len(parts) == 5
    held = [m for f in parts for m in f.held_out]
    # Every model of a group of same-size families in exactly one fold.
    assert sorted(held) == sorted(m for g in groups for m in g.held_out)
    assert len(held) == len(set(held))
    for g in groups:
        assert sum(set(g.held_out) <= set(f.held_out) for f in parts) == 1
    sizes = [len(f.held_out) for f in parts]
    assert max(sizes) - min(sizes) <= max(len(g.held_out) for g in groups)
    # Fixed by the data alone.
    assert parts == cv.folds(bundled_data, bundled_design, 5)
    with pytest.raises(ValueError, match="at least 2 folds"):
        cv.folds(bundled_data, bundled_design, 1)
    with pytest.raises(ValueError, match="fewer than"):
        cv.folds(bundled_data, bundled_design, len(groups) + 1)


def _pointwise(lpd: dict[str, np.ndarray], covered=True) -> pd.DataFrame:
    rows = []
    for name, values in lpd.items():
        for i, v in enumerate(values):
            rows.append(
                {
                    "hypothesis": name,
                    "fold": f"fold-{i % 2 + 1}-of-2",
                    "model": f"m{i:02d}",
                    "lpd_total": v,
                    "lpd_active": v,
                    "covered_total": covered,
                    "r_hat_total": 1.001,
                    "r_hat_active": 1.002,
                    "divergences": 0,
                }
            )
    return pd.DataFrame(rows)


def test_cv_table_pairs_the_models_and_weights_the_better_hypothesis():
    rng = np.random.default_rng(SEED)
    ref = rng.normal(-1.0, 0.5, 30)
    gap = rng.normal(-2.0, 0.4, 30)
    t = cv.cv_table(_pointwise({"ref": ref, "worse": ref + gap}), "ref").set_index("hypothesis")
    assert t.loc["ref", "elpd_cv"] == pytest.approx(ref.sum())
    assert t.loc["ref", "elpd_cv_diff"] == 0
    assert t.loc["worse", "elpd_cv_diff"] == pytest.approx(gap.sum())
    assert t.loc["worse", "elpd_cv_diff_se"] == pytest.approx(math.sqrt(30) * gap.std(ddof=1))
    assert t.loc["ref", "cv_weight"] > 0.99
    assert t["cv_weight"].sum() == pytest.approx(1.0)
    assert (t["cv_models"] == 30).all()
    assert (t["cv_coverage_90"] == 1.0).all()


def test_evidence_table_carries_the_cross_validation_and_says_where_it_is_missing():
    base = np.zeros(10)
    fits = [_fake_fit(n, base, np.zeros(10)) for n in ("ref", "struct", "struct_no_cv")]
    bridged = {
        "ref": cmp.BridgedEvidence(0.0, 0.0, 100.0, 100.0),
        "struct": "another model structure",
        "struct_no_cv": "another model structure",
    }
    rng = np.random.default_rng(SEED)
    ref = rng.normal(-1, 0.3, 12)
    pointwise = _pointwise({"ref": ref, "struct": ref - 1.0})
    pointwise.loc[pointwise["hypothesis"] == "struct", "r_hat_total"] = 1.2
    t = cmp.evidence_table(fits, "ref", None, bridged, pointwise).set_index("hypothesis")
    assert t.loc["struct", "elpd_cv_diff"] == pytest.approx(-12.0)
    assert "cross-validation fits: R-hat 1.200 > 1.01" in t.loc["struct", "notes"]
    assert "no evidence figure" not in t.loc["struct", "notes"]
    assert (
        "no evidence figure: cross-validation on known sizes not run"
        in t.loc["struct_no_cv", "notes"]
    )
    assert not np.isfinite(t.loc["struct_no_cv", "elpd_cv"])
    assert cmp.structural({"a": ("x", bridged["ref"]), "b": ("x", "another")}) == ["b"]


@pytest.mark.parametrize("folds", ["1", "5"])
def test_compare_refuses_folds_the_data_cannot_make(tmp_path, folds):
    """Tiny data has 4 groups of families of known size: 1 fold is no cross-validation
    and 5 is more folds than groups; both refused before any fit."""
    out = tmp_path / "cmp"
    res = CliRunner().invoke(
        cli,
        ["compare", str(DEFAULT_HYPOTHESIS),
         "--data", str(TINY_DIR), "--out", str(out), "--cv-folds", folds],
    )  # fmt: skip
    assert res.exit_code == EXIT_INPUT, res.output
    assert res.output.startswith("llmsize: error:")
    assert "--cv-folds" in res.output
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_cross_validation_scores_a_wrong_size_prior_far_below_the_default(
    tiny_data, default_hypothesis
):
    """A known answer: a hypothesis whose prior puts every model of unknown size at
    about 3 trillion parameters (log10 size ~ Normal(3.5, 0.05)) must predict the
    held-out known sizes of the tiny data (7B to 175B) far worse than the default,
    whose prior is wide: by tens of nats in all, and at every held-out model."""
    raw = default_hypothesis.to_dict()
    raw["name"] = "giant"
    raw["priors"]["log10_params_total_b"] = {"distribution": "Normal", "mu": 3.5, "sigma": 0.05}
    giant = validate(raw)
    pointwise = cv.cross_validate(
        tiny_data,
        [default_hypothesis, giant],
        k=2,
        settings={"draws": 300, "tune": 300, "chains": 2},
        workers=2,
    )
    lpd = pointwise.pivot_table(index="model", columns="hypothesis", values="lpd_total")
    assert set(lpd.index) == {"small-7b", "mid-70b", "moe-47b", "big-175b"} & set(lpd.index)
    assert len(lpd) >= 3
    assert (lpd["giant"] < lpd["default"] - 5).all()
    t = cv.cv_table(pointwise, "default").set_index("hypothesis")
    assert t.loc["giant", "elpd_cv_diff"] < -20
    assert t.loc["default", "cv_weight"] > 0.9
    assert t.loc["giant", "cv_coverage_90"] == 0.0
    assert t.loc["default", "cv_models"] == len(lpd)
