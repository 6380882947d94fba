"""Read an input file safely: a regular file only, and never more than a size limit.

Data CSVs and hypothesis TOML files are named by the user, so they can be
anything the file system holds: a FIFO (``open`` would wait for a writer
forever), a link to ``/dev/zero`` or ``/dev/urandom`` (a read would never end),
a directory, a socket. :func:`read_input_bytes` opens the path without blocking,
checks what it opened (``fstat`` of the open descriptor, so a file swapped
between a check and the open cannot slip through) and reads at most
:data:`MAX_INPUT_BYTES` bytes, raising the caller's one-line error otherwise.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from llmsize.exceptions import LlmsizeError, one_line

#: The largest input file read (data CSV or hypothesis TOML): 50 MB. The bundled
#: data folder is about 300 kB in all; a file this large is a mistake, not data.
MAX_INPUT_BYTES = 50 * 1024 * 1024

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def read_input_bytes(
    path: str | Path,
    *,
    error: type[LlmsizeError] = LlmsizeError,
    what: str = "file",
    max_bytes: int = MAX_INPUT_BYTES,
    shown: str | None = None,
) -> bytes:
    """The bytes of the regular file at ``path`` (symbolic links followed).

    Raises ``error`` (one line naming the path) when the path does not exist, is
    not a regular file (a directory, FIFO, device or socket: never opened in a
    way that blocks), cannot be read, or holds more than ``max_bytes`` bytes.
    ``what`` names the file's role in the "no such ..." message; ``shown`` is
    the name the errors give the file (the path the user gave, for a resolved one).
    """
    name = one_line(shown if shown is not None else str(path))
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"no such {what}", file=name) from None
    except ValueError:  # an embedded NUL byte
        raise error(f"no such {what} (the name holds a NUL byte)", file=name) from None
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket
            try:
                kind = _kind(os.stat(path).st_mode)
            except OSError:
                kind = "a special file"
            raise error(f"is {kind}, not a regular file", file=name) from None
        raise error(one_line(f"cannot read: {exc.strerror or exc}"), file=name) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"is {_kind(info.st_mode)}, not a regular file", file=name)
        if info.st_size > max_bytes:
            raise error(
                f"is {info.st_size:,} bytes, more than the limit of {max_bytes:,}", file=name
            )
        chunks = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:  # it grew while being read
            raise error(f"is more than the limit of {max_bytes:,} bytes", file=name)
        return b"".join(chunks)
    except OSError as exc:
        raise error(one_line(f"cannot read: {exc.strerror or exc}"), file=name) from None
    finally:
        os.close(fd)
