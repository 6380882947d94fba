"""Atomic report folders and byte-stable summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from llmsize.exceptions import LlmsizeError
from llmsize.outputs import io


def snapshot(root):
    """Every file under ``root`` with its bytes (relative paths)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def old_report(tmp_path):
    out = tmp_path / "report"
    (out / "sub").mkdir(parents=True)
    (out / "summary.csv").write_bytes(b"old,summary\n")
    (out / "sub" / "figure.png").write_bytes(bytes(range(256)))
    return out


def test_staged_output_replaces_on_success(old_report):
    with io.staged_output(old_report) as tmp:
        assert tmp != old_report
        assert tmp.parent == old_report.parent
        # The old report is still complete while the new one is being written.
        assert (old_report / "summary.csv").read_bytes() == b"old,summary\n"
        (tmp / "summary.csv").write_bytes(b"new\n")
    assert snapshot(old_report) == {"summary.csv": b"new\n"}
    # Nothing left beside it: no partial or old folders.
    assert sorted(p.name for p in old_report.parent.iterdir()) == ["report"]


def test_staged_output_creates_new_folder(tmp_path):
    out = tmp_path / "a" / "b" / "report"
    with io.staged_output(out) as tmp:
        (tmp / "x.txt").write_text("x")
    assert snapshot(out) == {"x.txt": b"x"}


def write_then_fail(out, exc):
    """A run that writes part of its report, then stops with ``exc``."""
    with io.staged_output(out) as tmp:
        (tmp / "summary.csv").write_bytes(b"half-written")
        raise exc


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(1)])
def test_staged_output_keeps_old_folder_on_failure(old_report, exc):
    before = snapshot(old_report)
    with pytest.raises(type(exc)):
        write_then_fail(old_report, exc)
    assert snapshot(old_report) == before
    # The temporary folder is gone.
    assert sorted(p.name for p in old_report.parent.iterdir()) == ["report"]


def test_staged_output_failure_without_old_folder(tmp_path):
    out = tmp_path / "report"
    with pytest.raises(KeyboardInterrupt):
        write_then_fail(out, KeyboardInterrupt())
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_staged_output_refuses_a_file(tmp_path):
    out = tmp_path / "report"
    out.write_text("I am a file")
    with pytest.raises(LlmsizeError, match="not a folder"), io.staged_output(out):
        pass
    assert out.read_text() == "I am a file"


def summary_frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 6
    return pd.DataFrame(
        {
            "model": ["m"] * n,
            "provider": ["p"] * n,
            "date": ["2024-01-25"] * n,
            "quantity": [f"q{i}" for i in range(n)],
            "mean": rng.lognormal(size=n),
            "sd": rng.lognormal(size=n),
            "r_hat": [1.0, 1.001, np.nan, np.inf, 1.2345678901, 1e-9],
            "ess_bulk": rng.uniform(100, 5000, size=n),
        }
    )


def test_write_summary_byte_identical(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    io.write_summary(summary_frame(1), a)
    # An equal table built separately (a copy, with a fresh index) gives equal bytes.
    io.write_summary(summary_frame(1).copy().reset_index(drop=True), b)
    assert a.read_bytes() == b.read_bytes()
    text = a.read_text()
    assert "\r" not in text
    assert text.endswith("\n")
    # Six significant figures, and non-finite values as empty cells.
    assert ",1.23457," in text
    lines = text.splitlines()
    assert lines[0] == "model,provider,date,quantity,mean,sd,r_hat,ess_bulk"
    assert lines[3].split(",")[6] == ""  # NaN
    assert lines[4].split(",")[6] == ""  # inf


def test_write_summary_differs_for_different_tables(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    io.write_summary(summary_frame(1), a)
    io.write_summary(summary_frame(2), b)
    assert a.read_bytes() != b.read_bytes()


def test_write_summary_does_not_modify_table(tmp_path):
    frame = summary_frame(3)
    copy = frame.copy()
    io.write_summary(frame, tmp_path / "s.csv")
    pd.testing.assert_frame_equal(frame, copy)


def test_posterior_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    tree = xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset(
                {"x": (("chain", "draw", "unknown_model"), rng.normal(size=(2, 5, 2)))},
                coords={"unknown_model": ["a", "b"]},
            ),
            "sample_stats": xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, 5), bool))}),
        }
    )
    attrs = io.provenance(
        hypothesis={"name": "h"},
        hypothesis_digest="0" * 64,
        data_digest="1" * 64,
        data_dir="d",
        seed=7,
        settings={"draws": 5},
    )
    path = tmp_path / "posterior.nc"
    io.write_posterior(tree, path, attrs)
    back = io.read_posterior(path)
    np.testing.assert_array_equal(back["posterior"]["x"].values, tree["posterior"]["x"].values)
    assert list(back["posterior"]["unknown_model"].values) == ["a", "b"]
    assert back.attrs["data_sha256"] == "1" * 64
    assert back.attrs["seed"] == "7"
    # The input tree is not modified.
    assert "data_sha256" not in tree.attrs
