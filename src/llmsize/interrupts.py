"""How a run ends: Ctrl-C and SIGTERM stop it cleanly, and its workers end with it.

The command line calls :func:`install`: :func:`on_interrupt` handles SIGINT and
SIGTERM. Clean-ups that must not be cut short (removing a staging folder,
swapping a report in, joining a thread that writes a file) run inside
:func:`signals_deferred`; once the command line has caught the interrupt it
ignores every further one (:func:`ignore_interrupts`), so the run always ends
with exit status 130. A worker process of the run starts with
:func:`worker_init`, so it never outlives the run, even one killed by SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Iterator


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done (main thread, POSIX)."""
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


#: Set at a command-line run's first SIGINT or SIGTERM (:func:`on_interrupt`).
_interrupted = threading.Event()


def on_interrupt(signum, frame) -> None:
    """Signal handler of the command line for SIGINT and SIGTERM: raise
    KeyboardInterrupt, and remember it.

    Python drops an exception raised in a finalizer ("Exception ignored in
    ``__del__``"), so an interrupt that lands in one would be lost and the run
    would complete; remembered, it still stops the run before its report
    replaces the previous one (:func:`check_interrupted`, called by
    :func:`llmsize.outputs.io.staged_output` before the swap). SIGTERM unwinds like Ctrl-C, so
    staged output is cleaned up and the previous report stays in place.
    """
    _interrupted.set()
    raise KeyboardInterrupt


def check_interrupted() -> None:
    """Raise KeyboardInterrupt if the run was interrupted (:func:`on_interrupt`)."""
    if _interrupted.is_set():
        raise KeyboardInterrupt


def ignore_interrupts() -> None:
    """Ignore SIGINT and SIGTERM from now on: the run is ending (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def install() -> None:
    """Set up a command-line run: :func:`on_interrupt` for SIGINT and SIGTERM, and no
    traceback for an interrupt Python drops in a finalizer (it is remembered instead).
    """
    import sys

    signal.signal(signal.SIGINT, on_interrupt)
    signal.signal(signal.SIGTERM, on_interrupt)
    default = sys.unraisablehook

    def hook(unraisable) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            default(unraisable)

    sys.unraisablehook = hook


def worker_init(parent: int) -> None:
    """Initializer of a worker process of the run: SIGINT ignored (the run handles
    interrupts), and the worker ended with process ``parent`` (:func:`exit_with_parent`).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=exit_with_parent, args=(parent,), name="llmsize-exit-with-parent", daemon=True
    ).start()


def exit_with_parent(parent: int) -> None:
    """Wait until process ``parent`` ends, then end this process at once.

    On Linux a pidfd of the parent becomes readable when it ends, however it
    ends (a forked worker's own parent is the fork server, which outlives the
    run, so ``PR_SET_PDEATHSIG`` would not fire); elsewhere the parent is
    polled every second.
    """
    try:
        fd: int | None = os.pidfd_open(parent)
    except (AttributeError, OSError):  # not Linux, or the parent is already gone
        fd = None
    if fd is not None:
        select.select([fd], [], [])
    else:
        while True:
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                break
            except OSError:  # alive, but not ours to signal
                pass
            time.sleep(1.0)
    os._exit(1)
