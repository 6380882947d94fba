"""The main job's processes: a worker of the run never outlives it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

from .conftest import subprocess_env

#: A parent that starts a worker as ``pipeline.report_worker`` does (a fork server,
#: ``interrupts.worker_init``), prints the worker's pid, then dies by SIGKILL.
KILLED_PARENT = textwrap.dedent(
    """
    import multiprocessing, os, signal
    from concurrent.futures import ProcessPoolExecutor
    from llmsize.interrupts import worker_init

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context(method),
        initializer=worker_init,
        initargs=(os.getpid(),),
    )
    print(pool.submit(os.getpid).result(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_worker_ends_with_its_killed_parent():
    """SIGKILL leaves the parent no clean-up: the worker sees it go (a pidfd of the
    parent on Linux, polling elsewhere) and ends, and with it the fork server and the
    resource tracker, which live only as long as the worker holds their pipes."""
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_PARENT],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    worker = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker), "the worker outlived its parent"


def test_the_report_worker_starts_with_the_exit_with_parent_initializer(monkeypatch):
    """``report_worker`` is what :func:`test_a_worker_ends_with_its_killed_parent`
    models: its pool runs ``interrupts.worker_init`` with this process's pid (inside
    ``pipeline._worker_init``, which also gives the worker this process's logger
    levels and warning filters)."""
    from llmsize import interrupts, pipeline

    made = {}

    class Pool:
        def __init__(self, **kwargs):
            made.update(kwargs)

        def submit(self, fn, *args):
            return None

        def shutdown(self, **kwargs):
            made["shutdown"] = kwargs

    monkeypatch.setattr(pipeline, "ProcessPoolExecutor", Pool)
    with pipeline.report_worker():
        pass
    assert made["initializer"] is pipeline._worker_init
    parent, levels, filters = made["initargs"]
    assert parent == os.getpid()
    assert filters == list(warnings.filters)
    assert levels[""] == logging.getLogger().level

    called = []
    monkeypatch.setattr(interrupts, "worker_init", called.append)
    quiet = {"llmsize-test-worker": logging.ERROR}
    with warnings.catch_warnings():
        pipeline._worker_init(12345, quiet, [("ignore", None, UserWarning, None, 0)])
        assert warnings.filters == [("ignore", None, UserWarning, None, 0)]
    assert called == [12345]
    assert logging.getLogger("llmsize-test-worker").level == logging.ERROR


def test_a_failing_report_waits_for_the_figures_drawn_into_its_staging_folder(tmp_path):
    """The figure worker writes into the staging folder: a report that fails (or is
    interrupted) waits for it before the folder is removed (``pipeline._figures_awaited``)."""
    from concurrent.futures import ThreadPoolExecutor

    from llmsize import pipeline

    written = tmp_path / "figure.png"

    def slow_figure():
        time.sleep(0.3)
        written.write_bytes(b"png")

    def failing_report(pool):
        with pipeline._figures_awaited() as drawn:
            drawn.append(pool.submit(slow_figure))
            raise RuntimeError("the report failed")

    with ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.raises(RuntimeError, match="the report failed"):
            failing_report(pool)
        assert written.read_bytes() == b"png"
