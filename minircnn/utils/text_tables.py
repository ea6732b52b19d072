"""Tables for people: plain text for the terminal, Markdown for docs/.

Used by ``minircnn gradcheck``, ``minircnn bench``, the transfer comparison and
scripts/performance_page.py, so every table the package prints looks the same.
"""

from __future__ import annotations

from collections.abc import Sequence


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], *,
               right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell, a dashed rule under the header.

    Args:
        header: column titles.  rows: cells, already formatted as strings.
        right: indices of the columns to right-align (numbers); the rest align left.
    """
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells):
        padded = [c.rjust(w) if i in right else c.ljust(w)
                  for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(padded).rstrip()

    return "\n".join(line(r) for r in [header, tuple("-" * w for w in widths), *rows])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], *,
                   right: Sequence[int] = ()) -> str:
    """The same table in Markdown (``|`` cells; ``---:`` marks a right-aligned column)."""
    rule = ["---:" if i in right else "---" for i in range(len(header))]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, rule, *rows])
