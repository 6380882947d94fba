"""Shared fixtures and options of the llmsize test suite.

Modelled on pymc-marketing's and CausalPy's ``tests/conftest.py``:

- matplotlib draws off-screen (``Agg``), before anything imports pyplot;
- ``@pytest.mark.slow`` tests (long fits) are skipped unless ``--run-slow``
  is given; ``--only-slow`` runs nothing else;
- the default hypothesis, the tiny synthetic dataset and the bundled data are
  loaded once per session;
- every random draw uses a fixed seed;
- the suite runs on two workers (pytest-xdist, ``-n 2 --dist worksteal`` in
  ``pyproject.toml``);
  the shared tiny fit is made once for both (a file lock in a folder they share).

Real fits are expensive (nutpie compiles the model in ~20-30 s), so the
default run shares them: ``tiny_infer_subprocess`` and ``tiny_infer_runner``
are the only two fits outside the slow tests, each with tiny settings
(``TINY_ARGS``) on ``tests/fixtures/tiny``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from llmsize.inputs.data import load_dataset  # noqa: E402
from llmsize.inputs.hypothesis import load_hypothesis  # noqa: E402
from llmsize.physics.design import build_design  # noqa: E402

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


#: Fixtures of the shared tiny fits: the tests that use them run last, so that the
#: fit (started when the session starts, ``_start_shared_fit``) overlaps the others.
SHARED_FIT_FIXTURES = ("tiny_infer_subprocess", "tiny_infer_runner")


def pytest_collection_modifyitems(config, items):
    items.sort(
        key=lambda item: any(f in getattr(item, "fixturenames", ()) for f in SHARED_FIT_FIXTURES)
    )
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
    """Compiled models (``llmsize.inference.compiled``) go to a folder of the session, not ~/.cache."""
    path = tmp_path_factory.mktemp("llmsize-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMSIZE_CACHE_DIR", str(path))
        yield path


def _shared_dir(tmp_path_factory) -> Path:
    """A folder every worker of this test run sees: under pytest-xdist, the parent of the
    worker's own base folder (the pattern pytest-xdist documents for session fixtures
    made once per run), else the base folder itself."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def _exclusive(lock: Path):
    """Hold an exclusive lock on file ``lock`` (created if missing) while the block runs."""
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def tiny_subprocess_cache(tmp_path_factory):
    """The compiled-model cache of ``tiny_infer_subprocess``, empty when it starts;
    shared by the workers: copy it before writing to it."""
    return _shared_dir(tmp_path_factory) / "shared-tiny-fit" / "cache"


def _run_shared_fit(root: Path, cache: Path) -> None:
    """The shared tiny fit, into ``root / "run" / "report"``; its exit status and output
    go to ``root / "result.json"`` when it ends (written last, so its presence means done)."""
    args = [sys.executable, "-m", "llmsize", "infer", "-q", *TINY_ARGS,
            "--out", str(root / "run" / "report")]  # fmt: skip
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=root,
            env={**subprocess_env(), "LLMSIZE_CACHE_DIR": str(cache)},
        )
        made = {"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
    except Exception as exc:  # noqa: BLE001 - the tests that wait for it report it
        made = {"returncode": -1, "stdout": "", "stderr": f"the shared fit did not run: {exc!r}"}
    tmp = root / "result.json.tmp"
    tmp.write_text(json.dumps({"args": args, **made}), encoding="utf-8")
    tmp.replace(root / "result.json")


@pytest.fixture(scope="session", autouse=True)
def _start_shared_fit(request, tmp_path_factory, tiny_subprocess_cache):
    """Start the shared tiny fit as soon as the session starts, if any collected test
    uses it: in a thread of the first worker to get here, so that its half-minute
    compile overlaps the other tests instead of holding one up."""
    wanted = any("tiny_infer_subprocess" in getattr(item, "fixturenames", ())
                 for item in request.session.items)  # fmt: skip
    root = tiny_subprocess_cache.parent
    with _exclusive(root.parent / "shared-tiny-fit.lock"):
        first = wanted and not (root / "started").exists()
        if first:
            tiny_subprocess_cache.mkdir(parents=True)
            (root / "started").touch()
    if not first:
        yield
        return
    fit = threading.Thread(target=_run_shared_fit, args=(root, tiny_subprocess_cache))
    fit.start()
    yield
    # Another worker may still wait for it: this one ends only after the fit.
    fit.join()


@pytest.fixture(scope="session")
def tiny_infer_subprocess(tmp_path_factory, tiny_subprocess_cache):
    """ONE real ``python -m llmsize infer -q`` on the tiny data, shared by every test
    of every worker (started by ``_start_shared_fit``; this waits for it).

    It compiles the model into an empty cache (``tiny_subprocess_cache``).
    Returns ``(completed_process, out_dir)``; treat both as read-only.
    """
    root = tiny_subprocess_cache.parent
    done = root / "result.json"
    deadline = time.monotonic() + 900
    while not done.is_file():
        if not (root / "started").exists() or time.monotonic() > deadline:
            pytest.fail(f"the shared tiny fit was not started or did not end ({root})")
        time.sleep(0.2)
    made = json.loads(done.read_text(encoding="utf-8"))
    proc = subprocess.CompletedProcess(
        made["args"], made["returncode"], made["stdout"], made["stderr"]
    )
    return proc, root / "run" / "report"


@pytest.fixture(scope="session")
def tiny_infer_runner(tmp_path_factory, tiny_infer_subprocess, tiny_subprocess_cache):
    """ONE real in-process ``infer --strict`` through click's CliRunner.

    Same data, hypothesis, settings and seed as ``tiny_infer_subprocess``, so
    the two reports should agree. It loads the model the subprocess compiled,
    from a copy of that cache (a cold compile costs half a minute, and the cold
    and warm paths are compared in tests/inference/test_compiled.py). Returns
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
