"""Ctrl-C and SIGTERM end a run with exit status 130 and leave the previous report as it was.

The interrupts of a real fit are tested in ``test_cli.py`` (they need the tiny
fit); here the machinery itself, without sampling: a command that writes a
report slowly, interrupted twice while it writes, and an interrupt that Python
dropped (one raised in a finalizer) that must still keep the report out.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from llmsize import interrupts
from llmsize.outputs import io

from .conftest import subprocess_env

#: A command of the real command-line group that writes a report of 100 files, one
#: per 50 ms, through the real staged output, run through the console script's main.
SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    import click
    from llmsize import cli
    from llmsize.outputs import io

    @cli.cli.command("slow-write")
    @click.argument("out")
    def slow_write(out):
        with io.staged_output(out) as tmp:
            for i in range(100):
                (tmp / f"f{i}.txt").write_text("x")
                time.sleep(0.05)

    sys.argv = ["llmsize", "slow-write", sys.argv[1]]
    cli.main()
    """
)


def _files(root):
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("signals", [("SIGINT", "SIGINT"), ("SIGINT", "SIGINT", "SIGTERM")])
def test_second_interrupt_while_writing_still_exits_130(tmp_path, signals):
    out = tmp_path / "report"
    out.mkdir()
    (out / "summary.csv").write_bytes(b"the previous report\n")
    before = _files(out)
    with subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(out)],
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    ) as proc:
        try:
            deadline = time.monotonic() + 60
            while not list(tmp_path.glob(".report.*.partial")):  # writing has begun
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(0.2)
            for name in signals:
                proc.send_signal(getattr(signal, name))
                time.sleep(0.01)
            assert proc.wait(timeout=60) == 130
            err = proc.stderr.read()
            assert err.splitlines() == ["llmsize: interrupted; the previous report is unchanged"], (
                err
            )
        finally:
            if proc.poll() is None:  # a failed check: stop the run before closing
                proc.kill()
    assert _files(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_a_dropped_interrupt_still_keeps_the_previous_report(tmp_path, monkeypatch):
    """An interrupt raised in a finalizer is dropped by Python; remembered, it still
    stops the swap."""
    out = tmp_path / "report"
    out.mkdir()
    (out / "summary.csv").write_bytes(b"old\n")
    monkeypatch.setattr(interrupts, "_interrupted", type(interrupts._interrupted)())

    def write_while_interrupted():
        with io.staged_output(out) as tmp:
            (tmp / "summary.csv").write_bytes(b"new\n")
            with contextlib.suppress(KeyboardInterrupt):  # as Python does in a __del__
                interrupts.on_interrupt(signal.SIGINT, None)

    with pytest.raises(KeyboardInterrupt):
        write_while_interrupted()
    assert (out / "summary.csv").read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_signals_deferred_holds_sigint_and_sigterm():
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    with interrupts.signals_deferred():
        assert {signal.SIGINT, signal.SIGTERM} <= signal.pthread_sigmask(signal.SIG_BLOCK, set())
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before
