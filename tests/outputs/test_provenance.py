"""What made a run (``llmsize.outputs.provenance``): package versions and the git commit.

The attributes of a real fit's ``posterior.nc`` and its ``diagnostics.json`` are
checked in ``tests/test_cli.py`` (``test_provenance_names_versions_and_commit``).
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr

from llmsize.outputs import io, provenance
from llmsize.outputs.provenance import PACKAGES, environment, git_state, package_versions

from ..conftest import REPO_ROOT

VERSION_KEYS = {"python_version"} | {f"{p.replace('-', '_')}_version" for p in PACKAGES}

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def test_package_versions():
    versions = package_versions()
    assert set(versions) == VERSION_KEYS
    assert versions["python_version"] == platform.python_version()
    for name in PACKAGES:
        assert versions[f"{name.replace('-', '_')}_version"] == importlib.metadata.version(name)
    assert {"pymc", "pytensor", "numba", "nutpie", "arviz", "arviz-stats"} <= set(PACKAGES)
    assert {"numpy", "pandas", "xarray"} <= set(PACKAGES)


def test_a_missing_package_is_left_out(monkeypatch):
    monkeypatch.setattr(provenance, "PACKAGES", ("numpy", "no-such-distribution-xyz"))
    assert set(package_versions()) == {"python_version", "numpy_version"}


def _git(root, *args):
    return subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.invalid",
         "-c", "commit.gpgsign=false", *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


@needs_git
def test_git_state_of_a_clone(tmp_path):
    """The commit, and dirty only when a tracked file outside reports/ changed."""
    root = tmp_path / "clone"
    (root / "src").mkdir(parents=True)
    (root / "reports").mkdir()
    (root / "src" / "a.py").write_text("a = 1\n", encoding="utf-8")
    (root / "reports" / "summary.csv").write_text("x\n", encoding="utf-8")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "first")
    head = _git(root, "rev-parse", "HEAD")
    assert git_state(root) == {"git_commit": head, "git_dirty": "false"}
    (root / "reports" / "summary.csv").write_text("y\n", encoding="utf-8")  # a run's output
    (root / "notes.txt").write_text("untracked\n", encoding="utf-8")
    assert git_state(root)["git_dirty"] == "false"
    (root / "src" / "a.py").write_text("a = 2\n", encoding="utf-8")
    assert git_state(root) == {"git_commit": head, "git_dirty": "true"}


@needs_git
def test_git_state_without_a_repository_or_commit(tmp_path):
    assert git_state(tmp_path) == {}
    _git(tmp_path, "init", "-q")  # a repository without a commit yet
    assert git_state(tmp_path) == {}


def test_no_git_state_outside_a_clone(monkeypatch):
    monkeypatch.setattr(provenance, "source_clone", lambda: None)
    assert git_state() == {}
    assert set(environment()) == VERSION_KEYS


def test_no_git_state_without_git(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert git_state(REPO_ROOT) == {}


@needs_git
def test_this_clone(monkeypatch):
    """The tests import llmsize from the clone's src/: its commit is recorded."""
    assert provenance.source_clone() == REPO_ROOT
    state = git_state()
    assert state["git_commit"] == _git(REPO_ROOT, "rev-parse", "HEAD")
    assert state["git_dirty"] in {"true", "false"}


def test_attributes_of_the_posterior(tmp_path):
    """``io.provenance`` carries the environment into ``posterior.nc``'s attributes."""
    tree = xr.DataTree.from_dict(
        {"posterior": xr.Dataset({"x": (("chain", "draw"), np.zeros((1, 3)))})}
    )
    attrs = io.provenance(
        hypothesis={"name": "h"},
        hypothesis_digest="0" * 64,
        data_digest="1" * 64,
        data_dir="d",
        seed=7,
        settings={"draws": 3},
    )
    assert set(attrs) >= VERSION_KEYS
    assert all(isinstance(v, str) for v in attrs.values())
    io.write_posterior(tree, tmp_path / "posterior.nc", attrs)
    back = io.read_posterior(tmp_path / "posterior.nc")
    for key in VERSION_KEYS | set(git_state()):
        assert back.attrs[key] == attrs[key]


# --- the model's code --------------------------------------------------------


def _copy_package(tmp_path):
    package = tmp_path / "llmsize"
    shutil.copytree(
        REPO_ROOT / "src" / "llmsize", package, ignore=shutil.ignore_patterns("__pycache__")
    )
    return package


def test_model_code_digest_follows_the_model_not_the_pages(tmp_path):
    """A byte changed in a model module changes the digest; one in a report module does not."""
    package = _copy_package(tmp_path)
    before = provenance.model_code_digest(package)
    assert before == provenance.model_code_digest(REPO_ROOT / "src" / "llmsize")
    assert len(before) == 64
    names = {p.relative_to(package).as_posix() for p in provenance.model_code_files(package)}
    assert {
        "inference/model.py",
        "physics/design.py",
        "physics/forward.py",
        "physics/pricing.py",
        "studies/calibration/refits.py",
    } <= names
    assert not names & {"outputs/markdown.py", "html.py", "plots.py", "cli.py"}
    (package / "outputs" / "markdown.py").write_text("# reworded\n", encoding="utf-8")
    assert provenance.model_code_digest(package) == before
    model = package / "inference" / "model.py"
    text = model.read_text(encoding="utf-8")
    # Comments, docstrings and layout are not what the model does.
    reworded = text.replace(
        '"""Build (do not sample) the PyMC model', '"""Build, without sampling, the PyMC model', 1
    )
    assert reworded != text
    model.write_text(reworded + "\n# a comment\n", encoding="utf-8")
    assert provenance.model_code_digest(package) == before
    # A changed line of code is.
    model.write_text(text + "\nEXTRA = 1\n", encoding="utf-8")
    assert provenance.model_code_digest(package) != before


def test_code_tokens_ignore_wording_and_layout():
    source = (
        '"""Module doc."""\nimport x  # why\n\n\ndef f(a, b):\n    """Doc\n    more."""\n'
        "    # comment\n    return g(a,\n             b)\n"
    )
    formatted = '"""Reworded."""\nimport x\n\n\ndef f(a, b):\n    return g(\n        a,\n        b,\n    )\n'
    assert provenance.code_tokens(source) == provenance.code_tokens(formatted)
    assert provenance.code_tokens(source) != provenance.code_tokens(source.replace("(a,", "(b,"))
    assert provenance.code_tokens(source) != provenance.code_tokens(source.replace("g(", "h("))
    # A string that is not a docstring is code.
    assert provenance.code_tokens('x = "a"\n') != provenance.code_tokens('x = "b"\n')


def test_a_missing_model_module_is_an_error(tmp_path):
    package = _copy_package(tmp_path)
    (package / "inputs" / "hypothesis.py").unlink()
    with pytest.raises(FileNotFoundError, match="hypothesis.py"):
        provenance.model_code_digest(package)


def test_a_calibration_of_other_model_code_is_left_out_of_the_report(tmp_path):
    """The report takes a calibration only when hypothesis, data and model code match."""
    import json

    import pandas as pd

    from llmsize.inputs.data import load_dataset
    from llmsize.inputs.hypothesis import load_hypothesis
    from llmsize.pipeline import _calibration_metrics

    from ..conftest import DEFAULT_HYPOTHESIS, TINY_DIR

    hyp, data = load_hypothesis(DEFAULT_HYPOTHESIS), load_dataset(TINY_DIR)
    calib = tmp_path / "calibration-default"
    calib.mkdir()
    pd.DataFrame({"method": ["m"], "n": [1]}).to_csv(calib / "metrics.csv", index=False)
    made = {
        "model_sha256": hyp.model_digest(),
        "code_sha256": provenance.model_code_digest(),
        "data_sha256": data.digest,
    }
    (calib / "provenance.json").write_text(json.dumps(made), encoding="utf-8")
    assert _calibration_metrics(calib, hyp, data) is not None
    for key in ("code_sha256", "model_sha256", "data_sha256"):
        other = {**made, key: "0" * 64}
        (calib / "provenance.json").write_text(json.dumps(other), encoding="utf-8")
        assert _calibration_metrics(calib, hyp, data) is None, key
    no_code = {k: v for k, v in made.items() if k != "code_sha256"}  # made before the digest
    (calib / "provenance.json").write_text(json.dumps(no_code), encoding="utf-8")
    assert _calibration_metrics(calib, hyp, data) is None


def test_fit_data_digest_leaves_out_the_report_only_files(tiny_copy):
    """A claim or a family page changes no fit, so it keeps a calibration valid; a price does not."""
    from types import SimpleNamespace

    from llmsize.inputs.data import data_digest

    before, all_before = provenance.fit_data_digest(tiny_copy), data_digest(tiny_copy)
    made = {"model_sha256": "m", "code_sha256": provenance.model_code_digest()}
    data = SimpleNamespace(root=tiny_copy, digest=all_before)
    assert provenance.calibration_matches(
        {**made, "fit_data_sha256": before}, model_sha256="m", data=data
    )
    # A calibration recorded before the field: every data file must match.
    assert provenance.calibration_matches({**made, "data_sha256": all_before}, model_sha256="m",
                                          data=data)  # fmt: skip
    assert not provenance.calibration_matches({**made, "fit_data_sha256": before},
                                              model_sha256="other", data=data)  # fmt: skip
    for name in provenance.REPORT_ONLY_DATA:
        with open(tiny_copy / name, "a", encoding="utf-8") as fh:
            fh.write("\n")
    assert provenance.fit_data_digest(tiny_copy) == before
    assert data_digest(tiny_copy) != all_before
    with open(tiny_copy / "prices.csv", "a", encoding="utf-8") as fh:
        fh.write("\n")
    assert provenance.fit_data_digest(tiny_copy) != before
    assert not provenance.calibration_matches(
        {**made, "fit_data_sha256": before}, model_sha256="m", data=data
    )
