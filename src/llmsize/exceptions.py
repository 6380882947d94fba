"""Errors that reach the user as one line, without a traceback."""

from __future__ import annotations


def one_line(text: str) -> str:
    r"""``text`` with line breaks and other unprintable characters escaped, as in repr.

    Every character ``str.splitlines`` breaks at (``\n``, ``\r``, ``\x85``,
    ``\u2028``...) is unprintable, so the result is always one line.
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class LlmsizeError(Exception):
    """An input problem the user can fix, reported as ``file, row N, field F: message``.

    Parameters
    ----------
    message : str
        What is wrong and, where possible, what is expected.
    file : str, optional
        The file the problem is in.
    row : int, optional
        1-based data row (the header is not counted).
    field : str, optional
        Column name, or dotted key path in a hypothesis file.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        # A path or key may hold a line break or a NUL byte: shown escaped.
        self.file = one_line(str(file)) if file is not None else None
        self.row = row
        self.field = one_line(field) if field is not None else None
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field:
            where.append(f"field '{self.field}'")
        prefix = ", ".join(where)
        text = f"{prefix}: {self.message}" if prefix else self.message
        # One line whatever the input held (a path or key with a line break).
        return one_line(text)


class DataError(LlmsizeError):
    """A data file is missing, malformed or holds an impossible value."""


class HypothesisError(LlmsizeError):
    """A hypothesis file (or override) is malformed or names an unknown prior."""
