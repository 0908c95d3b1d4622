"""The text tables of bench.txt, levers.txt and scaling.txt: one layout for every measurement."""

from __future__ import annotations

from collections.abc import Sequence


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> str:
    """Columns as wide as their widest cell, a rule under the header; the first `left` columns
    (names) left-aligned, the others (figures) right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return " ".join(str(c).ljust(w) if i < left else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    head = line(headers)
    return "\n".join([head, "-" * len(head), *(line(r) for r in rows)])
