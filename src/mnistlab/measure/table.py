"""The text tables of bench.txt, levers.txt and scaling.txt: one layout for every measurement."""

from __future__ import annotations

from collections.abc import Sequence


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1, gap: int = 1) -> str:
    """Columns as wide as their widest cell, `gap` spaces apart, a rule under the header; the first `left`
    columns (names) left-aligned, the others (figures) right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return (
            (" " * gap)
            .join(
                str(c).ljust(w) if i < left else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            .rstrip()
        )

    head = line(headers)
    return "\n".join([head, "-" * len(head), *(line(r) for r in rows)])


LINE_WIDTH = 160  # the widest line of a command's normal output (terminal text people scan)


def fit_width(text: str, width: int = LINE_WIDTH) -> str:
    """`text` with every line longer than `width` wrapped at spaces, its continuation lines indented as the
    line was plus two spaces (a table that fits is left as it is)."""
    import textwrap

    out = []
    for line in text.split("\n"):
        if len(line) <= width:
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        out.extend(
            textwrap.wrap(
                line,
                width,
                initial_indent="",
                subsequent_indent=indent + "  ",
                break_long_words=True,
                break_on_hyphens=False,
            )
            or [line[:width]]
        )
    return "\n".join(out)
