"""The shared cells and tables of every Markdown page: one implementation each."""

from __future__ import annotations

import pandas as pd


def markdown_table(df: pd.DataFrame) -> str:
    """A pipe table of ``df``'s columns and rows; a ``|`` inside a cell is escaped
    (it would start a new cell, e.g. between two sources).
    """
    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = [
        "| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |"
        for row in df.itertuples(index=False)
    ]
    return "\n".join([head, sep, *body])


def billions(x: float) -> str:
    """A size in billions: whole from 10 up, one decimal below."""
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"
