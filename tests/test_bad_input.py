"""Bad input and output paths fail fast, in one line, and lose nothing (issue 13).

Every case here is a mistake a careless or unlucky user makes: ``--out`` naming
the data folder, a FIFO as a data file, an active fraction of 2, ``1_0`` as a
number, a seed of -1. Each must end, before anything is compiled or sampled, in
exactly one stderr line ``llmsize: error: ...`` naming the file, row and field
or the path, and exit status 2; the data, the hypotheses and any previous report
stay byte for byte as they were, and no staging folder (``*.partial``) is left.

"Before anything is sampled" is enforced, not timed: every entry point of the
sampler, the compiled-model cache and the calibration's queue is replaced by a
function that raises :class:`SamplingReached` (a ``BaseException``, so no
``except Exception`` can hide it) for every test of this module, and the few
cases that need a process of their own (special files, which must not block, and
the console script itself) run in a child with the same guard and a timeout.

The property-based tests at the end drive every entry point (``infer``,
``validate``, ``compare``, ``calibrate`` and :func:`llmsize.pipeline.run_inference`)
over generated bad data folders, hypotheses and output paths. Their number of
cases comes from the settings profiles of ``test_properties.py``
(``LLMSIZE_HYPOTHESIS_PROFILE``): ``fast`` (the default) runs a few per entry
point, ``long`` (or ``full``) 1,000 per entry point.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from llmsize import pipeline
from llmsize.cli import EXIT_INPUT, cli
from llmsize.exceptions import LlmsizeError
from llmsize.inputs.data import SCHEMAS
from llmsize.inputs.hypothesis import MAX_CHAINS, MAX_EXTENDS_DEPTH, MAX_SEED, PRIOR_RANGES

from .conftest import DEFAULT_HYPOTHESIS, TINY_DIR, subprocess_env
from .test_properties import PROFILE, PROPERTY, TINY_ROWS, damaged_data, make_data_dir

PREFIX = "llmsize: error: "

# --- no sampling, ever ------------------------------------------------------------------


class SamplingReached(BaseException):
    """A bad input got as far as compiling or sampling a model."""


def _refuse_sampling(*args, **kwargs):
    raise SamplingReached("a bad input reached the sampler")


#: Every way a command gets to compile or sample (modules that import a name keep
#: their own reference, so each is replaced where it is used).
SAMPLER_ENTRY_POINTS = (
    ("llmsize.inference.sampling", "fit"),
    ("llmsize.inference.sampling", "sample_posterior"),
    ("llmsize.inference.sampling", "sample_prior"),
    ("llmsize.inference.sampling", "compile_model"),
    ("llmsize.inference.compiled", "compile_model"),
    ("llmsize.pipeline", "fit"),
    ("llmsize.pipeline", "report_worker"),
    ("llmsize.studies.compare.runner", "fit"),
    ("llmsize.studies.compare.runner", "fit_hypothesis"),
    ("llmsize.studies.calibration.refits", "run_parallel"),
    ("llmsize.studies.calibration.refits", "fit_holdout"),
)


@pytest.fixture(autouse=True)
def no_sampling(monkeypatch):
    for module, name in SAMPLER_ENTRY_POINTS:
        monkeypatch.setattr(importlib.import_module(module), name, _refuse_sampling)


#: The same guard in a child process (:func:`run_guarded`), then ``CODE``.
GUARD = textwrap.dedent(
    f"""
    import importlib, json, sys

    def refuse(*args, **kwargs):
        sys.stderr.write("SAMPLING REACHED\\n")
        sys.exit(99)

    for module, name in {list(SAMPLER_ENTRY_POINTS)!r}:
        setattr(importlib.import_module(module), name, refuse)
    """
)
#: Several command lines (JSON, argv[1]), each through the console script's own
#: entry point; their exit statuses and output as JSON.
BATCH = """
import contextlib, io
from llmsize.cli import main
results = []
for args in json.loads(sys.argv[1]):
    sys.argv = ["llmsize", *args]
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code
    results.append({"exit": code, "stderr": err.getvalue(), "stdout": out.getvalue()})
print(json.dumps(results))
"""


def run_guarded(code: str, *args: str | Path, cwd: Path, timeout: float = 60):
    """Python ``code`` in a child process with the sampler guarded, killed after ``timeout``."""
    return subprocess.run(
        [sys.executable, "-c", GUARD + code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=subprocess_env(),
    )


# --- the world a case runs in -----------------------------------------------------------


def state(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: a file's bytes, a link's target, a folder, a special
    file's kind. Links are not followed, and special files are never opened."""
    out: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = os.lstat(path)
            key = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                out[key] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                out[key] = ("dir",)
            elif stat.S_ISREG(info.st_mode):
                out[key] = ("file", path.read_bytes())
            else:
                out[key] = ("special", stat.S_IFMT(info.st_mode))
    return out


class World:
    """A scratch folder: ``data/`` (the tiny fixture), ``models/default.toml``, a
    previous report ``reports/prev/``, and ``work/``, the current folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.models = root / "models"
        self.prev = root / "reports" / "prev"
        self.work = root / "work"
        shutil.copytree(TINY_DIR, self.data)
        self.models.mkdir()
        shutil.copy(DEFAULT_HYPOTHESIS, self.models / "default.toml")
        self.prev.mkdir(parents=True)
        (self.prev / "summary.csv").write_bytes(b"model,quantity\nold,1\n")
        (self.prev / "README.md").write_bytes("the previous report\u2014keep me\n".encode())
        self.work.mkdir()
        self.hypothesis = self.models / "default.toml"

    def child(self, name: str, body: str) -> Path:
        """A hypothesis ``models/NAME.toml`` that extends default.toml."""
        path = self.models / f"{name}.toml"
        path.write_text(f'extends = "default.toml"\nname = "{name}"\n{body}', encoding="utf-8")
        return path

    def set_cell(self, file: str, row: int, column: str, value: str) -> None:
        """Cell ``column`` of data row ``row`` (1-based) of ``data/FILE`` set to ``value``."""
        rows = [list(r) for r in TINY_ROWS[file]]
        rows[row][rows[0].index(column)] = value
        write_rows(self.data / file, rows)


def write_rows(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> None:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    w = World(tmp_path)
    monkeypatch.chdir(w.work)
    return w


def invoke(*args: str | Path):
    start = time.perf_counter()
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result, time.perf_counter() - start


def assert_refused(result, *names: str, seconds: float | None = None) -> str:
    """Exit 2 and exactly one stderr line ``llmsize: error: ...`` holding each of ``names``."""
    if isinstance(result.exception, SamplingReached):
        raise result.exception
    assert result.exit_code == EXIT_INPUT, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(PREFIX), lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""
    for name in names:
        assert name in lines[0], (name, lines[0])
    if seconds is not None:
        assert seconds < 10, f"took {seconds:.1f} s to refuse"
    return lines[0]


def no_staging(*folders: Path) -> None:
    for folder in folders:
        if folder.is_dir():
            assert not [p.name for p in folder.iterdir() if p.name.endswith(".partial")]


def run_all(world: World, command: str, *extra: str | Path, out: str | Path | None = None):
    """``command`` on the world's data and hypothesis, with ``--out`` if given."""
    if command == "compare":
        args: list[Any] = ["compare", world.hypothesis, "--data", world.data]
    else:
        args = [command, "--data", world.data, "--hypothesis", world.hypothesis]
    if out is not None and command != "validate":
        args += ["--out", out]
    return invoke(*args, *extra)


WRITERS = ("infer", "compare", "calibrate")

# --- class 1: the output folder ---------------------------------------------------------


@pytest.mark.parametrize("command", WRITERS)
def test_out_is_the_data_folder(world, command):
    before = state(world.root)
    result, seconds = run_all(world, command, out=world.data)
    assert_refused(result, str(world.data), "data folder", seconds=seconds)
    assert state(world.root) == before
    no_staging(world.root)


@pytest.mark.parametrize("command", WRITERS)
def test_out_inside_the_data_folder(world, command):
    before = state(world.root)
    result, seconds = run_all(world, command, out=world.data / "sub")
    assert_refused(result, "data folder", seconds=seconds)
    assert state(world.root) == before
    assert not (world.data / "sub").exists()


@pytest.mark.parametrize(
    ("out", "fragment"),
    [
        ("/", "file-system root"),
        (".", "current folder"),
        ("..", "current folder"),
        ("models", "hypothesis file default.toml"),
        ("models/sub", "hypothesis file default.toml"),
        ("root", "contains the current folder"),
        ("file", "not a folder"),
        ("file/sub", "is a file"),
        ("foreign", "holds no output of llmsize's"),
        ("x" * 300, "longer than the file system allows"),
        ("new/" + "y" * 250, "longer than the file system allows"),
        ("link-to-data", "data folder"),
        ("loop", "cannot"),
    ],
)
@pytest.mark.parametrize("command", WRITERS)
def test_unusable_out_is_refused(world, command, out, fragment):
    (world.root / "file").write_bytes(b"a file, not a folder\n")
    (world.root / "foreign").mkdir()
    (world.root / "foreign" / "notes.txt").write_bytes(b"my notes\n")
    (world.root / "link-to-data").symlink_to(world.data)
    (world.root / "loop").symlink_to(world.root / "loop")
    named = {
        "models": world.models,
        "models/sub": world.models / "sub",
        "root": world.root,
        "..": "..",
    }.get(out, world.root / out if out not in ("/", ".") else out)
    if command == "calibrate" and out.startswith("new/"):
        pytest.skip("calibrate writes into its folder: no staging name to make room for")
    before = state(world.root)
    result, seconds = run_all(world, command, out=named)
    assert_refused(result, fragment, seconds=seconds)
    assert state(world.root) == before
    no_staging(world.root, world.root / "reports")


@pytest.mark.parametrize("command", WRITERS)
def test_out_containing_the_data_folder(world, command):
    nest = world.root / "nest"
    shutil.copytree(world.data, nest / "data")
    before = state(world.root)
    result, seconds = run_all(world, command, "--data", nest / "data", out=nest)
    assert_refused(result, "contains the data folder", seconds=seconds)
    assert state(world.root) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("command", WRITERS)
def test_unwritable_out_is_refused(world, command):
    locked = world.root / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result, seconds = run_all(world, command, out=locked / "report")
        assert_refused(result, "not writable", seconds=seconds)
    finally:
        locked.chmod(0o755)
    assert not (locked / "report").exists()


def test_previous_report_is_replaced_only_by_a_report(world):
    """A previous report as ``--out`` is accepted: the bad input after it is what fails,
    and the report stays as it was."""
    before = state(world.root)
    bad = world.child("bad", "[priors]\nmbu = { distribution = 'Constant', value = -0.2 }\n")
    result, seconds = invoke(
        "infer", "--data", world.data, "--hypothesis", bad, "--out", world.prev
    )
    assert_refused(result, "bad.toml", "mbu", seconds=seconds)
    after = state(world.root)
    after.pop("models/bad.toml")
    assert after == before


def test_calibrate_out_on_an_existing_file(world):
    target = world.root / "results.csv"
    target.write_bytes(b"precious,data\n1,2\n")
    before = state(world.root)
    result, seconds = run_all(world, "calibrate", out=target)
    assert_refused(result, str(target), "not a folder", seconds=seconds)
    assert state(world.root) == before


def test_calibrate_resumes_into_its_own_folder(world):
    """A calibration folder (its fits so far) is written into, not refused."""
    from llmsize.outputs.folders import check_output_dir

    cal = world.root / "cal"
    (cal / "fits-abc").mkdir(parents=True)
    assert check_output_dir(cal, data_dir=world.data, replaces=False) == cal.resolve()


# --- class 2: what the model needs ------------------------------------------------------

BAD_PRIORS = {
    "active fraction 2": (
        "active_fraction = { distribution = 'Constant', value = 2 }",
        "active_fraction",
    ),
    "negative mbu": ("mbu = { distribution = 'Constant', value = -0.3 }", "mbu"),
    "lower above upper": (
        "log_batch_mu = { distribution = 'TruncatedNormal', mu = 3, sigma = 1, lower = 5, "
        "upper = 1 }",
        "lower < upper",
    ),
    "sigma 1e300": ("log_batch_mu = { distribution = 'Normal', mu = 3, sigma = 1e300 }", "sigma"),
    "Normal on a fraction": ("mbu = { distribution = 'Normal', mu = 0.5, sigma = 0.1 }", "mbu"),
    "size of 1e300": (
        "log10_params_total_b = { distribution = 'Normal', mu = 300, sigma = 1 }",
        "log10_params_total_b",
    ),
}


@pytest.mark.parametrize("case", BAD_PRIORS, ids=list(BAD_PRIORS))
@pytest.mark.parametrize("command", ["validate", *WRITERS])
def test_prior_outside_its_range(world, command, case):
    body, fragment = BAD_PRIORS[case]
    world.hypothesis = world.child("bad", f"[priors]\n{body}\n")
    before = state(world.root)
    result, seconds = run_all(world, command, out=world.root / "out")
    assert_refused(result, "bad.toml", fragment, seconds=seconds)
    assert state(world.root) == before


@pytest.mark.parametrize("command", ["validate", *WRITERS])
def test_prior_outside_its_range_by_set(world, command):
    result, seconds = run_all(
        world, command, "--set", "active_fraction.distribution=Constant",
        "--set", "active_fraction.value=2", out=world.root / "out",
    )  # fmt: skip
    assert_refused(result, "--set", "active_fraction", seconds=seconds)


@pytest.mark.parametrize("command", ["validate", "infer", "compare"])
def test_no_model_of_unknown_size(world, command):
    rows = [list(r) for r in TINY_ROWS["known_models.csv"]]
    for name, total in (("closed-x", "100"), ("closed-y", "20")):
        rows.append([name, "closed", total, total, "", "dense", "made known", ""])
    write_rows(world.data / "known_models.csv", rows)
    before = state(world.root)
    result, seconds = run_all(world, command, out=world.root / "out")
    assert_refused(result, "prices.csv", "no model of unknown size", seconds=seconds)
    assert state(world.root) == before


@pytest.mark.parametrize("char", ["\x07", "\x1b[31m", "\u2028", "\t"])
def test_control_character_in_a_model_name(world, char):
    world.set_cell("prices.csv", 6, "model", f"closed{char}x")
    for command in ("validate", *WRITERS):
        result, seconds = run_all(world, command, out=world.root / "out")
        line = assert_refused(result, "prices.csv, row 6, field 'model'", seconds=seconds)
        assert char not in line


@pytest.mark.parametrize("name", ["prices.csv", "notes.csv"])
def test_csv_that_is_not_utf8(world, name):
    """Every CSV of the data folder, one the schema ignores too (it enters the data hash)."""
    rows = [list(r) for r in TINY_ROWS["prices.csv"]] if name == "prices.csv" else [["a"], ["é"]]
    rows[1][-1] = "Zürich café"
    write_rows(world.data / name, rows, encoding="latin-1")
    before = state(world.root)
    for command in ("validate", *WRITERS):
        result, seconds = run_all(world, command, out=world.root / "out")
        assert_refused(result, name, "not UTF-8", seconds=seconds)
    assert state(world.root) == before


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--seed", "-1"),
        ("--seed", str(2**64)),
        ("--seed", str(MAX_SEED + 1)),
        ("--chains", str(10**6)),
        ("--chains", str(MAX_CHAINS + 1)),
        ("--chains", "0"),
        ("--draws", "0"),
        ("--draws", str(10**12)),
        ("--tune", "-1"),
        ("--cores", "0"),
        ("--cores", str(MAX_CHAINS + 1)),
    ],
)
@pytest.mark.parametrize("command", WRITERS)
def test_sampler_option_out_of_range(world, command, option, value):
    if command == "calibrate" and option in ("--seed", "--cores"):
        pytest.skip("calibrate takes the hypothesis' seed and runs one thread per worker")
    before = state(world.root)
    result, seconds = run_all(world, command, option, value, out=world.root / "out")
    assert_refused(result, option, value, seconds=seconds)
    assert state(world.root) == before


def test_sampler_table_out_of_range(world):
    world.hypothesis = world.child("seeded", "[sampler]\nseed = -1\n")
    for command in ("validate", *WRITERS):
        result, seconds = run_all(world, command, out=world.root / "out")
        assert_refused(result, "seeded.toml", "sampler.seed", seconds=seconds)


def test_seed_limits_are_the_samplers(world):
    assert MAX_SEED == 2**32 - 1
    for seed in ("0", str(MAX_SEED)):
        result, _ = run_all(world, "infer", "--seed", seed, out="/")
        assert_refused(result, "file-system root")  # the seed itself passed


# --- class 3: special files and extends ---------------------------------------------------


def _special(world: World, kind: str, path: Path) -> None:
    if path.exists():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_special_files_are_refused_without_blocking(world):
    """A FIFO, or a link to /dev/zero, as a data CSV or as the hypothesis (or what it
    extends): refused at once by every command (a read would wait for a writer, or
    never end). Through the console script in a child process with a timeout, so
    that a regression fails instead of hanging the suite; with it the worst case of
    the issue, ``llmsize infer --data D --out D``, which deleted the data."""
    cases = [
        (
            [
                "infer",
                "--data",
                str(world.data),
                "--hypothesis",
                str(world.hypothesis),
                "--out",
                str(world.data),
            ],
            str(world.data),
            "is the data folder",
        )  # fmt: skip
    ]
    for kind, what in (("fifo", "FIFO"), ("zero", "character device")):
        data = world.root / f"data-{kind}"
        shutil.copytree(world.data, data)
        _special(world, kind, data / ("prices.csv" if kind == "fifo" else "cuts.csv"))
        hyp = world.models / f"hyp-{kind}.toml"
        _special(world, kind, hyp)
        parent = world.models / f"extends-{kind}.toml"
        parent.write_text(f'extends = "{hyp.name}"\nname = "x"\n', encoding="utf-8")
        for command in ("validate", *WRITERS):
            out = [] if command == "validate" else ["--out", str(world.root / "out")]
            head = ["compare"] if command == "compare" else [command, "--hypothesis"]
            for data_dir, hypothesis, name, why in (
                (data, world.hypothesis, "prices.csv" if kind == "fifo" else "cuts.csv", what),
                (world.data, hyp, hyp.name, what),
                (world.data, parent, parent.name, "not a regular file"),
            ):
                args = [*head, str(hypothesis), "--data", str(data_dir), *out]
                cases.append((args, name, why))
    before = state(world.root)
    proc = run_guarded(BATCH, json.dumps([a for a, _, _ in cases]), cwd=world.work, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for (args, name, why), got in zip(cases, json.loads(proc.stdout), strict=True):
        assert got["exit"] == EXIT_INPUT, (args, got)
        assert got["stdout"] == "", (args, got)
        lines = got["stderr"].splitlines()
        assert len(lines) == 1, (args, got)
        assert lines[0].startswith(PREFIX), (args, got)
        assert name in lines[0], (args, lines[0])
        assert why in lines[0], (args, lines[0])
    assert state(world.root) == before
    no_staging(world.root, world.data)


def test_extends_chain_longer_than_the_limit(world):
    previous = "default.toml"
    for i in range(MAX_EXTENDS_DEPTH + 4):
        path = world.models / f"chain{i}.toml"
        path.write_text(f'extends = "{previous}"\nname = "chain{i}"\n', encoding="utf-8")
        previous = path.name
    before = state(world.root)
    for command in ("validate", *WRITERS):
        world.hypothesis = path
        result, seconds = run_all(world, command, out=world.root / "out")
        assert_refused(result, "extends", f"longer than {MAX_EXTENDS_DEPTH}", seconds=seconds)
    assert state(world.root) == before
    # A chain within the limit loads.
    world.hypothesis = world.models / f"chain{MAX_EXTENDS_DEPTH - 2}.toml"
    result, _ = run_all(world, "validate")
    assert result.exit_code == 0, result.output


# --- class 4: valid options that crashed --------------------------------------------------


def test_compare_at_short_settings_is_refused_clearly(world):
    before = state(world.root)
    result, seconds = run_all(
        world, "compare", "--draws", "10", "--tune", "10", "--chains", "2", out=world.root / "c"
    )
    assert_refused(result, "--draws", "PSIS-LOO needs at least 25", seconds=seconds)
    assert state(world.root) == before


def test_compare_checks_every_hypothesis_before_fitting(world):
    bad = world.child("bad", "[priors]\nmbu = { distribution = 'Constant', value = 2 }\n")
    result, seconds = invoke(
        "compare", world.hypothesis, bad, "--data", world.data, "--out", world.root / "c"
    )
    assert_refused(result, "bad.toml", "mbu", seconds=seconds)
    other = world.root / "elsewhere"
    other.mkdir()
    twin = other / "twin.toml"
    twin.write_text(f'extends = "{world.hypothesis}"\nname = "twin"\n', encoding="utf-8")
    result, seconds = invoke(
        "compare", world.hypothesis, twin, "--data", world.data, "--out", other / "cmp"
    )
    assert_refused(result, "twin.toml", seconds=seconds)


def test_usage_errors_are_one_line(world):
    for args in (["calibrate", "--kind", "nope"], ["infer", "--draws", "many"]):
        result, _ = invoke(*args)
        assert_refused(result, "Invalid value", "--help")


# --- class 5: what a user expects of numbers, dates and text ------------------------------


def test_byte_order_mark_is_accepted(world):
    for path in [*world.data.glob("*.csv"), world.hypothesis]:
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    result, _ = run_all(world, "validate")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: hypothesis 'default'; 9 serving epochs")


@pytest.mark.parametrize(
    ("file", "row", "column", "value", "fragment"),
    [
        ("prices.csv", 1, "input_usd_per_mtok", "1_0", "not a number"),
        ("prices.csv", 1, "input_usd_per_mtok", "\u0663", "not a number"),  # Arabic-Indic 3
        ("prices.csv", 2, "output_usd_per_mtok", "\u0661\u066b\u0665", "not a number"),
        ("prices.csv", 1, "input_usd_per_mtok", "\uff11\uff12", "not a number"),  # fullwidth
        ("prices.csv", 1, "input_usd_per_mtok", "0x10", "not a number"),
        ("prices.csv", 1, "input_usd_per_mtok", "1e400", "not a finite number"),
        ("known_models.csv", 3, "total_params_b", "4\u00a06", "not a number"),
        ("prices.csv", 3, "date", "20240105", "YYYY-MM-DD"),
        ("prices.csv", 3, "date", "2024-W01-1", "YYYY-MM-DD"),
        ("prices.csv", 3, "date", "2024-1-5", "YYYY-MM-DD"),
        ("speed.csv", 1, "date", "\u0662\u0660\u0662\u0663-12-19", "YYYY-MM-DD"),
    ],
)
def test_lenient_numbers_and_dates_are_refused(world, file, row, column, value, fragment):
    world.set_cell(file, row, column, value)
    before = state(world.root)
    for command in ("validate", *WRITERS):
        result, seconds = run_all(world, command, out=world.root / "out")
        assert_refused(result, f"{file}, row {row}, field '{column}'", fragment, seconds=seconds)
    assert state(world.root) == before


def test_plain_decimals_are_accepted(world):
    world.set_cell("prices.csv", 1, "input_usd_per_mtok", "1.5E-01")
    world.set_cell("prices.csv", 2, "input_usd_per_mtok", " .10 ")
    world.set_cell("prices.csv", 3, "input_usd_per_mtok", "+1")
    result, _ = run_all(world, "validate")
    assert result.exit_code == 0, result.output


# --- system errors and the tool's own faults -------------------------------------------


def test_system_error_is_one_line_naming_its_path(world, monkeypatch):
    import errno

    from llmsize.inputs import checks

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(world.root / "x.csv"))

    monkeypatch.setattr(checks, "load_inputs", disk_full)
    result, _ = run_all(world, "validate")
    assert_refused(result, str(world.root / "x.csv"), "No space left on device")


def test_system_error_while_writing_removes_the_staging_folder(world):
    import errno

    from llmsize.outputs import io

    def write_until_full():
        with io.staged_output(world.prev) as tmp:
            (tmp / "summary.csv").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "posterior.nc"))

    before = state(world.root)
    with pytest.raises(LlmsizeError, match="cannot write the report: No space left") as err:
        write_until_full()
    assert len(str(err.value).splitlines()) == 1
    assert state(world.root) == before
    no_staging(world.root / "reports")


def test_own_fault_is_one_line_asking_for_a_bug_report(world, monkeypatch):
    from llmsize.inputs import checks

    def bug(*args, **kwargs):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(checks, "load_inputs", bug)
    result, _ = run_all(world, "validate")
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(PREFIX + "internal error (ZeroDivisionError: division by zero")
    assert "bug in llmsize" in lines[0]
    assert "LLMSIZE_DEBUG=1" in lines[0]
    monkeypatch.setenv("LLMSIZE_DEBUG", "1")
    result, _ = run_all(world, "validate")
    assert isinstance(result.exception, ZeroDivisionError)


# --- the Python entry point ----------------------------------------------------------------


def test_run_inference_checks_before_fitting(world):
    before = state(world.root)
    for kwargs, fragment in (
        ({"out_dir": world.data}, "data folder"),
        ({"out_dir": world.root / "out", "seed": -1}, "--seed"),
        ({"out_dir": world.root / "out", "chains": 10**6}, "--chains"),
        ({"out_dir": world.root / "out", "overrides": ["mbu.distribution=Constant", "mbu.value=-1"]}, "mbu"),
    ):  # fmt: skip
        with pytest.raises(LlmsizeError, match=fragment.replace("-", r"\-")) as err:
            pipeline.run_inference(data_dir=world.data, hypothesis_path=world.hypothesis, **kwargs)
        assert len(str(err.value).splitlines()) == 1
    assert state(world.root) == before


# --- property: every entry point, generated bad inputs -----------------------------------

ENTRY_POINTS = ("infer", "validate", "compare", "calibrate", "run_inference")
#: Entry points that write (and so check) an output folder and take sampler options.
OUTPUT_ENTRY_POINTS = ("infer", "compare", "calibrate", "run_inference")

#: Cells no column of their kind accepts.
BAD_CELLS = {
    "number": ["1_0", "\u0663", "\u0661\u0660", "\uff11", "0x10", "1e400", "nan", "-inf", "7b",
               "1,5", "--1", "1e", "\u2212" + "1"],
    "date": ["20240105", "2024-W01-1", "2024-1-5", "2024-02-30", "24-01-05",
             "\u0662\u0660\u0662\u0664-01-05", "2024-01-05T00:00", "2024/01/05"],
    "name": ["a\x07b", "\x1b[2J", "x\u2028y", "tab\there", "nul\x00", "\x85", "del\x7f"],
}  # fmt: skip
NUMBER_KINDS = {"positive", "nonnegative", "bits"}
#: (file, column, kind) of every checked column of the tiny data's files.
CHECKED = [
    (name, col.name, "number" if col.kind in NUMBER_KINDS else col.kind)
    for name, cols in SCHEMAS.items()
    if name in TINY_ROWS
    for col in cols
    if (col.kind in NUMBER_KINDS or col.kind in ("date", "name")) and col.name in TINY_ROWS[name][0]
]
REQUIRED = [
    (name, col.name)
    for name, cols in SCHEMAS.items()
    if name in TINY_ROWS
    for col in cols
    if not col.may_be_absent and col.name in TINY_ROWS[name][0]
]


@st.composite
def bad_cell(draw) -> tuple:
    file, column, kind = draw(st.sampled_from(CHECKED))
    row = draw(st.integers(1, len(TINY_ROWS[file]) - 1))
    return ("cell", file, row, column, draw(st.sampled_from(BAD_CELLS[kind])))


def _bad_prior_values(name: str) -> list[str]:
    """TOML prior tables that quantity ``name`` cannot have."""
    rng = PRIOR_RANGES[name]
    out = [
        f"{{ distribution = 'Normal', mu = {min(max(rng.centre.low, -1e5), 0)}, sigma = 1e300 }}",
        "{ distribution = 'TruncatedNormal', mu = 0, sigma = 1, lower = 3, upper = -3 }",
        f"{{ distribution = 'HalfNormal', sigma = {rng.max_sigma * 10 + 1e6} }}",
        "{ distribution = 'LogNormal', mu = 0, sigma = 1e9 }",
        "{ distribution = 'Normal', mu = inf, sigma = 1 }",
        "{ distribution = 'Beta', alpha = -1, beta = 1 }",
    ]
    for low in (rng.values.low, rng.centre.low):
        if abs(low) < float("inf"):
            out.append(f"{{ distribution = 'Constant', value = {low - 1 - abs(low)} }}")
    for high in (rng.values.high, rng.centre.high):
        if abs(high) < float("inf"):
            out.append(f"{{ distribution = 'Constant', value = {high + 1 + abs(high)} }}")
    return out


@st.composite
def bad_prior(draw) -> tuple:
    name = draw(st.sampled_from(sorted(PRIOR_RANGES)))
    table = draw(st.sampled_from(_bad_prior_values(name)))
    return ("prior", name, table, draw(st.booleans()))  # in the file, or by --set


BAD_OUTS = ["data", "data/sub", "/", ".", "models", "models/sub", "root", "file", "file/sub",
            "foreign", "long", "link-to-data", "loop", "fifo"]  # fmt: skip
BAD_OPTIONS = [("--seed", -1), ("--seed", 2**32), ("--seed", 2**64), ("--seed", -(2**63)),
               ("--chains", 0), ("--chains", MAX_CHAINS + 1), ("--chains", 10**6),
               ("--draws", 0), ("--tune", -5)]  # fmt: skip


def bad_components(entry: str):
    """A change that makes the run fail for sure, whatever else is damaged."""
    options = [
        bad_cell(),
        bad_prior(),
        st.tuples(st.just("encoding"), st.sampled_from(sorted(TINY_ROWS)),
                  st.sampled_from(["latin-1", "utf-16", "cp1252"])),
        st.tuples(st.just("missing"), st.sampled_from(REQUIRED)),
        st.tuples(st.just("special"), st.sampled_from(sorted(TINY_ROWS)),
                  st.sampled_from(["fifo", "zero", "dir"])),
    ]  # fmt: skip
    if entry in OUTPUT_ENTRY_POINTS:
        options.append(st.tuples(st.just("out"), st.sampled_from(BAD_OUTS)))
        choices = BAD_OPTIONS if entry != "calibrate" else BAD_OPTIONS[4:]
        options.append(st.tuples(st.just("option"), st.sampled_from(choices)))
    return st.one_of(*options)


@st.composite
def bad_cases(draw, entry: str) -> dict[str, Any]:
    bad = draw(bad_components(entry))
    extra = draw(st.one_of(st.none(), damaged_data()))
    if extra is not None and bad[0] in ("cell", "encoding", "special") and extra["name"] == bad[1]:
        extra = None  # the extra damage must not undo the sure one
    if extra is not None and bad[0] == "missing" and extra["name"] == bad[1][0]:
        extra = None
    return {"bad": bad, "extra": extra}


@contextmanager
def scratch_world() -> Iterator[World]:
    import tempfile

    old = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="llmsize-bad-") as tmp:
        root = Path(tmp).resolve()
        world = World(root)
        os.chdir(world.work)
        try:
            yield world
        finally:
            os.chdir(old)


def build_case(world: World, case: dict[str, Any], entry: str) -> dict[str, Any]:
    """Lay the case out in ``world``; the command's arguments."""
    if case["extra"] is not None:
        shutil.rmtree(world.data)
        make_data_dir(world.root, case["extra"])
    kind, *args = case["bad"]
    run: dict[str, Any] = {"out": world.root / "out", "options": [], "overrides": []}
    if kind == "cell":
        file, row, column, value = args
        rows = [list(r) for r in TINY_ROWS[file]]
        rows[row][rows[0].index(column)] = value
        write_rows(world.data / file, rows)
    elif kind == "prior":
        name, table, by_set = args
        if by_set:
            import tomllib

            parsed = tomllib.loads(f"v = {table}")["v"]
            run["overrides"] = [f"{name}.distribution={parsed['distribution']}"] + [
                f"{name}.{k}={v}" for k, v in parsed.items() if k != "distribution"
            ]
        else:
            world.hypothesis = world.child("bad", f"[priors]\n{name} = {table}\n")
    elif kind == "encoding":
        file, encoding = args
        rows = [list(r) for r in TINY_ROWS[file]]
        rows[-1][-1] = "Zürich café"
        write_rows(world.data / file, rows, encoding=encoding)
    elif kind == "missing":
        file, column = args[0]
        rows = [list(r) for r in TINY_ROWS[file]]
        at = rows[0].index(column)
        write_rows(world.data / file, [r[:at] + r[at + 1 :] for r in rows])
    elif kind == "special":
        file, what = args
        path = world.data / file
        if path.exists() or path.is_symlink():
            path.unlink()
        if what == "dir":
            path.mkdir()
        else:
            _special(world, what, path)
    elif kind == "out":
        (name,) = args
        (world.root / "file").write_bytes(b"a file\n")
        (world.root / "foreign").mkdir()
        (world.root / "foreign" / "notes.txt").write_bytes(b"notes\n")
        (world.root / "link-to-data").symlink_to(world.data)
        (world.root / "loop").symlink_to(world.root / "loop")
        os.mkfifo(world.root / "fifo")
        run["out"] = {
            "data": world.data,
            "data/sub": world.data / "sub",
            "models": world.models,
            "models/sub": world.models / "sub",
            "root": world.root,
            "long": world.root / ("z" * 300),
            "/": Path("/"),
            ".": Path("."),
        }.get(name, world.root / name)
    elif kind == "option":
        ((option, value),) = args
        run["options"] = [option, str(value)]
    return run


def check_entry_point(entry: str, case: dict[str, Any]) -> None:
    with scratch_world() as world:
        run = build_case(world, case, entry)
        before = state(world.root)
        overrides = [a for o in run["overrides"] for a in ("--set", o)]
        if entry == "run_inference":
            kwargs = {
                o.lstrip("-"): int(v)
                for o, v in zip(run["options"][::2], run["options"][1::2], strict=True)
            }
            try:
                pipeline.run_inference(
                    data_dir=world.data,
                    hypothesis_path=world.hypothesis,
                    out_dir=run["out"],
                    overrides=run["overrides"],
                    **kwargs,
                )
            except LlmsizeError as err:
                text = str(err)
                assert len(text.splitlines()) == 1, text
                assert ": " in text, text
                outcome = type(err).__name__
            else:
                raise AssertionError("a bad input was accepted")
        else:
            out = [] if entry == "validate" else ["--out", run["out"]]
            result, _ = run_all(world, entry, *out, *run["options"], *overrides)
            line = assert_refused(result)
            assert ": " in line[len(PREFIX) :], line
            outcome = line[len(PREFIX) :].replace(str(world.root), "~")[:40]
        assert state(world.root) == before
        no_staging(world.root, world.root / "reports")
        if currently_in_test_context():
            event(f"{case['bad'][0]}: {outcome}")


#: Examples per entry point: a few in the fast profile, 1,000 in the long one.
CONTRACT = settings(
    PROPERTY,
    max_examples=20 if PROFILE == "fast" else 1000,
    suppress_health_check=[*PROPERTY.suppress_health_check, HealthCheck.function_scoped_fixture],
)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("entry", ENTRY_POINTS)
@CONTRACT
@given(data=st.data())
def test_every_entry_point_refuses_generated_bad_input(entry, data):
    check_entry_point(entry, data.draw(bad_cases(entry)))


def test_contract_checker_sees_a_good_run_reach_the_sampler():
    """Guard of the guard: a good input does reach the (replaced) sampler, so the
    property above would notice a bad input that slipped through."""
    with scratch_world() as world, pytest.raises(SamplingReached):
        pipeline.run_inference(
            data_dir=world.data, hypothesis_path=world.hypothesis, out_dir=world.root / "out"
        )
