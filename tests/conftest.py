"""Shared fixtures and options of the llmsize test suite.

Modelled on pymc-marketing's and CausalPy's ``tests/conftest.py``:

- matplotlib draws off-screen (``Agg``), before anything imports pyplot;
- ``@pytest.mark.slow`` tests (long fits) are skipped unless ``--run-slow``
  is given; ``--only-slow`` runs nothing else;
- the default hypothesis, the tiny synthetic dataset and the bundled data are
  loaded once per session;
- every random draw uses a fixed seed.

Real fits are expensive (nutpie compiles the model in ~20-30 s), so the
default run shares them: ``tiny_infer_subprocess`` and ``tiny_infer_runner``
are the only two fits outside the slow tests, each with tiny settings
(``TINY_ARGS``) on ``tests/fixtures/tiny``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from llmsize.config import load_hypothesis  # noqa: E402
from llmsize.data import load_dataset  # noqa: E402
from llmsize.design import build_design  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
DATA_DIR = REPO_ROOT / "data"
MODELS_DIR = REPO_ROOT / "models"
DEFAULT_HYPOTHESIS = MODELS_DIR / "default.toml"
FIXTURES_DIR = TESTS_DIR / "fixtures"
TINY_DIR = FIXTURES_DIR / "tiny"
HYPOTHESIS_FIXTURES = FIXTURES_DIR / "hypotheses"

#: Fixed seed of every random draw in the suite.
SEED = 20240601

#: Sampler settings of the shared fits of the default run: enough to exercise
#: every output, far too few to converge (the --strict test expects either).
TINY_DRAWS = 100
TINY_TUNE = 100
TINY_CHAINS = 2
TINY_ARGS = [
    "--data",
    str(TINY_DIR),
    "--hypothesis",
    str(DEFAULT_HYPOTHESIS),
    "--draws",
    str(TINY_DRAWS),
    "--tune",
    str(TINY_TUNE),
    "--chains",
    str(TINY_CHAINS),
    "--seed",
    str(SEED),
]


# --- options: slow tests ------------------------------------------------------


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="also run tests marked slow"
    )
    parser.addoption(
        "--only-slow", action="store_true", default=False, help="run only tests marked slow"
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--only-slow"):
        skip_fast = pytest.mark.skip(reason="not slow; --only-slow given")
        for item in items:
            if "slow" not in item.keywords:
                item.add_marker(skip_fast)
        return
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow; run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


# --- inputs -------------------------------------------------------------------


@pytest.fixture(scope="session")
def default_hypothesis():
    """``models/default.toml``, validated."""
    return load_hypothesis(DEFAULT_HYPOTHESIS)


@pytest.fixture(scope="session")
def tiny_data():
    """The tiny synthetic dataset (4 known models, 2 unknown, 3 providers)."""
    return load_dataset(TINY_DIR)


@pytest.fixture(scope="session")
def tiny_design(tiny_data, default_hypothesis):
    return build_design(tiny_data, default_hypothesis)


@pytest.fixture(scope="session")
def bundled_data():
    """The bundled ``data/`` directory."""
    return load_dataset(DATA_DIR)


@pytest.fixture(scope="session")
def bundled_design(bundled_data, default_hypothesis):
    return build_design(bundled_data, default_hypothesis)


@pytest.fixture
def rng():
    return np.random.default_rng(SEED)


@pytest.fixture
def tiny_copy(tmp_path):
    """A writable copy of ``tests/fixtures/tiny`` in ``tmp_path``."""
    dest = tmp_path / "tiny"
    shutil.copytree(TINY_DIR, dest)
    return dest


@pytest.fixture(scope="session")
def hypothesis_dir(tmp_path_factory):
    """``tests/fixtures/hypotheses/*.toml`` beside a copy of ``models/default.toml``.

    The fixture files say ``extends = "default.toml"`` as a file in ``models/``
    would, so they are loaded from a folder that also holds default.toml.
    """
    dest = tmp_path_factory.mktemp("hypotheses")
    shutil.copy(DEFAULT_HYPOTHESIS, dest / "default.toml")
    for path in HYPOTHESIS_FIXTURES.glob("*.toml"):
        shutil.copy(path, dest / path.name)
    return dest


# --- the shared fits of the default run ---------------------------------------


def subprocess_env() -> dict[str, str]:
    """Environment for ``python -m llmsize`` subprocesses (headless plots)."""
    env = dict(os.environ)
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.fixture(scope="session", autouse=True)
def compiled_model_cache(tmp_path_factory):
    """Compiled models (``llmsize.cache``) go to a folder of the session, not ~/.cache."""
    path = tmp_path_factory.mktemp("llmsize-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMSIZE_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def tiny_subprocess_cache(tmp_path_factory):
    """The compiled-model cache of ``tiny_infer_subprocess``, empty when it starts."""
    return tmp_path_factory.mktemp("cache_subprocess")


@pytest.fixture(scope="session")
def tiny_infer_subprocess(tmp_path_factory, tiny_subprocess_cache):
    """ONE real ``python -m llmsize infer -q`` on the tiny data, shared by every test.

    It compiles the model into an empty cache (``tiny_subprocess_cache``).
    Returns ``(completed_process, out_dir)``.
    """
    out = tmp_path_factory.mktemp("infer_subprocess") / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "llmsize", "infer", "-q", *TINY_ARGS, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path_factory.getbasetemp(),
        env={**subprocess_env(), "LLMSIZE_CACHE_DIR": str(tiny_subprocess_cache)},
    )
    return proc, out


@pytest.fixture(scope="session")
def tiny_infer_runner(tmp_path_factory, tiny_infer_subprocess, tiny_subprocess_cache):
    """ONE real in-process ``infer --strict`` through click's CliRunner.

    Same data, hypothesis, settings and seed as ``tiny_infer_subprocess``, so
    the two reports should agree. It loads the model the subprocess compiled,
    from a copy of that cache (a cold compile costs half a minute, and the cold
    and warm paths are compared in test_cache.py). Returns
    ``(click_result, out_dir)``.
    """
    import shutil

    from click.testing import CliRunner

    from llmsize.cli import cli

    out = tmp_path_factory.mktemp("infer_runner") / "report"
    cache_copy = tmp_path_factory.mktemp("cache_runner") / "cache"
    shutil.copytree(tiny_subprocess_cache, cache_copy)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMSIZE_CACHE_DIR", str(cache_copy))
        result = CliRunner().invoke(cli, ["infer", *TINY_ARGS, "--strict", "--out", str(out)])
    return result, out
