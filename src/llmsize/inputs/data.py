"""Load and check the observed data directory.

A data directory holds CSV files in a fixed schema (see ``data/README.md``);
every row names its source. Loading checks every cell and stops at the first
problem with a :class:`~llmsize.exceptions.DataError` that names the file, the
row and the field. Nothing in a file is executed or unpickled: cells are read
as text and parsed as numbers and ISO dates only.
"""

from __future__ import annotations

import csv
import datetime as dt
import fnmatch
import hashlib
import io
import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from llmsize.exceptions import DataError, one_line
from llmsize.inputs.files import read_input_bytes

log = logging.getLogger(__name__)

#: Accelerator classes the GPU serving-cost model covers. ``unknown`` (a provider
#: that does not say, or a router over GPU clouds) is modelled as a GPU cloud;
#: custom silicon (``groq_lpu``, ``cerebras_wse``, ``sambanova_rdu``, ...) is kept
#: in the files but left out of the fit.
GPU = "gpu"
GPU_LIKE = (GPU, "unknown")


@dataclass(frozen=True)
class Column:
    """One column of a data file: its name, kind and whether it may be empty."""

    name: str
    # "text", "name" (text without control characters: a model, provider, GPU, lab,
    # benchmark or pattern), "date", "positive", "nonnegative", "bits", "slug",
    # "quantity", "attention"
    kind: str
    required: bool = True
    #: The column itself may be left out of the file (its cells then read as empty).
    may_be_absent: bool = False


SCHEMAS: dict[str, list[Column]] = {
    "prices.csv": [
        Column("model", "name"),
        Column("provider", "name"),
        Column("date", "date"),
        Column("input_usd_per_mtok", "positive"),
        Column("output_usd_per_mtok", "positive"),
        Column("serving_bits", "bits", required=False),
        Column("source", "text"),
    ],
    "speed.csv": [
        Column("model", "name"),
        Column("provider", "name"),
        Column("date", "date"),
        Column("output_tokens_per_s", "positive", required=False),
        Column("ttft_s", "positive", required=False),
        Column("source", "text"),
    ],
    "known_models.csv": [
        Column("model", "name"),
        Column("total_params_b", "positive"),
        Column("active_params_b", "positive"),
        Column("training_tokens_t", "positive", required=False),
        # Attention type (mha, gqa, mla) and KV-cache bytes per token of context at
        # 16 bits, from the model's published configuration, where known.
        Column("attention", "attention", required=False, may_be_absent=True),
        Column("kv_bytes_per_token", "positive", required=False, may_be_absent=True),
        Column("source", "text"),
    ],
    # Which lab made each model (glob patterns over model names; the last match wins).
    # A price at a provider named like the lab is the lab's own (first-party) price.
    "labs.csv": [
        Column("pattern", "name"),
        Column("lab", "name"),
        Column("source", "text"),
    ],
    "quality.csv": [
        Column("model", "name"),
        Column("benchmark", "name"),
        Column("score_pct", "positive"),
        Column("source", "text"),
    ],
    "hardware.csv": [
        Column("gpu", "name"),
        Column("hbm_tb_per_s", "positive"),
        Column("bf16_tflops", "positive", required=False),
        Column("fp8_tflops", "positive", required=False),
        Column("memory_gb", "positive"),
        Column("source", "text"),
    ],
    "gpu_prices.csv": [
        Column("gpu", "name"),
        # The day of the quote: the model moves each quote to 2024 along a trend.
        Column("date", "date", required=False, may_be_absent=True),
        Column("usd_per_gpu_hour", "positive"),
        Column("source", "text"),
    ],
    "providers.csv": [
        Column("provider", "name"),
        Column("accelerator", "name"),
        Column("source", "text"),
    ],
    "hidden_size.csv": [
        Column("model", "name"),
        Column("date", "date"),
        Column("hidden_size", "positive"),
        Column("source", "text"),
    ],
    # Report grouping only: which models of unknown size make up a family page.
    "families.csv": [
        Column("family", "slug"),
        Column("title", "text"),
        Column("pattern", "name"),
        Column("source", "text"),
    ],
    # Public claims about sizes: drawn on the charts, never part of the likelihood.
    "claims.csv": [
        Column("model", "name"),
        Column("quantity", "quantity"),
        Column("params_b", "positive"),
        Column("label", "text"),
        Column("date", "date"),
        Column("source", "text"),
    ],
    # A provider's own statement of how its serving cost changed between two price points.
    "cost_statements.csv": [
        Column("provider", "name"),
        Column("from_model", "name"),
        Column("from_date", "date"),
        Column("to_model", "name"),
        Column("to_date", "date"),
        Column("cost_ratio", "positive"),
        Column("source", "text"),
    ],
    # Price cuts to decompose: pairs of price points, each a comparison the provider made.
    "cuts.csv": [
        Column("provider", "name"),
        Column("from_model", "name"),
        Column("from_date", "date"),
        Column("to_model", "name"),
        Column("to_date", "date"),
        Column("source", "text"),
    ],
}

#: Attention types whose KV cache the serving model sizes differently.
ATTENTION_TYPES = ("mha", "gqa", "mla")

#: Size quantities a claim may be about, as named in ``summary.csv``.
CLAIM_QUANTITIES = ("params_total_b", "params_active_b")

#: Column kinds whose cells must be one of a fixed set of words.
CHOICES = {"quantity": CLAIM_QUANTITIES, "attention": ATTENTION_TYPES}

#: A family name becomes part of a file name in the report: letters, digits, ``.``, ``_``, ``-``.
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: Files a data directory must have; the others are optional.
REQUIRED_FILES = ("prices.csv", "known_models.csv", "hardware.csv", "gpu_prices.csv")

#: Rows that must be unique in each file.
KEYS: dict[str, tuple[str, ...]] = {
    "prices.csv": ("model", "provider", "date"),
    "speed.csv": ("model", "provider", "date"),
    "known_models.csv": ("model",),
    "quality.csv": ("model", "benchmark", "source"),
    "hardware.csv": ("gpu",),
    "providers.csv": ("provider",),
    "hidden_size.csv": ("model",),
    "families.csv": ("family", "pattern"),
    "labs.csv": ("pattern",),
    "cost_statements.csv": ("provider", "from_model", "from_date", "to_model", "to_date"),
    "claims.csv": ("model", "quantity", "label"),
    "cuts.csv": ("provider", "from_model", "from_date", "to_model", "to_date"),
}

MAX_ROWS = 100_000

#: A number as a CSV cell may write it: ASCII digits, an optional sign, decimal
#: point and exponent (spreadsheets write 1E-05). Not ``1_0`` or ``0x10``, and no
#: digits of other scripts, all of which ``float`` would accept.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

#: A date exactly as the schema says: YYYY-MM-DD (``fromisoformat`` also takes
#: 20240105 and 2024-W01-1).
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _parse(value: str, col: Column, *, file: str, row: int) -> object:  # noqa: PLR0911 (one return per column type)
    value = value.strip()

    def bad(message: str) -> DataError:
        return DataError(message, file=file, row=row, field=col.name)

    if value == "":
        if col.required:
            raise bad("empty but required")
        return None
    if col.kind in ("text", "name", "slug") or col.kind in CHOICES:
        return _parse_text(value, col.kind, bad)
    if col.kind == "date":
        if not _DATE.fullmatch(value):
            raise bad(f"not a date in YYYY-MM-DD form: {one_line(repr(value))}")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise bad(f"not a date in YYYY-MM-DD form: {one_line(repr(value))}") from None
    if value.lower().lstrip("+-") in ("inf", "infinity", "nan"):
        raise bad(f"not a finite number: {value!r}")
    if not _NUMBER.fullmatch(value):
        raise bad(f"not a number (plain decimal digits, e.g. 0.5 or 12): {one_line(repr(value))}")
    number = float(value)
    if not math.isfinite(number):
        raise bad(f"not a finite number: {value!r}")
    if col.kind == "bits":
        if number not in (4.0, 8.0, 16.0):
            raise bad(f"serving bits must be 4, 8 or 16, got {value!r}")
        return int(number)
    if col.kind == "positive" and number <= 0:
        raise bad(f"must be > 0, got {value!r}")
    if col.kind == "nonnegative" and number < 0:
        raise bad(f"must be >= 0, got {value!r}")
    return number


def _parse_text(value: str, kind: str, bad: Callable[[str], DataError]) -> str:
    """A text cell of kind ``text``, ``name``, ``slug`` or one of :data:`CHOICES`, checked."""
    if kind == "name":
        char = next((c for c in value if not c.isprintable()), None)
        if char is not None:
            raise bad(
                f"holds the unprintable character {one_line(repr(char))} (U+{ord(char):04X}); "
                f"a name is printable text, got {one_line(repr(value))}"
            )
    elif kind == "slug":
        if not _SLUG.fullmatch(value):
            raise bad(
                "must be 1-64 letters, digits, '.', '_' or '-' (it names a report page), "
                f"got {value!r}"
            )
    elif kind in CHOICES and value not in CHOICES[kind]:
        raise bad(f"must be one of {', '.join(CHOICES[kind])}, got {value!r}")
    return value


def decode_csv(path: Path, blob: bytes) -> str:
    """The text of CSV file ``path`` from its bytes: UTF-8, a byte-order mark dropped.

    Spreadsheet programs save "CSV UTF-8" with a byte-order mark; anything that
    is not UTF-8 (Latin-1, UTF-16) is refused, naming the file and the offset.
    """
    try:
        return blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"not UTF-8 text (byte {exc.start} is {blob[exc.start]:#04x}); save it as UTF-8",
            file=one_line(str(path)),
        ) from None


def read_table(path: Path, columns: list[Column], blob: bytes | None = None) -> pd.DataFrame:
    """Read one CSV file, checking its header, every cell and its key.

    ``blob``: the file's bytes, if already read (by :func:`read_input_bytes`,
    which only reads regular files of bounded size).
    """
    file = one_line(str(path))
    if blob is None:
        blob = read_input_bytes(path, error=DataError, what="data file")
    text = decode_csv(path, blob)
    try:
        with io.StringIO(text, newline="") as handle:
            reader = csv.reader(handle, strict=True)
            header = _header(reader, columns, file)
            records = _records(reader, header, columns, file)
    except csv.Error as exc:
        raise DataError(one_line(f"not a readable CSV file: {exc}"), file=file) from None
    absent = [c.name for c in columns if c.name not in header]
    frame = pd.DataFrame.from_records(records, columns=["_row", *header, *absent])
    _check_key(frame, KEYS.get(path.name), file)
    return frame


def _header(reader: Iterator[list[str]], columns: list[Column], file: str) -> list[str]:
    """The header row: every required column present, none twice, none reserved."""
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DataError("empty file, expected a header row", file=file) from None
    missing = [c.name for c in columns if c.name not in header and not c.may_be_absent]
    if missing:
        raise DataError(f"missing column '{missing[0]}'", file=file, field=missing[0])
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        # A header cell may hold a line break: escape it to keep the error one line.
        raise DataError("column appears twice", file=file, field=one_line(dup))
    if "_row" in header:
        raise DataError("column name reserved for the row number", file=file, field="_row")
    return header


def _records(
    reader: Iterator[list[str]], header: list[str], columns: list[Column], file: str
) -> list[dict[str, object]]:
    """Each non-blank row's cells, parsed by column (a column of the header the
    schema does not know is kept as text), with its row number in ``_row``.
    """
    index = {name: i for i, name in enumerate(header)}
    records = []
    for n, cells in enumerate(reader, start=1):
        if n > MAX_ROWS:
            raise DataError(f"more than {MAX_ROWS} rows", file=file)
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise DataError(
                f"has {len(cells)} cells, the header has {len(header)}", file=file, row=n
            )
        rec: dict[str, object] = {"_row": n}
        for col in columns:
            if col.name not in index:  # a column that may be absent
                rec[col.name] = None
                continue
            rec[col.name] = _parse(cells[index[col.name]], col, file=file, row=n)
        for extra in header:
            if extra not in rec:
                rec[extra] = cells[index[extra]].strip()
        records.append(rec)
    return records


def _check_key(frame: pd.DataFrame, key: tuple[str, ...] | None, file: str) -> None:
    """Refuse a row whose key columns repeat an earlier row's."""
    if not key or not len(frame):
        return
    dup = frame.duplicated(subset=list(key), keep="first")
    if dup.any():
        first = frame[dup].iloc[0]
        raise DataError(
            "duplicate of an earlier row with the same " + ", ".join(key),
            file=file,
            row=int(first["_row"]),
            field=key[-1],
        )


@dataclass
class Dataset:
    """The checked contents of a data directory."""

    root: Path
    prices: pd.DataFrame
    known_models: pd.DataFrame
    hardware: pd.DataFrame
    gpu_prices: pd.DataFrame
    speed: pd.DataFrame
    quality: pd.DataFrame
    providers: pd.DataFrame
    digest: str
    notes: list[str] = field(default_factory=list)
    #: d_model measured from a model's outputs (optional evidence).
    hidden_size: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["_row", "model", "date", "hidden_size"])
    )
    #: Report families (glob patterns over model names) and public size claims.
    families: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["_row", "family", "title", "pattern"])
    )
    claims: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            columns=["_row", "model", "quantity", "params_b", "label", "date"]
        )
    )
    cuts: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            columns=["_row", "provider", "from_model", "from_date", "to_model", "to_date"]
        )
    )
    #: A provider's statements of its serving cost's change between two price points.
    cost_statements: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            columns=["_row", "provider", "from_model", "from_date", "to_model", "to_date",
                     "cost_ratio"]
        )
    )  # fmt: skip
    #: The lab behind each model (glob patterns; the last matching row wins).
    labs: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["_row", "pattern", "lab"])
    )

    def lab_of(self, model: str) -> str | None:
        """The lab that made ``model`` (``labs.csv``, last matching pattern), if listed."""
        lab = None
        for pattern, name in zip(self.labs["pattern"], self.labs["lab"], strict=True):
            if fnmatch.fnmatchcase(model, pattern):
                lab = name
        return lab

    def is_first_party(self, model: str, provider: str) -> bool:
        """Whether ``provider`` is the lab that made ``model`` (its own API's price)."""
        return self.lab_of(model) == provider

    @property
    def unknown_models(self) -> list[str]:
        """Models with prices but no known size, in order of first appearance."""
        known = set(self.known_models["model"])
        return list(dict.fromkeys(m for m in self.prices["model"] if m not in known))

    def is_gpu_like(self, provider: str) -> bool:
        """Whether the GPU serving-cost model applies to the provider."""
        return self.accelerator_of(provider) in GPU_LIKE

    def accelerator_of(self, provider: str) -> str:
        """The provider's accelerator class (``gpu`` when not listed)."""
        row = self.providers[self.providers["provider"] == provider]
        return str(row["accelerator"].iloc[0]) if len(row) else GPU


def read_csv_files(root: Path) -> dict[str, bytes]:
    """The bytes of every ``*.csv`` of data folder ``root``, by file name.

    Every one must be a regular file of bounded size
    (:func:`~llmsize.inputs.files.read_input_bytes`: a FIFO or a link to a device is
    refused, never waited on) and UTF-8 text, the ones outside the schema too:
    they enter the data's hash.
    """
    try:
        paths = sorted(root.glob("*.csv"))
    except OSError as exc:
        raise DataError(one_line(f"cannot list: {exc.strerror or exc}"), file=str(root)) from None
    files = {}
    for path in paths:
        blob = read_input_bytes(path, error=DataError, what="data file")
        decode_csv(path, blob)
        files[path.name] = blob
    return files


def files_digest(files: dict[str, bytes]) -> str:
    """sha256 over the names and bytes of ``files`` (name to bytes), in name order."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode())
        h.update(files[name])
    return h.hexdigest()


def data_digest(root: Path) -> str:
    """sha256 over the names and bytes of the directory's CSV files."""
    return files_digest(read_csv_files(Path(root)))


def check_unknown_models(data: Dataset) -> None:
    """Refuse a dataset with no model of unknown size: there would be nothing to infer.

    ``infer``, ``compare`` and ``validate`` need one; ``calibrate`` does not (it
    holds out models of known size).
    """
    if not data.unknown_models:
        raise DataError(
            "every model here has a known size in known_models.csv: there is no model of "
            "unknown size to infer (add its prices, or remove it from known_models.csv)",
            file=str(data.root / "prices.csv"),
            field="model",
        )


def _check_price_pairs(path: Path, table: pd.DataFrame, price_points: set) -> None:
    """Each row's two ends are price points of prices.csv, the second not earlier."""
    for _, r in table.iterrows():
        for end in ("from", "to"):
            point = (r["provider"], r[f"{end}_model"], r[f"{end}_date"])
            if point not in price_points:
                raise DataError(
                    f"no price of {point[1]!r} at {point[0]!r} dated {point[2]} in prices.csv",
                    file=str(path),
                    row=int(r["_row"]),
                    field=f"{end}_model",
                )
        if r["to_date"] < r["from_date"]:
            raise DataError(
                "to_date is before from_date", file=str(path), row=int(r["_row"]), field="to_date"
            )


def load_dataset(root: str | Path) -> Dataset:
    """Load, check and cross-check every file of a data directory."""
    root = Path(root)
    try:
        is_dir = root.is_dir()
    except OSError:  # e.g. a name too long for the file system
        is_dir = False
    if not is_dir:
        raise DataError("no such data directory", file=str(root))
    files = read_csv_files(root)
    tables = _read_tables(root, files)
    _cross_check(root, tables)
    prices, known = tables["prices.csv"], tables["known_models.csv"]
    statements, cuts, labs = tables["cost_statements.csv"], tables["cuts.csv"], tables["labs.csv"]
    hardware, gpu_prices = tables["hardware.csv"], tables["gpu_prices.csv"]
    speed, quality = tables["speed.csv"], tables["quality.csv"]
    digest = files_digest(files)
    return Dataset(
        root=root,
        prices=prices,
        known_models=known,
        hardware=hardware,
        gpu_prices=gpu_prices,
        speed=speed,
        quality=quality,
        providers=tables["providers.csv"],
        digest=digest,
        hidden_size=tables["hidden_size.csv"],
        families=tables["families.csv"],
        claims=tables["claims.csv"],
        cuts=cuts,
        labs=labs,
        cost_statements=statements,
    )


def _read_tables(root: Path, files: dict[str, bytes]) -> dict[str, pd.DataFrame]:
    """Every file of :data:`SCHEMAS`, read and checked (an empty table for an optional one absent)."""
    tables: dict[str, pd.DataFrame] = {}
    for name, columns in SCHEMAS.items():
        path = root / name
        if name not in files:
            if path.is_dir():
                raise DataError("is a directory, not a regular file", file=str(path))
            if name in REQUIRED_FILES:
                raise DataError("required file is missing", file=str(path))
            tables[name] = pd.DataFrame(columns=["_row", *(c.name for c in columns)])
            continue
        tables[name] = read_table(path, columns, files[name])
    if tables["prices.csv"].empty:
        raise DataError("no price rows", file=str(root / "prices.csv"))
    return tables


def _refuse_rows(
    path: Path, table: pd.DataFrame, field: str, check: Callable[[pd.Series], str | None]
) -> None:
    """Raise the :class:`DataError` of the first row of ``table`` that ``check`` finds
    wrong (it returns the message), naming ``path``, the row and ``field``.
    """
    for _, r in table.iterrows():
        message = check(r)
        if message is not None:
            raise DataError(message, file=str(path), row=int(r["_row"]), field=field)


def _cross_check(root: Path, tables: dict[str, pd.DataFrame]) -> None:
    """The checks that read more than one cell: across columns, rows and files."""
    prices, known = tables["prices.csv"], tables["known_models.csv"]
    _refuse_rows(
        root / "known_models.csv", known, "active_params_b",
        lambda r: "active parameters exceed total parameters"
        if r["active_params_b"] > r["total_params_b"] else None,
    )  # fmt: skip
    gpu_keys = set(tables["hardware.csv"]["gpu"])
    _refuse_rows(
        root / "gpu_prices.csv", tables["gpu_prices.csv"], "gpu",
        lambda r: f"GPU {r['gpu']!r} is not in hardware.csv" if r["gpu"] not in gpu_keys else None,
    )  # fmt: skip
    priced_models = set(prices["model"]) | set(known["model"])
    for name in ("speed.csv", "quality.csv", "hidden_size.csv"):
        _refuse_rows(
            root / name, tables[name], "model",
            lambda r: f"model {r['model']!r} is neither in prices.csv nor in known_models.csv"
            if r["model"] not in priced_models else None,
        )  # fmt: skip
    _refuse_rows(
        root / "speed.csv", tables["speed.csv"], "output_tokens_per_s",
        lambda r: "needs output_tokens_per_s or ttft_s"
        if pd.isna(r["output_tokens_per_s"]) and pd.isna(r["ttft_s"]) else None,
    )  # fmt: skip
    _refuse_rows(
        root / "quality.csv", tables["quality.csv"], "score_pct",
        lambda r: f"a percentage above 100: {r['score_pct']}" if r["score_pct"] > 100 else None,
    )  # fmt: skip
    titles: dict[str, str] = {}
    _refuse_rows(
        root / "families.csv", tables["families.csv"], "title",
        lambda r: f"family {r['family']!r} has another title in an earlier row"
        if titles.setdefault(r["family"], r["title"]) != r["title"] else None,
    )  # fmt: skip
    price_points = set(zip(prices["provider"], prices["model"], prices["date"], strict=True))
    for name in ("cuts.csv", "cost_statements.csv"):
        _check_price_pairs(root / name, tables[name], price_points)
    _refuse_rows(
        root / "labs.csv", tables["labs.csv"], "pattern",
        lambda r: f"pattern {r['pattern']!r} matches no model in prices.csv or known_models.csv"
        if not any(fnmatch.fnmatchcase(m, r["pattern"]) for m in priced_models) else None,
    )  # fmt: skip
