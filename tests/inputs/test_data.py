"""The data directory: the bundled files load, and every bad file is one clear error."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
import pytest

from llmsize.exceptions import DataError
from llmsize.inputs.data import KEYS, SCHEMAS, data_digest, load_dataset

from ..conftest import DATA_DIR, TINY_DIR

# --- helpers ----------------------------------------------------------------------


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def write_rows(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def set_cell(path: Path, row: int, column: str, value: str) -> None:
    """Set data row ``row`` (1-based, header not counted) of ``column``."""
    rows = read_rows(path)
    rows[row][rows[0].index(column)] = value
    write_rows(path, rows)


# --- the bundled data ---------------------------------------------------------------


def test_bundled_data_loads(bundled_data):
    assert len(bundled_data.prices) > 100
    assert len(bundled_data.known_models) > 20
    assert re.fullmatch(r"[0-9a-f]{64}", bundled_data.digest)
    assert bundled_data.digest == data_digest(DATA_DIR)


def test_bundled_unknown_models(bundled_data):
    unknown = set(bundled_data.unknown_models)
    snapshots = {
        "gpt-3.5-turbo-0301",
        "gpt-3.5-turbo-0613",
        "gpt-3.5-turbo-1106",
        "gpt-3.5-turbo-0125",
    }
    assert snapshots <= unknown
    # data/README.md lists exactly these targets; everything else has a public size.
    gpt4 = {
        "gpt-4-0314",
        "gpt-4-0613",
        "gpt-4-1106-preview",
        "gpt-4-0125-preview",
        "gpt-4-turbo-2024-04-09",
        "gpt-4o-2024-05-13",
        "gpt-4o-2024-08-06",
    }
    assert unknown == snapshots | gpt4 | {"gpt-4o-mini", "text-davinci-003"}


def test_bundled_families_cover_every_openai_model(bundled_data, bundled_design):
    """The issue's three families each get a page, every model of unknown size is in
    one, and every cut and claim is about a model of its family."""
    from llmsize.outputs.families import report_families

    fams = {f.name: f for f in report_families(bundled_data, bundled_design)}
    assert list(fams) == ["gpt-3.5", "gpt-4", "gpt-4o"]
    assert sorted(m for f in fams.values() for m in f.models) == sorted(bundled_design.unknown)
    assert "gpt-4o-mini" in fams["gpt-4o"].models
    assert len([c for f in fams.values() for c in f.cuts]) == len(bundled_data.cuts)
    labels = {c.label for c in fams["gpt-4"].claims}
    assert {"~1.8T total (SemiAnalysis leak)", "~280B active (SemiAnalysis leak)"} <= labels
    assert "~8B (MEDEC)" in {c.label for c in fams["gpt-4o"].claims}


@pytest.mark.parametrize("path", sorted(DATA_DIR.glob("*.csv")), ids=lambda p: p.name)
def test_every_bundled_row_has_a_source(path):
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert "source" in reader.fieldnames
        rows = list(reader)
    assert rows, f"{path.name} has no rows"
    empty = [i for i, r in enumerate(rows, start=1) if not (r["source"] or "").strip()]
    assert not empty, f"{path.name}: rows without a source: {empty}"


@pytest.mark.parametrize("path", sorted(DATA_DIR.glob("*.csv")), ids=lambda p: p.name)
def test_bundled_row_counts_match_readme(path):
    # data/README.md states the row count of every file; a stale count is a doc bug.
    readme = (DATA_DIR / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"\| `{re.escape(path.name)}` \| (\d+) \|", readme)
    assert match, f"{path.name} is not in data/README.md's table"
    with path.open(newline="", encoding="utf-8") as handle:
        n = sum(1 for row in csv.reader(handle) if any(c.strip() for c in row)) - 1
    assert n == int(match.group(1))


def test_bundled_keys_unique_and_sizes_consistent(bundled_data):
    for name, attr in (("prices.csv", "prices"), ("known_models.csv", "known_models")):
        frame = getattr(bundled_data, attr)
        assert not frame.duplicated(subset=list(KEYS[name])).any()
    km = bundled_data.known_models
    assert (km["active_params_b"] <= km["total_params_b"]).all()


def test_tiny_fixture_loads(tiny_data):
    assert tiny_data.unknown_models == ["closed-x", "closed-y"]
    assert len(tiny_data.prices) == 9
    assert tiny_data.accelerator_of("HostA") == "gpu"
    assert tiny_data.accelerator_of("not-listed") == "gpu"


def test_digest_changes_with_one_byte(tiny_copy):
    before = data_digest(tiny_copy)
    set_cell(tiny_copy / "prices.csv", 1, "notes", "x")
    assert data_digest(tiny_copy) != before
    assert data_digest(TINY_DIR) == before


# --- bad files: one line naming file, row and field ------------------------------------


def drop_column(root: Path, file: str, column: str) -> None:
    rows = read_rows(root / file)
    i = rows[0].index(column)
    write_rows(root / file, [r[:i] + r[i + 1 :] for r in rows])


def duplicate_row(root: Path, file: str, row: int, column: str, value: str) -> None:
    rows = read_rows(root / file)
    copy = list(rows[row])
    copy[rows[0].index(column)] = value
    write_rows(root / file, [*rows, copy])


def extra_cell(root: Path, file: str, row: int) -> None:
    rows = read_rows(root / file)
    rows[row] = [*rows[row], "surplus"]
    write_rows(root / file, rows)


def write_labs(root: Path, rows: list[list[str]]) -> None:
    """Write ``labs.csv`` (pattern, lab) with a source and notes on every row."""
    body = [[*r, "synthetic test fixture", ""] for r in rows]
    write_rows(root / "labs.csv", [["pattern", "lab", "source", "notes"], *body])


def add_columns(path: Path, columns: dict[str, list[str]]) -> None:
    """Add columns (one value per data row) to a CSV file, before its last column."""
    rows = read_rows(path)
    for name, values in columns.items():
        assert len(values) == len(rows) - 1
        at = len(rows[0]) - 1
        rows[0].insert(at, name)
        for r, v in zip(rows[1:], values, strict=True):
            r.insert(at, v)
    write_rows(path, rows)


#: id -> (corruption, file named, row or None, field or None, message fragment)
CORRUPTIONS = {
    "missing_column": (
        lambda d: drop_column(d, "prices.csv", "output_usd_per_mtok"),
        "prices.csv",
        None,
        "output_usd_per_mtok",
        "missing column",
    ),
    "unparsable_date": (
        lambda d: set_cell(d / "prices.csv", 3, "date", "2023-13-01"),
        "prices.csv",
        3,
        "date",
        "2023-13-01",
    ),
    "us_date": (
        lambda d: set_cell(d / "speed.csv", 2, "date", "12/19/2023"),
        "speed.csv",
        2,
        "date",
        "YYYY-MM-DD",
    ),
    "zero_price": (
        lambda d: set_cell(d / "prices.csv", 4, "output_usd_per_mtok", "0"),
        "prices.csv",
        4,
        "output_usd_per_mtok",
        "> 0",
    ),
    "negative_price": (
        lambda d: set_cell(d / "prices.csv", 2, "input_usd_per_mtok", "-0.10"),
        "prices.csv",
        2,
        "input_usd_per_mtok",
        "> 0",
    ),
    "duplicate_key": (
        # Row 10 repeats row 1's (model, provider, date) with another price.
        lambda d: duplicate_row(d, "prices.csv", 1, "output_usd_per_mtok", "0.3"),
        "prices.csv",
        10,
        "date",
        "duplicate",
    ),
    "non_numeric": (
        lambda d: set_cell(d / "speed.csv", 2, "output_tokens_per_s", "fast"),
        "speed.csv",
        2,
        "output_tokens_per_s",
        "not a number",
    ),
    "infinite": (
        lambda d: set_cell(d / "gpu_prices.csv", 1, "usd_per_gpu_hour", "inf"),
        "gpu_prices.csv",
        1,
        "usd_per_gpu_hour",
        "finite",
    ),
    "wrong_cell_count": (
        # A whole row is misaligned: no single field is at fault, so only the row.
        lambda d: extra_cell(d, "known_models.csv", 2),
        "known_models.csv",
        2,
        None,
        "cells",
    ),
    "empty_file": (
        lambda d: (d / "quality.csv").write_text("", encoding="utf-8"),
        "quality.csv",
        None,
        None,
        "empty file",
    ),
    "active_exceeds_total": (
        lambda d: set_cell(d / "known_models.csv", 1, "active_params_b", "8"),
        "known_models.csv",
        1,
        "active_params_b",
        "exceed",
    ),
    "speed_unknown_model": (
        lambda d: set_cell(d / "speed.csv", 3, "model", "ghost-model"),
        "speed.csv",
        3,
        "model",
        "ghost-model",
    ),
    "quality_unknown_model": (
        lambda d: set_cell(d / "quality.csv", 2, "model", "ghost-model"),
        "quality.csv",
        2,
        "model",
        "ghost-model",
    ),
    "missing_required_file": (
        lambda d: (d / "hardware.csv").unlink(),
        "hardware.csv",
        None,
        None,
        "missing",
    ),
    "empty_source": (
        lambda d: set_cell(d / "prices.csv", 5, "source", "  "),
        "prices.csv",
        5,
        "source",
        "required",
    ),
    "bad_serving_bits": (
        lambda d: set_cell(d / "prices.csv", 5, "serving_bits", "3"),
        "prices.csv",
        5,
        "serving_bits",
        "4, 8 or 16",
    ),
    "score_above_100": (
        lambda d: set_cell(d / "quality.csv", 1, "score_pct", "145"),
        "quality.csv",
        1,
        "score_pct",
        "above 100",
    ),
    "gpu_price_for_unknown_gpu": (
        lambda d: set_cell(d / "gpu_prices.csv", 2, "gpu", "H999"),
        "gpu_prices.csv",
        2,
        "gpu",
        "H999",
    ),
    "speed_row_without_measurement": (
        lambda d: (
            set_cell(d / "speed.csv", 1, "output_tokens_per_s", ""),
            set_cell(d / "speed.csv", 1, "ttft_s", ""),
        ),
        "speed.csv",
        1,
        "output_tokens_per_s",
        "needs",
    ),
    # A family name becomes a file name in the report: no path may leave the folder.
    "family_name_with_a_path": (
        lambda d: set_cell(d / "families.csv", 1, "family", "../../etc/x"),
        "families.csv",
        1,
        "family",
        "names a report page",
    ),
    "family_with_two_titles": (
        lambda d: (
            duplicate_row(d, "families.csv", 1, "title", "Another title"),
            set_cell(d / "families.csv", 2, "pattern", "other-*"),
        ),
        "families.csv",
        2,
        "title",
        "another title",
    ),
    "claim_of_unknown_quantity": (
        lambda d: set_cell(d / "claims.csv", 2, "quantity", "layers"),
        "claims.csv",
        2,
        "quantity",
        "params_total_b",
    ),
    "cut_from_an_unpriced_point": (
        lambda d: set_cell(d / "cuts.csv", 2, "from_date", "2023-06-14"),
        "cuts.csv",
        2,
        "from_model",
        "no price",
    ),
    "cut_backwards_in_time": (
        lambda d: (
            set_cell(d / "cuts.csv", 1, "from_date", "2023-06-13"),
            set_cell(d / "cuts.csv", 1, "to_date", "2023-03-01"),
        ),
        "cuts.csv",
        1,
        "to_date",
        "before",
    ),
    # labs.csv: a pattern must name at least one model of the data.
    "lab_pattern_matches_nothing": (
        lambda d: write_labs(d, [["small-*", "HostA"], ["ghost-*", "Nobody"]]),
        "labs.csv",
        2,
        "pattern",
        "matches no model",
    ),
    "lab_without_a_lab": (
        lambda d: write_labs(d, [["small-*", " "]]),
        "labs.csv",
        1,
        "lab",
        "required",
    ),
    # known_models.csv: the optional attention column takes mha, gqa or mla only.
    "bad_attention_value": (
        lambda d: add_columns(
            d / "known_models.csv",
            {"attention": ["gqa", "GQA", "", ""], "kv_bytes_per_token": ["", "", "", ""]},
        ),
        "known_models.csv",
        2,
        "attention",
        "mha, gqa, mla",
    ),
    "negative_kv_bytes": (
        lambda d: add_columns(
            d / "known_models.csv",
            {"attention": ["", "", "", ""], "kv_bytes_per_token": ["", "", "-5", ""]},
        ),
        "known_models.csv",
        3,
        "kv_bytes_per_token",
        "> 0",
    ),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_bad_data_is_one_line(case, tiny_copy):
    corrupt, file, row, field, fragment = CORRUPTIONS[case]
    corrupt(tiny_copy)
    with pytest.raises(DataError) as info:
        load_dataset(tiny_copy)
    err = info.value
    msg = str(err)
    assert "\n" not in msg
    assert str(tiny_copy / file) in msg, msg
    assert fragment in msg, msg
    if row is not None:
        assert f"row {row}," in msg or f"row {row}:" in msg, msg
        assert err.row == row
    else:
        assert err.row is None
    if field is not None:
        assert f"field '{field}'" in msg, msg
        assert err.field == field


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="no such data directory"):
        load_dataset(tmp_path / "nope")


def test_optional_files_may_be_missing(tiny_copy):
    for name in ("speed.csv", "quality.csv", "providers.csv"):
        (tiny_copy / name).unlink()
    data = load_dataset(tiny_copy)
    assert data.speed.empty
    assert data.quality.empty
    assert set(data.speed.columns) >= {c.name for c in SCHEMAS["speed.csv"]}


def test_blank_lines_and_extra_columns_are_tolerated(tiny_copy):
    path = tiny_copy / "prices.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "\n\n", encoding="utf-8")
    data = load_dataset(tiny_copy)
    assert len(data.prices) == 9
    assert "notes" in data.prices.columns


def test_error_text_stays_on_one_line():
    from llmsize.exceptions import DataError

    err = DataError("bad\nvalue", file="a\r\nb.csv", row=3, field="x\ny")
    assert "\n" not in str(err)
    assert "\r" not in str(err)
    assert str(err) == "a\\r\\nb.csv, row 3, field 'x\\ny': bad\\nvalue"


# --- labs.csv and the optional attention columns ------------------------------------


def test_lab_of_last_matching_pattern_wins(tiny_copy):
    write_labs(tiny_copy, [["*", "LabA"], ["small-*", "HostA"], ["closed-*", "Vendor"]])
    data = load_dataset(tiny_copy)
    assert data.lab_of("small-7b") == "HostA"
    assert data.lab_of("mid-70b") == "LabA"
    assert data.lab_of("closed-y") == "Vendor"
    # Globs are case-sensitive (fnmatchcase), whatever the platform.
    assert data.lab_of("SMALL-7b") == "LabA"
    # The same patterns in the other order: the catch-all now wins everywhere.
    write_labs(tiny_copy, [["small-*", "HostA"], ["closed-*", "Vendor"], ["*", "LabA"]])
    data = load_dataset(tiny_copy)
    assert {data.lab_of(m) for m in ("small-7b", "mid-70b", "closed-y")} == {"LabA"}


def test_is_first_party(tiny_copy):
    write_labs(tiny_copy, [["small-*", "HostA"], ["closed-*", "Vendor"]])
    data = load_dataset(tiny_copy)
    assert data.is_first_party("small-7b", "HostA")
    assert not data.is_first_party("small-7b", "HostB")
    assert data.is_first_party("closed-x", "Vendor")
    # A model no pattern names has no lab, so no provider is its first party.
    assert data.lab_of("mid-70b") is None
    assert not data.is_first_party("mid-70b", "HostA")


def test_labs_file_is_optional(tiny_copy):
    (tiny_copy / "labs.csv").unlink(missing_ok=True)
    data = load_dataset(tiny_copy)
    assert data.labs.empty
    assert data.lab_of("small-7b") is None
    assert not data.is_first_party("closed-x", "Vendor")


def test_known_models_without_optional_columns_loads(tiny_copy):
    header = read_rows(tiny_copy / "known_models.csv")[0]
    assert "attention" not in header
    assert "kv_bytes_per_token" not in header
    data = load_dataset(tiny_copy)
    assert {"attention", "kv_bytes_per_token"} <= set(data.known_models.columns)
    assert data.known_models["attention"].isna().all()
    assert data.known_models["kv_bytes_per_token"].isna().all()


def test_optional_attention_columns_are_parsed(tiny_copy):
    add_columns(
        tiny_copy / "known_models.csv",
        {"attention": ["mha", "gqa", "", "mla"], "kv_bytes_per_token": ["524288", "", "", "70272"]},
    )
    km = load_dataset(tiny_copy).known_models.set_index("model")
    assert km.loc["small-7b", "attention"] == "mha"
    assert km.loc["small-7b", "kv_bytes_per_token"] == 524288.0
    assert km.loc["mid-70b", "attention"] == "gqa"
    assert pd.isna(km.loc["moe-47b", "attention"])
    assert pd.isna(km.loc["mid-70b", "kv_bytes_per_token"])
    assert km.loc["big-175b", "kv_bytes_per_token"] == 70272.0


def test_bundled_labs_cover_every_model(bundled_data):
    models = set(bundled_data.prices["model"]) | set(bundled_data.known_models["model"])
    assert not [m for m in models if bundled_data.lab_of(m) is None]
    # Every pattern names a model (the loader checks it; this checks the file is there).
    assert len(bundled_data.labs) >= 10
    assert bundled_data.lab_of("gpt-4o-mini") == "OpenAI"
    assert bundled_data.lab_of("davinci") == "OpenAI"
    assert bundled_data.lab_of("Llama-3.1-70B-Instruct") == "Meta"
    assert bundled_data.lab_of("Mixtral-8x7B-Instruct") == "Mistral"
    assert bundled_data.lab_of("Kimi-K2-Instruct") == "Moonshot AI"


def test_bundled_first_party_labs_are_providers(bundled_data):
    """A lab with its own API is spelled as that API's provider, so its prices are first-party."""
    prices = bundled_data.prices
    pairs = zip(prices["model"], prices["provider"], strict=True)
    first = prices[[bundled_data.is_first_party(m, p) for m, p in pairs]]
    assert {"OpenAI", "Mistral", "Cohere", "AI21", "Moonshot AI"} <= set(first["provider"])
    # Every OpenAI price is first-party; no Llama price is (Meta sells no API here).
    openai = prices[prices["model"].map(bundled_data.lab_of) == "OpenAI"]
    assert (openai["provider"] == "OpenAI").all()
    assert not first["model"].str.startswith("Llama-").any()
    # Mistral prices a ladder of its own models: several sizes at its own API.
    km = bundled_data.known_models.set_index("model")
    mistral = first.loc[first["provider"] == "Mistral", "model"]
    mistral_sizes = {km.loc[m, "total_params_b"] for m in mistral}
    assert len(mistral_sizes) >= 6


def test_bundled_kv_bytes_follow_the_attention_type(bundled_data):
    km = bundled_data.known_models.set_index("model")
    with_kv = km[km["kv_bytes_per_token"].notna()]
    assert len(with_kv) >= 20
    # A KV size is only given with the attention type it was computed for.
    assert with_kv["attention"].notna().all()
    assert set(km["attention"].dropna()) <= {"mha", "gqa", "mla"}
    # GPT-3 davinci: MHA, 96 layers, d_model 12288, 2 (K and V) x 2 bytes.
    assert km.loc["davinci", "attention"] == "mha"
    assert km.loc["davinci", "kv_bytes_per_token"] == 2 * 96 * 12288 * 2
    # GQA shrinks the cache: Llama 2 70B (8 KV heads) holds less per token than 13B (MHA).
    kv = km["kv_bytes_per_token"]
    assert kv["Llama-2-70B-chat"] < kv["Llama-2-13B-chat"]
    # A model and its base checkpoint share their shapes.
    assert kv["Llama-3.1-8B"] == kv["Llama-3.1-8B-Instruct"]
