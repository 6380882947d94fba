"""Slow checks: parameter recovery on simulated data, and the full default run.

The two fits are marked slow: run them with ``pytest --run-slow`` (or ``--only-slow``).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import arviz as az
import numpy as np
import pytest
from scipy.stats import binom

from llmsize.exceptions import DataError
from llmsize.inference.model import build_model
from llmsize.inference.sampling import SampleSettings, fit, sample_posterior, sample_prior
from llmsize.inputs.data import load_dataset
from llmsize.inputs.hypothesis import load_hypothesis
from llmsize.outputs.summary import ESS_BULK_MIN, RHAT_MAX
from llmsize.physics.design import build_design
from llmsize.pipeline import run_inference

from ..conftest import DATA_DIR, DEFAULT_HYPOTHESIS, HYPOTHESIS_FIXTURES, SEED, TINY_DIR

N_DATASETS = 8
MIN_COVERED = 5
#: Prior predictive draws to choose the datasets from (see below).
PRIOR_POOL = 40


def _rewrite(path: Path, rows_values: dict[int, dict[str, float]]) -> None:
    """Replace cells of data rows (1-based, header not counted) of a CSV file."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    for row, values in rows_values.items():
        for column, value in values.items():
            rows[row][header.index(column)] = repr(float(value))
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def write_simulated(dest: Path, design, pp, i: int, source: Path = TINY_DIR) -> None:
    """The dataset ``source`` with its observations replaced by prior predictive draw ``i``."""
    shutil.copytree(source, dest)
    out = pp["output_price"].values.reshape(-1, design.n_epochs)[i]
    inp = pp["input_price"].values.reshape(-1, design.n_epochs)[i]
    _rewrite(
        dest / "prices.csv",
        {
            int(r["_row"]): {"output_usd_per_mtok": out[e], "input_usd_per_mtok": inp[e]}
            for e, (_, r) in enumerate(design.epochs.iterrows())
        },
    )
    # In the tiny fixture every speed row has both measurements and matches an
    # epoch, and every MMLU row is used, so observation j is data row j + 1.
    speed = pp["output_speed"].values.reshape(-1, len(design.log_speed))[i]
    ttft = pp["ttft"].values.reshape(-1, len(design.log_ttft))[i]
    _rewrite(
        dest / "speed.csv",
        {j + 1: {"output_tokens_per_s": speed[j], "ttft_s": ttft[j]} for j in range(len(speed))},
    )
    mmlu = pp["mmlu"].values.reshape(-1, len(design.mmlu_score))[i]
    _rewrite(dest / "quality.csv", {j + 1: {"score_pct": mmlu[j]} for j in range(len(mmlu))})


#: A sparse mixture of experts of unknown size, priced only at the two resellers of the
#: tiny fixture (no speed, no MMLU): its total is what the recovery must not lose.
SPARSE_MOE_PRICES = [
    "sparse-moe,HostA,2025-03-01,0.30,1.20,,synthetic test fixture,",
    "sparse-moe,HostB,2025-06-01,0.25,1.00,,synthetic test fixture,",
]
SPARSE_MOE_FAMILY = "sparse,A sparse mixture of experts,sparse-moe,synthetic test fixture,"
SPARSE_MOE_HYPOTHESIS = HYPOTHESIS_FIXTURES / "recovery_sparse_moe.toml"


def tiny_with_sparse_moe(dest: Path) -> Path:
    """The tiny fixture plus a reseller-priced sparse MoE model of unknown size."""
    shutil.copytree(TINY_DIR, dest)
    for name, rows in (("prices.csv", SPARSE_MOE_PRICES), ("families.csv", [SPARSE_MOE_FAMILY])):
        with (dest / name).open("a", encoding="utf-8") as handle:
            handle.write("".join(f"{row}\n" for row in rows))
    return dest


def test_simulated_dataset_mapping(tiny_data, tiny_design):
    # The row-order assumption of write_simulated holds for the fixture.
    assert len(tiny_design.log_speed) == len(tiny_design.log_ttft) == len(tiny_data.speed)
    assert len(tiny_design.mmlu_score) == len(tiny_data.quality)
    np.testing.assert_allclose(
        np.exp(tiny_design.log_speed), tiny_data.speed["output_tokens_per_s"]
    )
    np.testing.assert_allclose(tiny_design.mmlu_score, tiny_data.quality["score_pct"])


def test_sparse_moe_fixture_maps(tmp_path):
    # The sparse-MoE case adds one unknown model with two reseller prices and
    # keeps the tiny fixture's speed and MMLU rows (write_simulated's mapping).
    data = load_dataset(tiny_with_sparse_moe(tmp_path / "d"))
    hyp = load_hypothesis(SPARSE_MOE_HYPOTHESIS)
    design = build_design(data, hyp)
    assert "sparse-moe" in design.unknown
    assert not data.is_first_party("sparse-moe", "HostA")
    assert hyp.prior_for("active_fraction", "sparse-moe").beta == 30.0
    assert len(design.log_speed) == len(data.speed)
    assert len(design.mmlu_score) == len(data.quality)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["first_party_ladder", "sparse_moe"])
def test_parameter_recovery(case, tmp_path, default_hypothesis, record_property):
    """90% intervals of total and active size cover the simulated truth.

    ``first_party_ladder``: the tiny fixture under the default hypothesis. Its
    closed-x and closed-y are priced only at the lab that made them (Vendor),
    whose one model of known size is big-175b: the davinci situation.
    ``sparse_moe``: the same plus ``sparse-moe``, a reseller-priced model whose
    prior active fraction is Beta(2, 30) (tests/fixtures/hypotheses/
    recovery_sparse_moe.toml): prices pin its active size, the total must
    still come out right.
    """
    if case == "sparse_moe":
        source = tiny_with_sparse_moe(tmp_path / "source")
        hyp = load_hypothesis(SPARSE_MOE_HYPOTHESIS)
    else:
        source, hyp = TINY_DIR, default_hypothesis
    base_design = build_design(load_dataset(source), hyp)
    prior = sample_prior(
        base_design,
        hyp,
        SampleSettings(draws=1, tune=0, chains=1, seed=SEED, prior_draws=PRIOR_POOL),
    )
    truth = {
        q: prior["prior"][f"log10_params_{q}_b"].values.reshape(PRIOR_POOL, -1)
        if q == "total"
        else np.log10(prior["prior"]["params_active_b"].values.reshape(PRIOR_POOL, -1))
        for q in ("total", "active")
    }
    pp = prior["prior_predictive"]

    # Take the first N_DATASETS draws whose simulated data pass the data checks
    # (an MMLU score drawn above 100 cannot be written). The selection depends on
    # the data alone, so it leaves posterior calibration intact: coverage is
    # conditional on the data.
    covered = {(m, q): [] for m in base_design.unknown for q in truth}
    used = 0
    for i in range(PRIOR_POOL):
        if used == N_DATASETS:
            break
        root = tmp_path / f"sim{i}"
        write_simulated(root, base_design, pp, i, source=source)
        try:
            data = load_dataset(root)
        except DataError:
            continue
        design = build_design(data, hyp)
        assert design.unknown == base_design.unknown
        np.testing.assert_allclose(
            np.exp(design.log_price_out), pp["output_price"].values.reshape(PRIOR_POOL, -1)[i]
        )
        tree = fit(
            design,
            hyp,
            SampleSettings(draws=500, tune=500, chains=2, seed=SEED + i, prior_draws=10),
        )
        post = tree["posterior"]
        for k, m in enumerate(design.unknown):
            for q in truth:
                draws = np.log10(post[f"params_{q}_b"].sel(unknown_model=m).values.reshape(-1))
                lo, hi = np.quantile(draws, [0.05, 0.95])
                covered[m, q].append(bool(lo <= truth[q][i, k] <= hi))
        used += 1
    assert used == N_DATASETS, f"only {used} of {PRIOR_POOL} prior draws gave valid data"

    # A calibrated 90% interval covers the truth with probability 0.9, so the
    # number covered out of 8 is Binomial(8, 0.9): P(X <= 4) = 0.005 (computed
    # below). Requiring >= 5/8 per unknown model and size fails a calibrated
    # model about 2-3% of the time over the four to six checks (and the seeds
    # are fixed, so the outcome is reproducible), while an off-by-a-unit cost
    # model, a wrong index mapping, or a total that follows the wrong prior
    # covers the truth almost never.
    record_property("coverage", {f"{m} {q}": f"{sum(h)}/{len(h)}" for (m, q), h in covered.items()})
    p_false_alarm = binom.cdf(MIN_COVERED - 1, N_DATASETS, 0.9)
    assert p_false_alarm < 0.01
    for (m, q), hits in covered.items():
        assert sum(hits) >= MIN_COVERED, (
            f"{m} ({q} size): 90% interval covered the truth {sum(hits)}/8: {hits}"
        )


@pytest.mark.slow
def test_default_run_on_bundled_data_converges(tmp_path):
    """The default inference (default settings) on data/ passes every diagnostic."""
    out = tmp_path / "report"
    result = run_inference(data_dir=DATA_DIR, hypothesis_path=DEFAULT_HYPOTHESIS, out_dir=out)
    diag = json.loads((out / "diagnostics.json").read_text(encoding="utf-8"))
    assert diag["divergences"] == 0
    with (out / "summary.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    r_hat = np.array([float(r["r_hat"]) for r in rows])
    ess = np.array([float(r["ess_bulk"]) for r in rows])
    worst_r = rows[int(r_hat.argmax())]
    worst_e = rows[int(ess.argmin())]
    assert r_hat.max() <= RHAT_MAX == 1.01, f"R-hat {r_hat.max():.4f}: {worst_r}"
    assert ess.min() >= ESS_BULK_MIN == 400, f"bulk ESS {ess.min():.0f}: {worst_e}"
    assert result.diagnostics.passed
    assert diag["passed"] is True


#: A start in the second mode of the default posterior on the bundled data: a decode
#: batch of about 3 sequences, speeds below the roofline, lower memory-bandwidth use.
LOW_BATCH_START = {"log_batch_mu": 0.8, "speed_log_bias": -0.4, "mbu": 0.73}


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason=(
        "the default posterior on data/ has regions the support-point start never reaches: "
        "its chains settle at a batch of about 500 (log_batch_mu 6.2, mean log density "
        "about -2686), chains started at LOW_BATCH_START at a batch of about 3 with prices "
        "under cost (log_batch_mu 0.6, log density -2603 to -2657); README, 'The posterior "
        "has regions the report's chains never reach'"
    ),
)
def test_chains_from_another_start_reach_the_reported_mode():
    """Chains started in another region of the default posterior end where the report's
    chains do: no mode that the support-point start never visits.

    Known to fail (README, *The posterior has regions the report's chains never reach*):
    this test turns into an unexpected pass, and so into a failure, when the model or
    the sampler no longer leaves that region unvisited.
    """
    hyp = load_hypothesis(DEFAULT_HYPOTHESIS)
    design = build_design(load_dataset(DATA_DIR), hyp)
    settings = SampleSettings(draws=300, tune=300, chains=4, seed=SEED)
    model = build_model(design, hyp)
    for rv in model.free_RVs:
        if rv.name in LOW_BATCH_START:
            model.set_initval(rv, LOW_BATCH_START[rv.name])
    trace = sample_posterior(model, settings)
    logp = trace["sample_stats"]["logp"].mean("draw").values
    batch = trace["posterior"]["log_batch_mu"]
    assert float(np.ptp(logp)) < 10.0, f"chains' mean log density {np.round(logp, 1)}"
    assert float(az.rhat(batch.to_dataset())["log_batch_mu"]) < 1.05
