"""The bundled data and hypotheses (``llmsize.inputs.bundled``): found from any folder.

The fast tests resolve the defaults from a folder outside the clone (the
clone's own ``data/`` and ``models/``, as an editable install finds them) and
from a fake wheel layout; the slow one builds the wheel, installs it into a
fresh virtual environment and runs ``llmsize infer`` in a folder of its own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmsize.cli import EXIT_INPUT, cli
from llmsize.exceptions import HypothesisError
from llmsize.inputs import bundled
from llmsize.inputs.bundled import (
    bundled_root,
    default_data_dir,
    default_hypothesis,
)
from llmsize.inputs.data import data_digest
from llmsize.inputs.hypothesis import hypothesis_files, load_hypothesis

from ..conftest import DATA_DIR, DEFAULT_HYPOTHESIS, REPO_ROOT, TINY_DIR, subprocess_env


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """An empty working folder outside the clone."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_defaults_outside_the_clone_are_the_clones_own(elsewhere):
    # The tests import llmsize from src/ (editable install): the clone's folders.
    assert bundled_root() == REPO_ROOT
    assert default_data_dir() == DATA_DIR
    assert default_hypothesis() == DEFAULT_HYPOTHESIS
    assert default_data_dir().is_absolute()


def test_the_working_folders_data_and_models_win(elsewhere):
    shutil.copytree(TINY_DIR, elsewhere / "data")
    (elsewhere / "models").mkdir()
    shutil.copy(DEFAULT_HYPOTHESIS, elsewhere / "models" / "default.toml")
    assert default_data_dir() == Path("data")
    assert default_hypothesis() == Path("models") / "default.toml"


def test_wheel_layout(tmp_path):
    """A wheel's ``llmsize/_bundled`` (pyproject.toml's force-include) is found first;
    a folder that is neither that nor a clone's ``src/llmsize`` has none."""
    package = tmp_path / "site-packages" / "llmsize"
    (package / "_bundled" / "models").mkdir(parents=True)
    assert bundled_root(package) is None  # no data yet
    (package / "_bundled" / "data").mkdir()
    (package / "_bundled" / "models" / "default.toml").write_text("", encoding="utf-8")
    assert bundled_root(package) == package / "_bundled"
    # src/llmsize of a folder that is not a project (no pyproject.toml) is not a clone.
    fake = tmp_path / "not-a-clone"
    (fake / "src" / "llmsize").mkdir(parents=True)
    (fake / "data").mkdir()
    (fake / "models").mkdir()
    (fake / "models" / "default.toml").write_text("", encoding="utf-8")
    assert bundled_root(fake / "src" / "llmsize") is None
    (fake / "pyproject.toml").write_text("", encoding="utf-8")
    assert bundled_root(fake / "src" / "llmsize") == fake


def test_no_bundled_copy_keeps_the_relative_defaults(elsewhere, monkeypatch):
    monkeypatch.setattr(bundled, "bundled_root", lambda package_dir=None: None)
    assert default_data_dir() == Path("data")
    assert default_hypothesis() == Path("models") / "default.toml"


def test_pyproject_packs_data_and_models_into_the_wheel():
    import tomllib

    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    forced = config["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert forced == {"data": "llmsize/_bundled/data", "models": "llmsize/_bundled/models"}


# --- the commands from another folder ----------------------------------------


def test_validate_runs_in_any_folder(elsewhere):
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout.startswith("ok: hypothesis 'default';")
    assert not (elsewhere / "reports").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hypothesis", "models/default.toml"], "models/default.toml: no such hypothesis file"),
        (["--data", "data"], "data: no such data directory"),
    ],
)
def test_a_missing_file_the_user_names_is_still_an_error(elsewhere, args, message):
    """Only the defaults fall back: a path the user names is used as given."""
    result = CliRunner().invoke(cli, ["validate", *args])
    assert result.exit_code == EXIT_INPUT
    assert result.stderr.splitlines() == [f"llmsize: error: {message}"]
    assert result.stdout == ""


def test_the_report_goes_to_the_working_folder(elsewhere):
    """``infer``'s inputs from the bundled copies, its report to ./reports/<name>."""
    from llmsize.inputs.checks import RunRequest
    from llmsize.pipeline import check_inputs

    hyp, data, _, _, out = check_inputs(
        RunRequest(data_dir=default_data_dir(), hypothesis_path=default_hypothesis())
    )
    assert hyp.name == "default"
    assert data.digest == data_digest(DATA_DIR)
    assert out == Path("reports") / "default"
    assert (elsewhere / out).resolve().parent == (elsewhere / "reports").resolve()


# --- extends ------------------------------------------------------------------


def test_extends_default_resolves_in_any_folder(elsewhere):
    """A user's hypothesis that extends "default.toml", with none beside it: the bundled one."""
    mine = elsewhere / "mine.toml"
    mine.write_text('extends = "default.toml"\n[sampler]\ndraws = 123\n', encoding="utf-8")
    hyp = load_hypothesis(mine)
    assert hyp.name == "mine"
    assert hyp.sampler.draws == 123
    assert hyp.model_digest() == load_hypothesis(DEFAULT_HYPOTHESIS).model_digest()
    assert hypothesis_files(mine) == (mine.resolve(), DEFAULT_HYPOTHESIS.resolve())


def test_extends_prefers_the_file_beside_it(elsewhere):
    shutil.copy(DEFAULT_HYPOTHESIS, elsewhere / "default.toml")
    mine = elsewhere / "mine.toml"
    mine.write_text('extends = "default.toml"\n', encoding="utf-8")
    assert hypothesis_files(mine) == (mine.resolve(), (elsewhere / "default.toml").resolve())


@pytest.mark.parametrize(
    "parent", ["no_such_parent.toml", "./default.toml", "../default.toml", "a" * 300]
)
def test_extends_other_missing_parents_are_errors(elsewhere, parent):
    """Only a bare name of a bundled hypothesis falls back; the error is unchanged."""
    mine = elsewhere / "mine.toml"
    mine.write_text(f'extends = "{parent}"\n', encoding="utf-8")
    with pytest.raises(HypothesisError, match="which does not exist") as info:
        load_hypothesis(mine)
    assert info.value.field == "extends"


# --- the wheel ----------------------------------------------------------------


def _build_wheel(dest: Path) -> Path:
    """``pip wheel`` of the repository, without build isolation when hatchling is here
    (the test extra installs it), so no index is needed."""
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", dest,
         REPO_ROOT],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (wheel,) = dest.glob("llmsize-*.whl")
    return wheel


def _fresh_venv(where: Path, wheel: Path) -> Path:
    """A new virtual environment holding only the wheel; the dependencies come from
    this interpreter's site-packages through a ``.pth`` line, after the venv's own (so
    the wheel's llmsize, not the clone's, is imported). Returns its ``bin/``."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", where], check=True, timeout=120)
    bin_dir = where / "bin"
    purelib = subprocess.run(
        [bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "llmsize_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", bin_dir / "python", "install", "-q",
         "--no-deps", "--no-index", wheel],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return bin_dir


@pytest.mark.slow
def test_installed_wheel_runs_infer_outside_the_clone(tmp_path):
    """From a folder outside the clone, after installing the wheel built from the
    repository, ``llmsize infer --draws 200 --tune 200 --chains 2`` writes a report
    to ./reports/default (issue 14's "done when")."""
    wheel = _build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    for path in ("llmsize/_bundled/models/default.toml", "llmsize/_bundled/data/prices.csv"):
        assert path in names
    bin_dir = _fresh_venv(tmp_path / "venv", wheel)
    work = tmp_path / "work"
    work.mkdir()
    env = {**subprocess_env(), "PYTHONPATH": ""}
    where = subprocess.run(
        [bin_dir / "python", "-c", "import llmsize; print(llmsize.__file__)"],
        check=True, capture_output=True, text=True, cwd=work, env=env,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(tmp_path / "venv"), where
    proc = subprocess.run(
        [bin_dir / "llmsize", "infer", "--draws", "200", "--tune", "200", "--chains", "2"],
        capture_output=True, text=True, cwd=work, env=env, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = work / "reports" / "default"
    for name in ("summary.csv", "diagnostics.json", "README.md", "index.html", "posterior.nc"):
        assert (report / name).is_file(), name
    diag = json.loads((report / "diagnostics.json").read_text(encoding="utf-8"))
    assert diag["data_sha256"] == data_digest(DATA_DIR)
    assert diag["hypothesis_name"] == "default"
    assert json.loads(diag["sampler_settings"])["draws"] == 200
    # Installed from a wheel, llmsize runs from no clone: versions, but no commit.
    assert diag["pymc_version"]
    assert diag["python_version"]
    assert "git_commit" not in diag
    assert sorted(os.listdir(work)) == ["reports"]
