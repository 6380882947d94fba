"""The command line, in-process (click's CliRunner) and as ``python -m llmsize``.

The two real fits of the default run are the session fixtures
``tiny_infer_subprocess`` and ``tiny_infer_runner`` (conftest.py); every output
test reads them.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from importlib.metadata import entry_points, version

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import llmsize
from llmsize.cli import EXIT_DIAGNOSTICS, EXIT_INPUT, cli
from llmsize.inputs.data import data_digest, load_dataset
from llmsize.outputs.io import read_posterior

from .conftest import (
    DEFAULT_HYPOTHESIS,
    REPO_ROOT,
    SEED,
    TINY_ARGS,
    TINY_CHAINS,
    TINY_DIR,
    TINY_DRAWS,
    subprocess_env,
)

SUMMARY_COLUMNS = [
    "model",
    "provider",
    "date",
    "quantity",
    "mean",
    "sd",
    "q05",
    "q25",
    "q50",
    "q75",
    "q95",
    "r_hat",
    "ess_bulk",
]
SUMMARY_QUANTITIES = {
    "params_total_b",
    "params_active_b",
    "tokens_t",
    "p_bits_16",
    "p_bits_8",
    "p_bits_4",
}
GROUPS = {
    "posterior",
    "prior",
    "posterior_predictive",
    "observed_data",
    "sample_stats",
    "prior_predictive",
    "log_likelihood",
    "log_prior",
}
FIGURES = ("size_by_date.png", "cuts.png", "prior_posterior.png", "ppc.png")


def read_summary(out):
    with (out / "summary.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def snapshot(root):
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def run_module(*args, cwd=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "llmsize", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=subprocess_env(),
    )


# --- the real infer run --------------------------------------------------------------


def test_infer_subprocess_succeeds(tiny_infer_subprocess):
    proc, out = tiny_infer_subprocess
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert out.is_dir()
    # The staging folders beside the report are gone.
    assert [p.name for p in out.parent.iterdir()] == ["report"]


def test_quiet_prints_nothing_on_success(tiny_infer_subprocess):
    proc, _ = tiny_infer_subprocess
    assert proc.returncode == 0
    # The shared fit runs with -q ("Only errors"), and the tiny run is not --strict.
    assert proc.stderr == ""


def test_infer_writes_every_file(tiny_infer_subprocess):
    _, out = tiny_infer_subprocess
    names = {p.name for p in out.iterdir()}
    assert {"summary.csv", "posterior.nc", "README.md", "diagnostics.json", *FIGURES} <= names
    for fig in FIGURES:
        data = (out / fig).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", fig
        assert len(data) > 10_000, fig  # an empty 1-pixel figure would be ~100 B
    readme = (out / "README.md").read_text(encoding="utf-8")
    # The answer first: the question, a sentence with numbers, then the chart.
    assert readme.startswith("# How big are Closed models X and Y?\n\n**Answer:**")
    first = readme.split("\n## ")[0]
    assert re.search(r"closed-x on 2023-03-01 .*: [\d.]+B \[[\d.]+-[\d.]+\] total", first)
    assert "(size_by_date.png)" in first
    for fig in FIGURES:
        assert f"({fig})" in readme
    assert "closed-x" in readme
    assert "closed-y" in readme
    # The same report as one page, its figures embedded.
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    assert 'src="http' not in page
    # The family of the fixture's families.csv has its own page, linked from the index.
    assert 'href="family-closed.html"' in page
    fam = (out / "family-closed.md").read_text(encoding="utf-8")
    assert fam.startswith("# How big are Closed models X and Y?\n\n**Answer:**")
    assert "## Sampler diagnostics" in fam
    for text in ("(size-closed.png)", "(cuts-closed.png)", "20B (a rumour)", "10B active"):
        assert text in fam
    fam_page = (out / "family-closed.html").read_text(encoding="utf-8")
    assert fam_page.count('src="data:image/png;base64,') == 2
    assert 'href="index.html"' in fam_page


def test_decomposition_csv(tiny_infer_subprocess):
    """Every cut of the fixture's cuts.csv is split into five causes that multiply
    to the modelled change, and noise times modelled is the observed ratio."""
    _, out = tiny_infer_subprocess
    dec = pd.read_csv(out / "decomposition.csv")
    assert list(dict.fromkeys(dec["cut"])) == [
        "closed-x: 2023-03-01 to 2023-06-13",
        "closed-x (2023-06-13) to closed-y (2024-01-25)",
    ]
    for _, d in dec.groupby("cut"):
        d = d.set_index("part")
        five = d.loc[["model", "precision", "hardware", "serving", "margin"], "mean_log"].sum()
        assert five == pytest.approx(d.loc["modelled", "mean_log"], abs=5e-3)
        assert d.loc["modelled", "mean_log"] + d.loc["noise", "mean_log"] == pytest.approx(
            d.loc["observed", "mean_log"], abs=5e-3
        )
    # A cut of one model's price cannot be a smaller model or a lower markup.
    same = dec[dec["cut"].str.startswith("closed-x:")].set_index("part")
    assert same.loc["model", "mean_log"] == 0.0
    assert same.loc["margin", "mean_log"] == 0.0
    # The observed blended price of closed-x fell from 2 to 1.625.
    assert same.loc["observed", "q50"] == pytest.approx(1.625 / 2, rel=1e-3)


def test_summary_csv(tiny_infer_subprocess, tiny_data):
    _, out = tiny_infer_subprocess
    columns, rows = read_summary(out)
    # The documented columns, in this order (extra columns such as ess_tail may follow).
    assert [c for c in columns if c in SUMMARY_COLUMNS] == SUMMARY_COLUMNS
    assert columns[: len(SUMMARY_COLUMNS)] == SUMMARY_COLUMNS
    expected_epochs = {
        (r["model"], r["provider"], r["date"].isoformat())
        for _, r in tiny_data.prices.iterrows()
        if r["model"] in tiny_data.unknown_models
    }
    assert expected_epochs == {
        ("closed-x", "Vendor", "2023-03-01"),
        ("closed-x", "Vendor", "2023-06-13"),
        ("closed-y", "Vendor", "2024-01-25"),
    }
    have = {}
    for r in rows:
        have.setdefault((r["model"], r["provider"], r["date"]), {})[r["quantity"]] = r
    # Rows for every (unknown model, provider, date), and only for those.
    assert set(have) == expected_epochs
    for key, quantities in have.items():
        assert set(quantities) >= SUMMARY_QUANTITIES, key
        for q, r in quantities.items():
            v = {c: float(r[c]) for c in SUMMARY_COLUMNS[4:]}
            assert all(np.isfinite(list(v.values()))), (key, q)
            assert v["q05"] <= v["q25"] <= v["q50"] <= v["q75"] <= v["q95"], (key, q)
            assert v["sd"] >= 0
            assert v["ess_bulk"] > 0
            assert v["r_hat"] > 0.9
        # Precision probabilities sum to one (means written with 6 significant
        # figures: 3 roundings of at most 5e-7 each).
        total = sum(float(quantities[f"p_bits_{b}"]["mean"]) for b in (16, 8, 4))
        assert total == pytest.approx(1.0, abs=2e-6)
        assert float(quantities["params_active_b"]["mean"]) <= float(
            quantities["params_total_b"]["mean"]
        )
    # A model keeps one size at every date: closed-x's two rows are identical.
    a, b = have[("closed-x", "Vendor", "2023-03-01")], have[("closed-x", "Vendor", "2023-06-13")]
    for q in ("params_total_b", "params_active_b", "tokens_t"):
        assert a[q] | {"date": ""} == b[q] | {"date": ""}


def test_posterior_nc(tiny_infer_subprocess, default_hypothesis):
    _, out = tiny_infer_subprocess
    tree = read_posterior(out / "posterior.nc")
    assert {g.strip("/") for g in tree.groups} >= GROUPS
    post = tree["posterior"]
    assert post.sizes["chain"] == TINY_CHAINS
    assert post.sizes["draw"] == TINY_DRAWS
    assert list(post["unknown_model"].values) == ["closed-x", "closed-y"]
    hyp = json.loads(tree.attrs["hypothesis"])
    assert hyp == default_hypothesis.to_dict()
    assert tree.attrs["hypothesis_sha256"] == default_hypothesis.digest()
    assert tree.attrs["data_sha256"] == data_digest(TINY_DIR)
    assert tree.attrs["seed"] == str(SEED)
    # The observed data are the tiny fixture's prices.
    obs = np.sort(tree["observed_data"]["output_price"].values)
    # Stored as exp(log(price)): equal to the CSV up to float rounding.
    expected = np.sort(load_dataset(TINY_DIR).prices["output_usd_per_mtok"].astype(float))
    np.testing.assert_allclose(obs, expected, rtol=1e-12)


def test_provenance_names_versions_and_commit(tiny_infer_subprocess):
    """posterior.nc's attributes and diagnostics.json name the Python and package
    versions and, run from this clone, its git commit and whether the tree was dirty;
    summary.csv names none of them (it must stay byte-identical for a seed)."""
    from llmsize.outputs.provenance import PACKAGES, git_state, package_versions

    _, out = tiny_infer_subprocess
    tree = read_posterior(out / "posterior.nc")
    diag = json.loads((out / "diagnostics.json").read_text(encoding="utf-8"))
    keys = {"python_version"} | {f"{p.replace('-', '_')}_version" for p in PACKAGES}
    assert keys >= {"pymc_version", "pytensor_version", "numba_version", "nutpie_version"}
    assert keys >= {"arviz_version", "arviz_stats_version", "numpy_version"}
    assert keys >= {"pandas_version", "xarray_version"}
    versions = package_versions()
    for key in keys:
        assert tree.attrs[key] == diag[key] == versions[key], key
    git = git_state()
    if git:  # the fit ran from this clone (src/ on the path)
        assert tree.attrs["git_commit"] == diag["git_commit"] == git["git_commit"]
        assert tree.attrs["git_dirty"] == diag["git_dirty"]
        assert diag["git_dirty"] in {"true", "false"}
    summary = (out / "summary.csv").read_text(encoding="utf-8")
    assert "git" not in summary
    assert "version" not in summary


def test_pointwise_log_likelihood_and_prior_sensitivity(tiny_infer_subprocess):
    _, out = tiny_infer_subprocess
    tree = read_posterior(out / "posterior.nc")
    ll = tree["log_likelihood"]
    # One term per serving epoch (prices, speeds, TTFTs) and per MMLU score; the
    # deterministics behind them are moved out of the posterior.
    assert ll["serving"].sizes["epoch"] == tree["observed_data"].sizes["epoch"]
    assert "mmlu" in ll
    assert "loglik_serving" not in tree["posterior"]
    assert "log10_params_total_b" in tree["log_prior"]
    # Every prior a hypothesis file sets, also one the model samples through
    # another variable (the input markup mean, model._markups), at its own value.
    lp = tree["log_prior"]
    assert {"log_markup_out_mu", "log_markup_in_mu", "provider_sigma", "mfu_prefill"} <= set(lp)
    prior = json.loads((out / "hypothesis.json").read_text(encoding="utf-8"))["priors"]
    mu, sigma = prior["log_markup_in_mu"]["mu"], prior["log_markup_in_mu"]["sigma"]
    x = tree["posterior"]["log_markup_in_mu"].values
    by_hand = -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(lp["log_markup_in_mu"].values, by_hand, atol=1e-7)
    with (out / "psense.csv").open(encoding="utf-8") as f:
        sens = list(csv.DictReader(f))
    assert {(r["quantity"], r["model"]) for r in sens} == {
        (q, m)
        for q in ("params_total_b", "params_active_b", "tokens_t")
        for m in ("closed-x", "closed-y")
    }
    assert {r["diagnosis"] for r in sens} <= {"ok", "prior-driven", "prior-data conflict"}
    assert "## Prior sensitivity" in (out / "README.md").read_text(encoding="utf-8")


def test_summary_agrees_with_posterior(tiny_infer_subprocess):
    _, out = tiny_infer_subprocess
    post = read_posterior(out / "posterior.nc")["posterior"]
    _, rows = read_summary(out)
    for r in rows:
        if r["quantity"] != "params_total_b":
            continue
        draws = post["params_total_b"].sel(unknown_model=r["model"]).values.reshape(-1)
        # summary.csv keeps 6 significant figures.
        assert float(r["q50"]) == pytest.approx(np.median(draws), rel=1e-5)
        assert float(r["mean"]) == pytest.approx(draws.mean(), rel=1e-5)


def test_worker_statistics_match_the_posterior(tiny_infer_subprocess):
    """R-hat and ESS of every parameter and the prior sensitivity come from the
    worker process (pipeline.report_worker); computed here from the written
    posterior, they must be the same."""
    from llmsize.outputs.summary import (
        parameter_diagnostics,
        parameter_draws,
        psense_of_groups,
        sensitivity_groups,
    )

    _, out = tiny_infer_subprocess
    tree = read_posterior(out / "posterior.nc")
    diag = json.loads((out / "diagnostics.json").read_text(encoding="utf-8"))
    max_r, min_e = parameter_diagnostics(parameter_draws(tree))
    assert diag["all_max_r_hat"] == pytest.approx(max_r, rel=1e-12)
    assert diag["all_min_ess_bulk"] == pytest.approx(min_e, rel=1e-12)
    written = pd.read_csv(out / "psense.csv")
    again = psense_of_groups(sensitivity_groups(tree))
    np.testing.assert_allclose(written["prior"], again["prior"], rtol=1e-3)
    np.testing.assert_allclose(written["likelihood"], again["likelihood"], rtol=1e-3)
    assert list(written["driving_prior"]) == list(again["driving_prior"])


def test_strict_exit_code_matches_diagnostics_and_same_seed_same_summary(
    tiny_infer_runner, tiny_infer_subprocess
):
    """The in-process ``--strict`` run: its exit code follows its diagnostics, and its
    summary equals the subprocess run's (one test, so that the in-process fit is made
    once even when the tests run on two workers)."""
    result, out = tiny_infer_runner
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    diag = json.loads((out / "diagnostics.json").read_text(encoding="utf-8"))
    assert isinstance(diag["passed"], bool)
    # passed <=> no divergences, R-hat <= 1.01 and bulk ESS >= 400 on summary.csv quantities.
    assert diag["passed"] == (
        diag["divergences"] == 0 and diag["max_r_hat"] <= 1.01 and diag["min_ess_bulk"] >= 400
    )
    if diag["passed"]:
        assert result.exit_code == 0
        assert diag["failures"] == []
    else:
        assert result.exit_code == EXIT_DIAGNOSTICS
        assert "llmsize: diagnostics failed" in result.stderr
        assert diag["failures"]
    # The report is written either way.
    assert (out / "summary.csv").is_file()
    # 2 chains x 100 draws gives at most ~200 effective draws, below the 400 the
    # check asks for: with these tiny settings the check must fail.
    assert not diag["passed"]
    assert result.exit_code == EXIT_DIAGNOSTICS
    # Same data, hypothesis, settings and seed, in-process and in a subprocess:
    # the documented reproducibility gives byte-identical summaries.
    _, out_b = tiny_infer_subprocess
    assert (out / "summary.csv").read_bytes() == (out_b / "summary.csv").read_bytes()


# --- bad input ---------------------------------------------------------------------------


@pytest.fixture
def bad_data_dir(tmp_path):
    dest = tmp_path / "bad_data"
    shutil.copytree(TINY_DIR, dest)
    path = dest / "prices.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace("closed-y,Vendor,2024-01-25", "closed-y,Vendor,2024-25-01"), encoding="utf-8"
    )
    return dest


@pytest.fixture
def bad_hypothesis(hypothesis_dir):
    return hypothesis_dir / "wrong_unknown_distribution.toml"


@pytest.fixture
def existing_report(tmp_path):
    out = tmp_path / "out" / "report"
    out.mkdir(parents=True)
    (out / "summary.csv").write_bytes(b"model,quantity\nold,1\n")
    (out / "README.md").write_bytes("previous report\u2014keep me\n".encode())
    return out


def bad_args(case, bad_data_dir, bad_hypothesis):
    if case == "data":
        return ["--data", bad_data_dir, "--hypothesis", DEFAULT_HYPOTHESIS], "prices.csv"
    return ["--data", TINY_DIR, "--hypothesis", bad_hypothesis], bad_hypothesis.name


def check_one_line_error(stderr, name):
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("llmsize: error:"), stderr
    assert name in lines[0]
    assert "Traceback" not in stderr


@pytest.mark.parametrize("case", ["data", "hypothesis"])
def test_bad_input_runner(case, bad_data_dir, bad_hypothesis, existing_report):
    args, name = bad_args(case, bad_data_dir, bad_hypothesis)
    before = snapshot(existing_report)
    result = CliRunner().invoke(
        cli,
        ["infer", *map(str, args), "--draws", "10", "--tune", "10", "--out", str(existing_report)],
    )
    assert result.exit_code == EXIT_INPUT, result.output
    check_one_line_error(result.stderr, name)
    assert result.stdout == ""
    assert snapshot(existing_report) == before
    assert [p.name for p in existing_report.parent.iterdir()] == ["report"]


@pytest.mark.parametrize("case", ["data", "hypothesis"])
def test_bad_input_subprocess(case, bad_data_dir, bad_hypothesis, existing_report):
    args, name = bad_args(case, bad_data_dir, bad_hypothesis)
    before = snapshot(existing_report)
    proc = run_module("infer", *args, "--out", existing_report, timeout=300)
    assert proc.returncode == EXIT_INPUT, proc.stderr
    check_one_line_error(proc.stderr, name)
    assert snapshot(existing_report) == before
    assert [p.name for p in existing_report.parent.iterdir()] == ["report"]


def test_bad_data_error_names_row_and_field(bad_data_dir):
    result = CliRunner().invoke(cli, ["validate", "--data", str(bad_data_dir)])
    assert result.exit_code == EXIT_INPUT
    assert "prices.csv, row 8, field 'date'" in result.stderr


def test_missing_hypothesis_file(tmp_path):
    result = CliRunner().invoke(
        cli, ["validate", "--data", str(TINY_DIR), "--hypothesis", str(tmp_path / "nope.toml")]
    )
    assert result.exit_code == EXIT_INPUT
    check_one_line_error(result.stderr, "nope.toml")


def test_bad_option_is_a_usage_error():
    result = CliRunner().invoke(cli, ["infer", "--draws", "0"])
    assert result.exit_code == 2  # click's usage error
    assert "Traceback" not in result.output


# --- validate, version, help -----------------------------------------------------------------


def test_validate_tiny_runner():
    result = CliRunner().invoke(
        cli, ["validate", "--data", str(TINY_DIR), "--hypothesis", str(DEFAULT_HYPOTHESIS)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        "ok: hypothesis 'default'; 9 serving epochs, 2 models of unknown size: closed-x, closed-y"
    )


def test_validate_bundled_subprocess_with_defaults():
    # From the repository root, the defaults are data/ and models/default.toml.
    proc = run_module("validate", cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("ok: hypothesis 'default';")
    assert "gpt-3.5-turbo-0301" in first
    assert any(line.startswith("note: ") for line in proc.stdout.splitlines())


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"llmsize, version {llmsize.__version__}"
    assert llmsize.__version__ == version("llmsize")
    proc = run_module("--version", timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"llmsize, version {llmsize.__version__}"


@pytest.mark.parametrize("code", [None, 0, 2, 3, 130, 258, -1, True, "llmsize: interrupted"])
def test_exit_status_is_the_one_python_gives_the_same_system_exit(code, capsys):
    """The console script ends with ``os._exit(exit_status(code))`` (``cli.run``):
    the status must be the one a normal exit with ``SystemExit(code)`` gives."""
    from llmsize.cli import exit_status

    python = subprocess.run(
        [sys.executable, "-c", f"raise SystemExit({code!r})"], capture_output=True, text=True
    )
    assert exit_status(code) == python.returncode
    assert capsys.readouterr().err == python.stderr


def test_the_console_script_is_the_entry_point_that_exits_at_once():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "llmsize"]
    assert script.value == "llmsize.cli:run"


def test_help():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("infer", "validate"):
        assert command in result.stdout
    result = CliRunner().invoke(cli, ["infer", "--help"])
    assert result.exit_code == 0
    assert "--strict" in result.stdout


def test_tiny_args_are_what_the_fits_used(tiny_infer_subprocess):
    # Guard: the shared fits use the tiny fixture and fixed seed.
    assert TINY_ARGS[TINY_ARGS.index("--data") + 1] == str(TINY_DIR)
    assert TINY_ARGS[TINY_ARGS.index("--seed") + 1] == str(SEED)
    _, out = tiny_infer_subprocess
    diag = json.loads((out / "diagnostics.json").read_text(encoding="utf-8"))
    assert diag["seed"] == str(SEED)
    assert json.loads(diag["sampler_settings"])["draws"] == TINY_DRAWS


# --- interruption --------------------------------------------------------------------------


# Each signal and each phase runs by default (SIGTERM while compiling, SIGINT while
# the chains run); the other two pairings take the same paths and are slow tests.
_COMPILING = ([], "sampling", 0.0)
# While the chains run (far more draws than the test waits for): nutpie answers an
# interrupt by returning the draws made so far, and the run must stop instead of
# reporting a truncated fit. The model is loaded from a copy of the shared fit's
# cache, so no compile is waited for.
_CHAINS_RUNNING = (["--draws", "500000"], "compiled model", 2.0)


@pytest.mark.parametrize(
    ("signame", "extra_args", "after", "delay"),
    [
        pytest.param("SIGTERM", *_COMPILING, id="compiling-SIGTERM"),
        pytest.param("SIGINT", *_CHAINS_RUNNING, id="chains running-SIGINT"),
        pytest.param("SIGINT", *_COMPILING, id="compiling-SIGINT", marks=pytest.mark.slow),
        pytest.param(
            "SIGTERM", *_CHAINS_RUNNING, id="chains running-SIGTERM", marks=pytest.mark.slow
        ),
    ],
)
def test_signal_during_a_run_keeps_the_previous_report(
    tmp_path_factory, signame, extra_args, after, delay, request
):
    import shutil
    import signal
    import time

    tmp_path = tmp_path_factory.mktemp("signal")
    cache_dir = tmp_path_factory.mktemp("signal-cache") / "cache"
    if extra_args:
        request.getfixturevalue("tiny_infer_subprocess")  # fills the cache copied here
        shutil.copytree(request.getfixturevalue("tiny_subprocess_cache"), cache_dir)
    else:
        cache_dir.mkdir()
    out = tmp_path / "report"
    out.mkdir()
    (out / "summary.csv").write_text("the previous report\n", encoding="utf-8")
    before = snapshot(out)
    with subprocess.Popen(
        [sys.executable, "-m", "llmsize", "infer", *TINY_ARGS, *extra_args, "--out", str(out)],
        stderr=subprocess.PIPE,
        text=True,
        env={**subprocess_env(), "LLMSIZE_CACHE_DIR": str(cache_dir)},
    ) as proc:
        try:
            # Wait for the log line of the phase to interrupt (the handlers are installed by then).
            deadline = time.monotonic() + 300
            for line in proc.stderr:
                if after in line or time.monotonic() > deadline:
                    break
            time.sleep(delay)
            start = time.monotonic()
            proc.send_signal(getattr(signal, signame))
            rest = proc.stderr.read()
            assert proc.wait(timeout=120) == 130
            assert time.monotonic() - start < 60
            assert "interrupted; the previous report is unchanged" in rest
            assert "Traceback" not in rest
            assert snapshot(out) == before
        finally:
            if proc.poll() is None:  # a failed check: stop the run before closing
                proc.kill()
    # No staging folder is left beside the report.
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_progress_bar_only_on_a_terminal(monkeypatch):
    from llmsize import cli as cli_module

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert cli_module._show_progress(quiet=False)
    assert not cli_module._show_progress(quiet=True)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not cli_module._show_progress(quiet=False)


def test_cores_reach_the_sampler(monkeypatch, tmp_path):
    # --cores is passed to nutpie as the number of threads; nothing is sampled here:
    # the sampler is stopped at its call with the settings it was given.
    from llmsize import pipeline
    from llmsize.inference import sampling

    seen = {}

    class Stop(Exception):
        pass

    def fake_sample(model, settings, *, progress=False):
        seen.update(cores=settings.cores, progress=progress)
        raise Stop

    monkeypatch.setattr(sampling, "sample_posterior", fake_sample)
    with pytest.raises(Stop):
        pipeline.run_inference(
            data_dir=TINY_DIR,
            hypothesis_path=DEFAULT_HYPOTHESIS,
            out_dir=tmp_path / "out",
            cores=1,
            progress=True,
        )
    assert seen == {"cores": 1, "progress": True}
