"""Small HTML tables for notebooks' rich display (`_repr_html_`) of the objects users hold.

Every cell is escaped: run names, model specs and dataset names are user input, and a notebook
renders what `_repr_html_` returns as markup."""

from __future__ import annotations

import html
from collections.abc import Sequence

Row = Sequence[object]


def _cell(value: object, tag: str) -> str:
    return f"<{tag} style='text-align:left'>{html.escape(str(value))}</{tag}>"


def html_table(caption: str, rows: Sequence[Row], headers: Row = ()) -> str:
    """A table with a caption, an optional header row and one row per sequence of values."""
    head = f"<tr>{''.join(_cell(h, 'th') for h in headers)}</tr>" if headers else ""
    body = "".join(f"<tr>{''.join(_cell(v, 'td') for v in row)}</tr>" for row in rows)
    return f"<table><caption style='text-align:left'><b>{html.escape(caption)}</b></caption>{head}{body}</table>"
