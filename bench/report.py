"""The benches' result tables: Markdown rows of cells, a missing figure blank."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def cell(value: float, digits: int = 2) -> str:
    """`value` with `digits` decimals; blank where it is NaN (not measured)."""
    return "" if value != value else f"{value:.{digits}f}"


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table: the header, its rule, then a line a row."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)
