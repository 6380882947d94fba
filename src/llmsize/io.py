"""Write a run's outputs all at once, and read them back.

Everything goes to a temporary folder beside the output folder and replaces it
only when the run completes, so an error or an interruption leaves the previous
report as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from llmsize import __version__
from llmsize.exceptions import LlmsizeError

#: Files of a report directory that are small enough to commit.
SMALL_FILES = ("summary.csv", "README.md", "diagnostics.json")


@contextlib.contextmanager
def staged_output(out_dir: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it becomes ``out_dir``.

    The previous ``out_dir`` is moved aside first and deleted only after the
    new one is in place. On any exception (KeyboardInterrupt included) the
    temporary folder is removed and ``out_dir`` is untouched.
    """
    out_dir = Path(out_dir)
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LlmsizeError(f"cannot create the output folder: {exc}", file=str(out_dir)) from None
    if out_dir.exists() and not out_dir.is_dir():
        raise LlmsizeError("exists and is not a folder", file=str(out_dir))
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    # The swap is two renames; a signal between them would leave no report at all.
    with _signals_deferred():
        if out_dir.exists():
            old = parent / f".{out_dir.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done (main thread, POSIX)."""
    import signal
    import threading

    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not (
        threading.main_thread()
    ):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def provenance(
    *,
    hypothesis: dict,
    hypothesis_digest: str,
    data_digest: str,
    data_dir: str,
    seed: int,
    settings: dict,
) -> dict[str, str]:
    """Attributes recorded with every output: what produced it."""
    return {
        "llmsize_version": __version__,
        "hypothesis_name": str(hypothesis.get("name", "")),
        "hypothesis": json.dumps(hypothesis, sort_keys=True),
        "hypothesis_sha256": hypothesis_digest,
        "data_dir": data_dir,
        "data_sha256": data_digest,
        "seed": str(seed),
        "sampler_settings": json.dumps(settings, sort_keys=True),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def write_posterior(tree: xr.DataTree, path: Path, attrs: dict[str, str]) -> None:
    """Save the run's DataTree as netCDF (h5netcdf engine), uncompressed.

    MCMC draws are nearly incompressible: on the default run at 3000 draws per
    chain, zlib (level 4, with byte shuffle) made the file 13% smaller (194
    against 222 MiB) and took 4.6 s to write against 1.2 s.
    """
    tree = tree.copy()
    tree.attrs.update(attrs)
    tree.to_netcdf(path, engine="h5netcdf")


def read_posterior(path: str | Path) -> xr.DataTree:
    """Load a saved run."""
    return xr.open_datatree(path, engine="h5netcdf").load()


def write_summary(table: pd.DataFrame, path: Path) -> None:
    """Write ``summary.csv`` with fixed formatting, so equal runs give equal bytes."""
    out = table.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f":
            out[col] = out[col].map(lambda v: "" if not np.isfinite(v) else f"{v:.6g}")
    out.to_csv(path, index=False, lineterminator="\n")


def write_json(obj: dict, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
