"""The Python API (``llmsize.infer``, ``load``, ``report``) and ``llmsize report``.

A report re-rendered from a run's ``posterior.nc`` must be that run's report, byte
for byte, without sampling: the check reads the session's real fit
(``tiny_infer_subprocess``, conftest.py).
"""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr
from click.testing import CliRunner

import llmsize
from llmsize.cli import EXIT_INPUT, cli
from llmsize.exceptions import LlmsizeError
from llmsize.outputs.io import read_posterior, write_posterior

from .conftest import (
    DATA_DIR,
    DEFAULT_HYPOTHESIS,
    REPO_ROOT,
    SEED,
    TINY_CHAINS,
    TINY_DIR,
    TINY_DRAWS,
    TINY_TUNE,
    subprocess_env,
)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _one_error_line(result) -> str:
    assert result.exit_code == EXIT_INPUT, (result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("llmsize: error: "), lines
    assert "Traceback" not in result.output
    return lines[0]


def test_import_is_light_and_exports_the_api():
    """``import llmsize`` names the API and imports neither PyMC nor matplotlib."""
    code = (
        "import sys, llmsize; "
        "print(sorted(llmsize.__all__)); "
        "print([m for m in ('pymc', 'pytensor', 'matplotlib', 'xarray') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env=subprocess_env(),
    ).stdout.splitlines()  # fmt: skip
    assert out == ["['__version__', 'calibrate', 'compare', 'infer', 'load', 'report']", "[]"]
    for name in ("calibrate", "compare", "infer", "load", "report"):
        assert callable(getattr(llmsize, name)), name


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, []),
        ({"sampler.draws": 100}, ["sampler.draws=100"]),
        (
            {"mbu.alpha": 4.5, "sampler.adaptation": "x"},
            ["mbu.alpha=4.5", 'sampler.adaptation="x"'],
        ),
        ({"flag": True}, ["flag=true"]),
        (["sampler.draws=100"], ["sampler.draws=100"]),
        ("sampler.draws=100", ["sampler.draws=100"]),
    ],
)
def test_overrides_as_set_takes_them(given, expected):
    assert llmsize._override_list(given) == expected


def test_report_reproduces_the_runs_pages_byte_for_byte(tiny_infer_subprocess, tmp_path):
    """``llmsize report <out>/posterior.nc --out DIR`` writes the run's own report: every
    file (pages, figures, tables, the draws) is equal, and nothing is sampled."""
    proc, out = tiny_infer_subprocess
    assert proc.returncode == 0, proc.stderr
    again = tmp_path / "again"
    done = subprocess.run(
        [sys.executable, "-m", "llmsize", "report", str(out / "posterior.nc"), "--out",
         str(again)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=subprocess_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Sampling" not in done.stderr
    original, rendered = _files(out), _files(again)
    assert set(rendered) == set(original)
    for name in ("README.md", "index.html", "summary.csv", "diagnostics.json"):
        assert name in rendered
    differ = sorted(n for n in original if original[n] != rendered[n])
    assert differ == []


def test_load_and_report_from_python(tiny_infer_subprocess, tmp_path):
    """``llmsize.load`` gives the run's DataTree with what made it on its root;
    ``llmsize.report`` of it, or of the path, writes the same pages."""
    _, out = tiny_infer_subprocess
    tree = llmsize.load(out / "posterior.nc")
    assert isinstance(tree, xr.DataTree)
    assert {"posterior", "prior", "posterior_predictive", "log_likelihood"} <= set(tree.children)
    assert tree.attrs["command"].startswith("llmsize infer --data ")
    assert (
        tree.attrs["data_sha256"]
        == json.loads((out / "diagnostics.json").read_text(encoding="utf-8"))["data_sha256"]
    )
    result = llmsize.report(tree, tmp_path / "a")
    assert result.out_dir == tmp_path / "a"
    assert result.diagnostics.divergences >= 0
    assert result.headline
    for page in ("README.md", "index.html"):
        assert filecmp.cmp(out / page, tmp_path / "a" / page, shallow=False), page


def test_infer_returns_the_runs_datatree(tiny_infer_subprocess, tiny_subprocess_cache,
                                         tmp_path, monkeypatch):  # fmt: skip
    """``llmsize.infer`` fits and returns the DataTree, writing nothing without ``out``;
    the same seed and settings as the command give the same draws."""
    _, out = tiny_infer_subprocess
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(tiny_subprocess_cache, cache)
    monkeypatch.setenv("LLMSIZE_CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    tree = llmsize.infer(
        DEFAULT_HYPOTHESIS,
        TINY_DIR,
        {"sampler.draws": TINY_DRAWS, "sampler.tune": TINY_TUNE},
        chains=TINY_CHAINS,
        seed=SEED,
    )
    assert sorted(os.listdir(tmp_path)) == before
    assert isinstance(tree, xr.DataTree)
    assert dict(tree["posterior"].sizes)["draw"] == TINY_DRAWS
    assert tree.attrs["command"].startswith("llmsize.infer(hypothesis=")
    saved = read_posterior(out / "posterior.nc")
    xr.testing.assert_equal(
        tree["posterior"]["log10_params_total_b"].to_dataset(),
        saved["posterior"]["log10_params_total_b"].to_dataset(),
    )


# --- bad input to llmsize report -------------------------------------------------


def test_report_of_a_missing_or_broken_file(tmp_path):
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "none.nc")])
    assert _one_error_line(result) == f"llmsize: error: {tmp_path / 'none.nc'}: no such file"
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["report", str(bad), "--out", str(tmp_path / "o")])
    assert "not a netCDF file of a run" in _one_error_line(result)
    assert not (tmp_path / "o").exists()
    with pytest.raises(LlmsizeError, match="no such file"):
        llmsize.load(tmp_path / "none.nc")


def test_report_refuses_other_data_and_altered_runs(tiny_infer_subprocess, tmp_path):
    """Another data folder, an altered hypothesis attribute, a file that is not a run, or
    a bad --out: one line, exit 2, before anything is written; a previous report stays."""
    _, out = tiny_infer_subprocess
    posterior = str(out / "posterior.nc")
    keep = tmp_path / "previous"
    keep.mkdir()
    (keep / "summary.csv").write_text("kept\n", encoding="utf-8")

    result = CliRunner().invoke(cli, ["report", posterior, "--out", str(keep), "--data",
                                      str(DATA_DIR)])  # fmt: skip
    line = _one_error_line(result)
    assert f"{DATA_DIR}: not the data" in line
    assert "--data" in line
    assert (keep / "summary.csv").read_text(encoding="utf-8") == "kept\n"

    tree = read_posterior(posterior)
    tree.attrs["hypothesis_sha256"] = "0" * 64
    altered = tmp_path / "altered.nc"
    write_posterior(tree, altered, {})
    result = CliRunner().invoke(cli, ["report", str(altered), "--out", str(keep)])
    assert "does not match its hypothesis_sha256" in _one_error_line(result)

    bare = tmp_path / "bare.nc"
    write_posterior(xr.DataTree.from_dict({"posterior": tree["posterior"].to_dataset()}), bare, {})
    result = CliRunner().invoke(cli, ["report", str(bare), "--out", str(keep)])
    assert "not a run of llmsize infer" in _one_error_line(result)

    result = CliRunner().invoke(cli, ["report", posterior, "--out", str(TINY_DIR)])
    assert "the output folder is the data folder" in _one_error_line(result)
    assert (keep / "summary.csv").read_text(encoding="utf-8") == "kept\n"


@pytest.mark.slow
def test_infer_from_python_on_the_bundled_data_outside_the_clone(tmp_path):
    """Issue 14's check, as written: from a folder outside the clone,
    ``llmsize.infer(overrides={'sampler.draws': 100})`` returns a DataTree."""
    code = (
        "import llmsize; t = llmsize.infer(overrides={'sampler.draws': 100}); "
        "print(type(t).__name__, t['posterior'].sizes['draw'], t.attrs['hypothesis_name'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=1800,
        cwd=tmp_path, env={**subprocess_env(), "PYTHONPATH": str(REPO_ROOT / "src")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["DataTree", "100", "default"]
    assert os.listdir(tmp_path) == []
