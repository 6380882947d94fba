"""Input that cannot break it: property-based tests of every input entry point.

The loaders (``load_dataset``), the hypothesis parser (``load_hypothesis``), the
``--set KEY=VALUE`` overrides and ``llmsize validate`` are fed thousands of
malformed inputs made with the `hypothesis <https://hypothesis.readthedocs.io>`_
library: mutated CSV cells, columns, rows and bytes of a copy of
``tests/fixtures/tiny``; random TOML documents built from the real schema of
``models/default.toml``; ``extends`` chains with cycles and missing parents;
random bytes; random override strings. Every case must end either in success
(a valid :class:`~llmsize.inputs.data.Dataset` or :class:`~llmsize.inputs.hypothesis.Hypothesis`)
or in the project's one-line error (a :class:`~llmsize.exceptions.DataError` or
:class:`~llmsize.exceptions.HypothesisError` that names the file, and the row
and field where they apply), never in any other exception. Loading must execute
nothing from the input and write nothing.

Case counts come from two settings profiles registered below:

- ``fast`` (the default): 100 examples per property (the CLI one: 50), about
  15 s for the whole file on two cores;
- ``full`` (also called ``long``): 1000 examples per property, about 100 s,
  selected with the environment variable ``LLMSIZE_HYPOTHESIS_PROFILE=full``::

      LLMSIZE_HYPOTHESIS_PROFILE=full python -m pytest -q tests/test_properties.py

``tests/test_bad_input.py`` uses the same profiles for its property of every
entry point (a few cases each in ``fast``, 1,000 each in ``full``/``long``).

Both are derandomized (the same examples every run, no example database), so
a failure reproduces exactly. ``--hypothesis-show-statistics`` shows how the
cases of each property ended (success, or which error). Inputs that once broke
the loaders are pinned as ``@example`` cases, so the fast run keeps them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from llmsize.cli import EXIT_INPUT, cli
from llmsize.exceptions import DataError, HypothesisError, LlmsizeError
from llmsize.inputs.data import SCHEMAS, Dataset, load_dataset
from llmsize.inputs.hypothesis import DISTRIBUTIONS, Hypothesis, Priors, load_hypothesis

from .conftest import DEFAULT_HYPOTHESIS, TINY_DIR

# --- settings profiles ------------------------------------------------------------

_COMMON = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
}
settings.register_profile("fast", max_examples=100, **_COMMON)
settings.register_profile("full", max_examples=1000, **_COMMON)
# The name issue 13 gives the long run; the same profile as "full".
settings.register_profile("long", max_examples=1000, **_COMMON)

PROFILE_ENV = "LLMSIZE_HYPOTHESIS_PROFILE"
PROFILE = os.environ.get(PROFILE_ENV, "fast")
if PROFILE not in ("fast", "full", "long"):
    raise ValueError(f"{PROFILE_ENV} must be 'fast', 'full' or 'long', got {PROFILE!r}")

#: Settings of each property (applied per test, so other modules are unaffected).
PROPERTY = settings(settings.get_profile(PROFILE))
#: The CLI property also builds the design: fewer cases in the fast profile.
CLI_PROPERTY = settings(PROPERTY, max_examples=50 if PROFILE == "fast" else 1000)

# --- the valid starting points ------------------------------------------------------

HIDDEN_SIZE_ROWS = [
    ["model", "date", "hidden_size", "source"],
    ["closed-x", "2024-03-14", "4096", "synthetic test fixture"],
    ["closed-y", "2024-03-14", "4608", "synthetic test fixture"],
]


def _read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


#: Rows (header first) of every file of the tiny data directory.
TINY_ROWS: dict[str, list[list[str]]] = {p.name: _read_rows(p) for p in TINY_DIR.glob("*.csv")}
DATA_FILES = sorted([*TINY_ROWS, "hidden_size.csv"])
DEFAULT_RAW: dict[str, Any] = tomllib.loads(DEFAULT_HYPOTHESIS.read_text(encoding="utf-8"))

#: A marker file that any execution of input would create (it must never exist).
MARKER = Path(tempfile.gettempdir()) / f"llmsize-property-pwned-{os.getpid()}"
EXEC_PAYLOADS = [
    f"__import__('os').system('touch {MARKER}')",
    f"$(touch {MARKER})",
    f"`touch {MARKER}`",
    f"; touch {MARKER}",
    f"{{{{ __import__('os').system('touch {MARKER}') }}}}",
    f"!!python/object/apply:os.system ['touch {MARKER}']",
    f"=cmd|' /C touch {MARKER}'!A0",
]
PATH_PAYLOADS = ["../../etc/x", "/etc/passwd", "..", ".", "~/x", "C:\\x", "a/../../b", "\\\\srv\\x"]


# --- outcome checks -----------------------------------------------------------------


def tree(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every path under ``root`` with its kind, size and mtime."""
    out = {}
    for path in sorted(root.rglob("*")):
        st_ = path.lstat()
        kind = "dir" if path.is_dir() else "file"
        out[str(path.relative_to(root))] = (kind, st_.st_size, st_.st_mtime_ns)
    return out


def assert_one_line(err: LlmsizeError, *, under: Path | None, allow: tuple[str, ...] = ()) -> None:
    """``err`` is the project's one-line error, naming a file under ``under`` (if given)."""
    text = str(err)
    assert text, "empty error message"
    assert len(text.splitlines()) == 1, f"error is not one line: {text!r}"
    assert err.message, text
    assert err.file, f"error names no file: {text!r}"
    assert text.startswith(str(err.file)), text
    if err.row is not None:
        assert isinstance(err.row, int), text
        assert err.row >= 1, text
    if err.field is not None:
        assert isinstance(err.field, str), text
    file = str(err.file)
    assert (
        under is None or file in allow or file.startswith(allow) or file.startswith(str(under))
    ), f"error names {file!r}, not a file under {under}"
    assert not MARKER.exists(), "input was executed"


def outcome(
    call: Callable[[], Any], error: type[LlmsizeError], *, under: Path | None, allow=()
) -> Any:
    """Run ``call``: its result, or None after checking its one-line error.

    Any exception other than ``error`` propagates and fails the property.
    """
    try:
        result = call()
    except error as err:
        assert_one_line(err, under=under, allow=allow)
        if currently_in_test_context():  # --hypothesis-show-statistics tallies them
            event(f"{type(err).__name__}: {err.message.split(':')[0].split(' (')[0][:40]}")
        return None
    assert not MARKER.exists(), "input was executed"
    if currently_in_test_context():
        event("success")
    return result


@contextmanager
def scratch() -> Iterator[Path]:
    """A fresh temporary directory per example (function-scoped fixtures are not)."""
    with tempfile.TemporaryDirectory(prefix="llmsize-prop-") as tmp:
        yield Path(tmp).resolve()


# --- strategies: CSV cells and data directories -------------------------------------

SPECIAL_CELLS = [
    "",
    " ",
    "\t",
    "nan",
    "NaN",
    "-nan",
    "inf",
    "-inf",
    "Infinity",
    "1e400",
    "-1e400",
    "1e-400",
    "-1",
    "0",
    "-0",
    "0.0",
    "1e308",
    "4",
    "8",
    "16",
    "16.0",
    "3",
    "1_000",
    "0x10",
    "１２",
    "٣",
    "7b",
    "True",
    "None",
    "null",
    "2023-02-30",
    "2023-13-01",
    "20230101",
    "2023-01-01T00:00",
    "2023-W01-1",
    "9999-12-31",
    "0001-01-01",
    "0000-01-01",
    '"',
    '""',
    "a,b",
    "a\nb",
    "a\r\nb",
    "\r",
    "\x00",
    "\ufeff",
    "\u2028",
    "\x85",
    "é",
    "💥",
    "x" * 140_000,  # over csv.field_size_limit()
    *EXEC_PAYLOADS,
    *PATH_PAYLOADS,
    "closed-x",
    "small-7b",
    "HostA",
    "A100-80GB",
    "H100-SXM",
    "MMLU",
]
COLUMN_NAMES = sorted({c.name for cols in SCHEMAS.values() for c in cols})
#: Header names that once broke the loader, or nearly: the internal "_row", line breaks.
TRICKY_NAMES = [
    "_row",
    "",
    " model ",
    "Model",
    "model\n",
    "mo\ndel",
    "a\rb",
    "\u2028",
    "\ufeffmodel",
]
NAMES = st.one_of(
    st.sampled_from(COLUMN_NAMES), st.sampled_from(TRICKY_NAMES), st.text(max_size=12)
)
CELLS = st.one_of(
    st.sampled_from(SPECIAL_CELLS),
    st.text(max_size=16),
    st.integers().map(str),
    st.integers(min_value=-(10**400), max_value=10**400).map(str),
    st.floats().map(repr),
    st.floats(min_value=-1e6, max_value=1e6).map(lambda x: f"{x:g}"),
    st.dates().map(dt.date.isoformat),
)
IDX = st.integers(min_value=0, max_value=1000)
ROW_OPS = st.one_of(
    st.tuples(st.just("cell"), IDX, IDX, CELLS),
    st.tuples(st.just("rename"), IDX, NAMES),
    st.tuples(st.just("drop_col"), IDX),
    st.tuples(st.just("dup_col"), IDX),
    st.tuples(st.just("extra_col"), NAMES, CELLS),
    st.tuples(st.just("dup_row"), IDX),
    st.tuples(st.just("drop_row"), IDX),
    st.tuples(st.just("ragged"), IDX, st.integers(min_value=-4, max_value=4)),
    st.tuples(st.just("new_row"), st.lists(CELLS, max_size=9)),
    st.tuples(st.just("blank_row"), IDX),
    st.tuples(st.just("header_only")),
)
BYTE_OPS = st.one_of(
    st.tuples(st.just("truncate"), IDX),
    st.tuples(st.just("insert"), IDX, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("bom")),
    st.tuples(st.just("utf16")),
    st.tuples(st.just("latin1")),
    st.tuples(st.just("cr")),
    st.tuples(st.just("replace"), st.binary(max_size=64)),
    st.tuples(st.just("empty")),
    st.tuples(st.just("delete")),
    st.tuples(st.just("directory")),
)


def apply_row_op(rows: list[list[str]], op: tuple) -> None:
    """Mutate ``rows`` (header first) in place; indices wrap around."""
    kind, *args = op
    width = max((len(r) for r in rows), default=0)
    if kind == "header_only":
        del rows[1:]
    elif kind == "new_row":
        rows.append(list(args[0]))
    elif not rows:
        rows.append(["model"])
    elif kind == "cell":
        r, c, value = args
        row = rows[r % len(rows)]
        if row:
            row[c % len(row)] = value
        else:
            row.append(value)
    elif kind == "rename" and rows[0]:
        rows[0][args[0] % len(rows[0])] = args[1]
    elif kind == "drop_col" and width:
        c = args[0] % width
        for row in rows:
            if c < len(row):
                del row[c]
    elif kind == "dup_col" and width:
        c = args[0] % width
        for row in rows:
            if c < len(row):
                row.insert(c, row[c])
    elif kind == "extra_col":
        rows[0].append(args[0])
        for row in rows[1:]:
            row.append(args[1])
    elif kind == "dup_row":
        rows.insert(args[0] % len(rows), list(rows[args[0] % len(rows)]))
    elif kind == "drop_row":
        del rows[args[0] % len(rows)]
    elif kind == "ragged":
        row = rows[args[0] % len(rows)]
        if args[1] > 0:
            row.extend(["x"] * args[1])
        else:
            del row[len(row) + args[1] :]
    elif kind == "blank_row":
        rows.insert(args[0] % (len(rows) + 1), [])


def to_csv(rows: list[list[str]], lineterminator: str = "\n") -> str:
    """CSV text (with "\n", a lone "\r" in a cell is left unquoted, as by hand)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator=lineterminator).writerows(rows)
    return buf.getvalue()


def write_file(path: Path, text: str, byte_ops: list[tuple]) -> None:
    """Write ``text`` to ``path`` as UTF-8, then apply byte-level damage."""
    blob = text.encode("utf-8")
    for kind, *args in byte_ops:
        if kind == "truncate":
            blob = blob[: args[0] % (len(blob) + 1)]
        elif kind == "insert":
            at = args[0] % (len(blob) + 1)
            blob = blob[:at] + args[1] + blob[at:]
        elif kind == "bom":
            blob = b"\xef\xbb\xbf" + blob
        elif kind == "utf16":
            blob = blob.decode("utf-8", "replace").encode("utf-16")
        elif kind == "latin1":
            blob = blob.decode("utf-8", "replace").encode("latin-1", "replace") + b"\xe9\xff"
        elif kind == "cr":
            blob = blob.replace(b"\n", b"\r")
        elif kind == "replace":
            blob = args[0]
        elif kind == "empty":
            blob = b""
    kinds = {op[0] for op in byte_ops}
    if path.exists():
        path.unlink()
    if "directory" in kinds:
        path.mkdir()
    elif "delete" not in kinds:
        path.write_bytes(blob)


#: Other entries of a data directory: unknown files (maybe binary) and folders.
EXTRAS = st.one_of(
    st.tuples(
        st.sampled_from(["extra.csv", "notes.csv", ".hidden.csv", "prices.CSV", "README"]),
        st.one_of(st.binary(max_size=32), st.none()),  # None: a folder
    ),
)


@st.composite
def damaged_data(draw) -> dict[str, Any]:
    """One file of the tiny data (or an added hidden_size.csv) and its damage."""
    name = draw(st.sampled_from(DATA_FILES))
    return {
        "name": name,
        "hidden": name == "hidden_size.csv" or draw(st.booleans()),
        "row_ops": draw(st.lists(ROW_OPS, max_size=4)),
        "byte_ops": draw(st.lists(BYTE_OPS, max_size=2)),
        "extras": draw(st.lists(EXTRAS, max_size=2)),
    }


def make_data_dir(root: Path, case: dict[str, Any]) -> Path:
    data = root / "data"
    data.mkdir()
    files = dict(TINY_ROWS)
    if case["hidden"]:
        files["hidden_size.csv"] = HIDDEN_SIZE_ROWS
    for name, rows in files.items():
        rows = [list(r) for r in rows]
        if name != case["name"]:
            (data / name).write_text(to_csv(rows), encoding="utf-8")
            continue
        for op in case["row_ops"]:
            apply_row_op(rows, op)
        write_file(data / name, to_csv(rows), case["byte_ops"])
    for name, blob in case.get("extras", []):
        if (data / name).exists():
            continue
        if blob is None:
            (data / name).mkdir()
        else:
            (data / name).write_bytes(blob)
    return data


# --- strategies: hypothesis files -----------------------------------------------------


def _paths(node: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in node.items():
        out.append(prefix + key)
        if isinstance(value, dict):
            out += _paths(value, prefix + key + ".")
    return out


KNOWN_PATHS = sorted(set(_paths(DEFAULT_RAW)))
PARAMS = ["distribution", "mu", "sigma", "alpha", "beta", "lower", "upper", "value", "sd", "tau"]
DIST_NAMES = st.one_of(
    st.sampled_from(
        [*DISTRIBUTIONS, "normal", "Norml", "Lognormal", "HalfCauchy", "", "Beta ", "Normal\n"]
    ),
    st.text(max_size=10),
)
SCALARS = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),
    st.sampled_from([0.0, -0.0, -1.0, 1e-300, 1e300, math.inf, -math.inf, math.nan]),
    st.text(max_size=12),
    st.sampled_from(["1.0", "Normal", "", *EXEC_PAYLOADS, *PATH_PAYLOADS]),
    st.dates(),
    st.datetimes(),
    st.times(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(PARAMS), st.text(max_size=6)), inner, max_size=3),
    ),
    max_leaves=6,
)


@st.composite
def prior_tables(draw) -> dict[str, Any]:
    """A prior table: maybe a real distribution, maybe with typos, gaps and extras."""
    table: dict[str, Any] = {}
    if draw(st.integers(0, 9)) > 0:
        table["distribution"] = draw(st.one_of(DIST_NAMES, SCALARS))
    dist = (
        DISTRIBUTIONS.get(table.get("distribution"))
        if isinstance(table.get("distribution"), str)
        else None
    )
    names = [k for k in dist.model_fields if k != "distribution"] if dist else PARAMS[1:]
    for param in names:
        if draw(st.integers(0, 4)) > 0:
            table[param] = draw(
                st.one_of(
                    st.floats(min_value=-10, max_value=10),
                    st.floats(min_value=-10, max_value=10),
                    SCALARS,
                )
            )
    for _ in range(draw(st.integers(0, 2))):
        table[draw(st.one_of(st.sampled_from(PARAMS), st.text(max_size=6)))] = draw(VALUES)
    return table


PRIOR_NAMES = st.one_of(
    st.sampled_from(list(Priors.model_fields)),
    st.sampled_from(["mbuu", "log10_params", "active_frac", "Mbu"]),
    st.text(max_size=10),
)
PATTERNS = st.one_of(
    st.sampled_from(["closed-*", "*", "closed-x", "[", "gpt-3.5-turbo*", "a.b", ""]),
    st.text(max_size=10),
)
HYP_OPS = st.one_of(
    st.tuples(
        st.just("set"), st.one_of(st.sampled_from(KNOWN_PATHS), st.text(max_size=20)), VALUES
    ),
    st.tuples(st.just("delete"), st.sampled_from(KNOWN_PATHS)),
    st.tuples(st.just("prior"), PRIOR_NAMES, prior_tables()),
    st.tuples(
        st.just("model_prior"),
        PATTERNS,
        st.one_of(st.sampled_from(["log10_params_total_b", "active_fraction"]), PRIOR_NAMES),
        prior_tables(),
    ),
    st.tuples(
        st.just("evidence"),
        st.dictionaries(
            st.one_of(
                st.sampled_from(["hidden_size", "hidden_size_log_sigma", "vocab_size"]),
                st.text(max_size=8),
            ),
            st.one_of(st.booleans(), st.integers(-5, 10**6), st.floats(), SCALARS),
            max_size=3,
        ),
    ),
)


def apply_hyp_op(doc: dict[str, Any], op: tuple) -> None:
    kind, *args = op
    if kind in ("set", "delete"):
        parts = args[0].split(".")
        node = doc
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                if kind == "delete":
                    return
                node[part] = {}
            node = node[part]
        if kind == "set":
            node[parts[-1]] = args[1]
        else:
            node.pop(parts[-1], None)
    elif kind == "prior":
        doc.setdefault("priors", {})
        if isinstance(doc["priors"], dict):
            doc["priors"][args[0]] = args[1]
    elif kind == "model_prior":
        doc.setdefault("model_priors", {})
        if isinstance(doc["model_priors"], dict):
            doc["model_priors"].setdefault(args[0], {})
            if isinstance(doc["model_priors"][args[0]], dict):
                doc["model_priors"][args[0]][args[1]] = args[2]
    elif kind == "evidence":
        doc["evidence"] = args[0]


def toml_string(text: str) -> str:
    """A TOML basic string (control characters escaped)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(type(value))


def to_toml(doc: dict[str, Any]) -> str:
    """A TOML document: one ``"key" = value`` line per top-level key."""
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in doc.items())


@st.composite
def hypothesis_docs(draw) -> dict[str, Any]:
    """A hypothesis mapping: a child of default.toml, or a full standalone file."""
    if draw(st.booleans()):
        doc: dict[str, Any] = {"extends": "default.toml"}
    else:
        doc = tomllib.loads(DEFAULT_HYPOTHESIS.read_text(encoding="utf-8"))
    if draw(st.integers(0, 4)) == 0:
        doc["name"] = draw(st.one_of(st.text(max_size=10), SCALARS))
    for op in draw(st.lists(HYP_OPS, max_size=4)):
        apply_hyp_op(doc, op)
    return doc


def hypothesis_dir(root: Path) -> Path:
    models = root / "models"
    models.mkdir()
    shutil.copy(DEFAULT_HYPOTHESIS, models / "default.toml")
    return models


OVERRIDE_KEYS = st.one_of(
    st.sampled_from(KNOWN_PATHS),
    st.sampled_from([p.removeprefix("priors.") for p in KNOWN_PATHS if p.startswith("priors.")]),
    st.sampled_from(["mbu.distribution", "model_priors.closed-*.active_fraction", "priors"]),
    st.text(min_size=1, max_size=16),
)
OVERRIDE_VALUES = st.one_of(
    st.sampled_from(
        ["4", "-1", "0", "inf", "nan", '"Beta"', "Beta", "[16, 8]", "{ a = 1 }", "2023-10-01"]
    ),
    SCALARS.map(toml_value),
    st.text(max_size=16),
    st.sampled_from(EXEC_PAYLOADS),
)
OVERRIDE_ITEMS = st.builds(lambda k, v: f"{k}={v}", OVERRIDE_KEYS, OVERRIDE_VALUES)
#: Mostly KEY=VALUE (so that the values get checked), sometimes any text.
OVERRIDES = st.lists(st.one_of(*[OVERRIDE_ITEMS] * 4, st.text(max_size=24)), max_size=4)


# --- properties: the data directory ----------------------------------------------------


def test_tiny_copy_is_valid():
    """The starting point of the data properties loads (with and without hidden_size)."""
    for hidden in (False, True):
        with scratch() as tmp:
            case = {"name": "prices.csv", "hidden": hidden, "row_ops": [], "byte_ops": []}
            data = load_dataset(make_data_dir(tmp, case))
            assert isinstance(data, Dataset)
            assert len(data.hidden_size) == (2 if hidden else 0)


def _case(name: str, *row_ops: tuple, extras=()) -> dict[str, Any]:
    return {
        "name": name,
        "hidden": True,
        "row_ops": list(row_ops),
        "byte_ops": [],
        "extras": extras,
    }


@PROPERTY
@given(case=damaged_data())
# Regressions: a header column "_row" (the loader's own row number) with a
# duplicate key or a cross-file error was a TypeError; a duplicated header
# with a line break gave a two-line error.
@example(case=_case("prices.csv", ("extra_col", "_row", "x"), ("dup_row", 1)))
@example(case=_case("gpu_prices.csv", ("extra_col", "_row", "x"), ("cell", 1, 0, "B200")))
@example(case=_case("providers.csv", ("extra_col", "a\nb", "x"), ("extra_col", "a\nb", "y")))
@example(case=_case("speed.csv", extras=[("extra.csv", None)]))
def test_load_dataset_never_breaks(case):
    with scratch() as tmp:
        data_dir = make_data_dir(tmp, case)
        before = tree(tmp)
        result = outcome(lambda: load_dataset(data_dir), DataError, under=data_dir)
        assert tree(tmp) == before, "loading wrote to the data directory"
        if result is not None:
            assert isinstance(result, Dataset)
            assert len(result.prices) > 0


NUMERIC = [
    (name, c.name)
    for name, cols in SCHEMAS.items()
    for c in cols
    if c.kind in ("positive", "bits") and name in TINY_ROWS
]


@PROPERTY
@given(
    target=st.sampled_from(NUMERIC),
    row=IDX,
    value=st.one_of(
        st.text(min_size=1, max_size=12),
        st.sampled_from([c for c in SPECIAL_CELLS if len(c) < 1000]),
    ),
)
def test_bad_number_names_file_row_and_field(target, row, value):
    """A cell that is not a finite number in range is reported at its row and field."""
    name, column = target
    col = next(c for c in SCHEMAS[name] if c.name == column)
    stripped = value.strip()
    assume(stripped or col.required)  # an optional cell may be empty
    if stripped:
        try:
            number = float(stripped)
        except ValueError:
            number = math.nan
        assume(not (math.isfinite(number) and number > 0))  # a valid number: no error
    rows = [list(r) for r in TINY_ROWS[name]]
    assume(column in rows[0])  # a column that may be absent, and is, in the fixture
    r = 1 + row % (len(rows) - 1)
    rows[r][rows[0].index(column)] = value
    with scratch() as tmp:
        data_dir = make_data_dir(tmp, _case(""))
        (data_dir / name).write_text(to_csv(rows, "\r\n"), encoding="utf-8", newline="")
        with pytest.raises(DataError) as info:
            load_dataset(data_dir)
    assert_one_line(info.value, under=data_dir)
    assert info.value.file == str(data_dir / name)
    assert (info.value.row, info.value.field) == (r, column), str(info.value)


# --- properties: hypothesis files -----------------------------------------------------


def test_default_copy_is_valid():
    with scratch() as tmp:
        models = hypothesis_dir(tmp)
        (models / "child.toml").write_text(to_toml({"extends": "default.toml"}), "utf-8")
        assert isinstance(load_hypothesis(models / "child.toml"), Hypothesis)
        (models / "full.toml").write_text(to_toml(DEFAULT_RAW), "utf-8")
        full = load_hypothesis(models / "full.toml")
        assert full.model_digest() == load_hypothesis(models / "default.toml").model_digest()
        assert tomllib.loads(to_toml(DEFAULT_RAW)) == DEFAULT_RAW


def _check_hypothesis(result: Any) -> None:
    if result is not None:
        assert isinstance(result, Hypothesis)
        assert len(result.digest()) == 64
        assert len(result.model_digest()) == 64


@PROPERTY
@given(doc=hypothesis_docs())
# Regressions: keys and patterns with line breaks gave multi-line errors.
@example(doc={"extends": "default.toml", "priors": {"\r": {"distribution": "HalfNormal"}}})
@example(doc={"extends": "default.toml", "sampler": {"a\nb": 1}})
@example(
    doc={
        "extends": "default.toml",
        "model_priors": {"a\nb": {"active_fraction": {"distribution": "Normal", "mu": 0}}},
    }
)
@example(doc={"extends": "default.toml", "priors": {"mbu": {"distribution": "Beta\n", "alpha": 1}}})
def test_load_hypothesis_never_breaks(doc):
    with scratch() as tmp:
        models = hypothesis_dir(tmp)
        path = models / "h.toml"
        path.write_text(to_toml(doc), encoding="utf-8")
        before = tree(tmp)
        result = outcome(lambda: load_hypothesis(path), HypothesisError, under=models)
        assert tree(tmp) == before
        _check_hypothesis(result)


TEXT_DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), IDX),
    st.tuples(st.just("insert"), IDX, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("insert"), IDX, st.text(max_size=8).map(str.encode)),
    st.tuples(
        st.just("insert"),
        IDX,
        st.sampled_from([b"[", b"]", b"=", b'"', b"'''", b"[[", b"{", b"\n[priors]\n", b"\x00"]),
    ),
    st.tuples(st.just("bom")),
    st.tuples(st.just("utf16")),
    st.tuples(st.just("latin1")),
    st.tuples(st.just("cr")),
    st.tuples(st.just("replace"), st.binary(max_size=64)),
    st.tuples(
        st.just("replace"),
        st.integers(1, 3000).map(lambda n: b"v = " + b"[" * n + b"]" * n),
    ),
    st.tuples(st.just("replace"), st.integers(1, 3000).map(lambda n: b"v = " + b"{a=" * n)),
    st.tuples(st.just("empty")),
    st.tuples(st.just("directory")),
)


@PROPERTY
@given(
    doc=hypothesis_docs(),
    damage=st.lists(TEXT_DAMAGE, min_size=1, max_size=3),
    use_default=st.booleans(),
)
# Regression: deeply nested arrays or tables were a RecursionError in tomllib.
@example(doc={}, damage=[("replace", b"v = " + b"[" * 3000 + b"]" * 3000)], use_default=False)
@example(doc={}, damage=[("replace", b"v = " + b"{a=" * 3000)], use_default=False)
def test_damaged_hypothesis_file_never_breaks(doc, damage, use_default):
    """Random bytes, invalid TOML, BOMs, truncation: one line or success."""
    with scratch() as tmp:
        models = hypothesis_dir(tmp)
        path = models / "h.toml"
        text = DEFAULT_HYPOTHESIS.read_text(encoding="utf-8") if use_default else to_toml(doc)
        write_file(path, text, damage)
        result = outcome(lambda: load_hypothesis(path), HypothesisError, under=models)
        _check_hypothesis(result)


EXTENDS = st.one_of(
    st.integers(0, 3).map(lambda i: f"f{i}.toml"),
    st.sampled_from(["default.toml", "missing.toml", "", ".", "..", "../models/f0.toml", "/"]),
    st.sampled_from(["a" * 300, "x\x00y", "a\nb.toml", "default.toml\n"]),
    st.sampled_from(PATH_PAYLOADS),
    st.text(max_size=12),
    SCALARS,
    st.none(),
)


@PROPERTY
@given(
    parents=st.lists(EXTENDS, min_size=1, max_size=4),
    extra=st.lists(HYP_OPS, max_size=2),
    start=IDX,
)
# Regressions: a parent name too long for the file system (OSError) or with a
# NUL byte (ValueError); a line break in the parent's name (two-line error).
@example(parents=["a" * 300], extra=[], start=0)
@example(parents=["x\x00y"], extra=[], start=0)
@example(parents=["a\nb.toml"], extra=[], start=0)
def test_extends_chains_never_break(parents, extra, start):
    """Chains of ``extends``: cycles, missing parents, non-strings, odd paths."""
    with scratch() as tmp:
        models = hypothesis_dir(tmp)
        for i, parent in enumerate(parents):
            doc: dict[str, Any] = {} if parent is None else {"extends": parent}
            if i == 0:
                for op in extra:
                    apply_hyp_op(doc, op)
            (models / f"f{i}.toml").write_text(to_toml(doc), encoding="utf-8")
        path = models / f"f{start % len(parents)}.toml"
        # A parent outside models/ is allowed (".." paths): its errors name it.
        result = outcome(lambda: load_hypothesis(path), HypothesisError, under=Path("/"))
        _check_hypothesis(result)


@PROPERTY
@given(overrides=OVERRIDES, doc=st.one_of(st.none(), hypothesis_docs()))
# Regressions: line breaks in an override gave multi-line errors; a deeply
# nested value was a RecursionError.
@example(overrides=["\r"], doc=None)
@example(overrides=["a\nb=1"], doc=None)
@example(overrides=["mbu.alpha\n=1"], doc=None)
@example(overrides=["mbu.alpha=" + "[" * 3000], doc=None)
def test_overrides_never_break(overrides, doc):
    """``--set KEY=VALUE``: random keys and values on a valid (or random) file."""
    with scratch() as tmp:
        models = hypothesis_dir(tmp)
        path = models / "default.toml"
        if doc is not None:
            path = models / "h.toml"
            path.write_text(to_toml(doc), encoding="utf-8")
        result = outcome(
            lambda: load_hypothesis(path, overrides),
            HypothesisError,
            under=models,
            allow=("--set",),
        )
        _check_hypothesis(result)


ODD_PATHS = st.one_of(
    st.sampled_from(
        ["a" * 300, "a/" * 3000, "x\x00y", "", ".", "..", "/", "/dev/null", "~", "data/prices.csv"]
    ),
    st.text(st.characters(categories=["L", "N", "P", "S"]) | st.just(" "), max_size=20),
)


@PROPERTY
@given(name=ODD_PATHS, absolute=st.booleans())
# Regression: a data directory name too long for the file system was an OSError.
@example(name="a" * 300, absolute=False)
@example(name="x\x00y", absolute=False)
def test_odd_paths_never_break(name, absolute):
    """Paths that name nothing, a file, a folder, or cannot be a path at all."""
    with scratch() as tmp:
        make_data_dir(tmp, _case(""))
        hypothesis_dir(tmp)
        path = Path(name) if absolute else tmp / name
        old = Path.cwd()
        os.chdir(tmp)
        try:
            data = outcome(lambda: load_dataset(path), DataError, under=None)
            hyp = outcome(lambda: load_hypothesis(path), HypothesisError, under=None)
        finally:
            os.chdir(old)
        assert data is None or isinstance(data, Dataset)
        _check_hypothesis(hyp)


# --- properties: the command line ------------------------------------------------------


@CLI_PROPERTY
@given(
    data_case=st.one_of(st.none(), damaged_data()),
    doc=st.one_of(st.none(), hypothesis_docs()),
    overrides=st.one_of(st.just([]), OVERRIDES),
)
def test_cli_validate_never_breaks(data_case, doc, overrides):
    """``llmsize validate``: exit 0 or 2, one ``llmsize: error:`` line, no writes."""
    with scratch() as tmp:
        data_dir = make_data_dir(tmp, data_case or _case(""))
        models = hypothesis_dir(tmp)
        path = models / "default.toml"
        if doc is not None:
            path = models / "h.toml"
            path.write_text(to_toml(doc), encoding="utf-8")
        cwd = tmp / "cwd"
        cwd.mkdir()
        before = tree(tmp)
        args = ["validate", "--data", str(data_dir), "--hypothesis", str(path)]
        for item in overrides:
            args += ["--set", item]
        runner = CliRunner()
        old = Path.cwd()
        os.chdir(cwd)
        try:
            result = runner.invoke(cli, args)
        finally:
            os.chdir(old)
        output = result.output
        assert "Traceback" not in output, output
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            repr(result.exception),
            output,
        )
        assert result.exit_code in (0, EXIT_INPUT), (result.exit_code, output)
        event(f"exit {result.exit_code}")
        if result.exit_code == EXIT_INPUT:
            lines = output.splitlines()
            assert len(lines) == 1, output
            assert lines[0].startswith("llmsize: error: "), output
            assert result.stdout == "", output
        else:
            assert output.startswith("ok: hypothesis "), output
        assert tree(tmp) == before, "validate wrote a file"
        assert not any(cwd.iterdir()), "validate wrote to the working directory"
        assert not MARKER.exists(), "input was executed"


# --- nothing in the input is executed ------------------------------------------------


@pytest.mark.parametrize(
    "payload", EXEC_PAYLOADS + PATH_PAYLOADS, ids=lambda p: p.replace(str(MARKER), "MARKER")
)
def test_input_is_never_executed_or_followed(payload):
    """A payload as a model name, a TOML string and an override value does nothing."""
    with scratch() as tmp:
        rows = {n: [list(r) for r in TINY_ROWS[n]] for n in ("prices.csv", "known_models.csv")}
        rows["prices.csv"][6][0] = payload  # an unknown model named by the payload
        rows["prices.csv"][6][6] = payload  # and its source
        rows["known_models.csv"][1][-2] = payload
        data_dir = make_data_dir(tmp, _case(""))
        for name, r in rows.items():
            (data_dir / name).write_text(to_csv(r), encoding="utf-8")
        # The renamed price point is one end of a fixture cut: leave the cuts out.
        (data_dir / "cuts.csv").unlink()
        models = hypothesis_dir(tmp)
        doc = {
            "extends": "default.toml",
            "description": payload,
            "scaling_law": {"source": payload},
        }
        path = models / "h.toml"
        path.write_text(to_toml(doc), encoding="utf-8")
        cwd = tmp / "cwd"
        cwd.mkdir()
        before = tree(tmp)
        old = Path.cwd()
        os.chdir(cwd)
        try:
            data = load_dataset(data_dir)
            hyp = load_hypothesis(path)
            quoted = load_hypothesis(path, [f"description={toml_string(payload)}"])
            bare = outcome(
                lambda: load_hypothesis(path, [f"description={payload}", f"name={payload}"]),
                HypothesisError,
                under=models,
                allow=("--set",),
            )
            result = CliRunner().invoke(
                cli, ["validate", "--data", str(data_dir), "--hypothesis", str(path)]
            )
        finally:
            os.chdir(old)
        assert payload in set(data.prices["model"])
        assert hyp.description == quoted.description == hyp.scaling_law.source == payload
        assert bare is None or isinstance(bare, Hypothesis)
        assert result.exit_code == 0, result.output
        assert tree(tmp) == before
        assert not any(cwd.iterdir())
        assert not MARKER.exists()
