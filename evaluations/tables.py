"""One table renderer: rows (mappings) -> Markdown, CSV or an HTML ``<table>``, for every leaderboard.

A table is its rows, its ``columns`` (row keys, in order) and how a cell reads: ``cell(row, column)``
returns the cell's text (CSV: any value the ``csv`` module writes; ``None`` is an empty field) and
``headers`` maps a column to its header text (default: the key). Markdown escapes ``|`` in cells; HTML
escapes every header and cell.
"""

from __future__ import annotations

import csv
import html
import io
from typing import Any, Callable, Mapping, Sequence

Row = Mapping[str, Any]
Cell = Callable[[Row, str], Any]

__all__ = ["markdown_table", "csv_table", "html_table"]


def _text(row: Row, column: str) -> str:
    return str(row.get(column))


def _header(headers: Mapping[str, str] | None, column: str) -> str:
    return headers.get(column, column) if headers else column


def markdown_table(rows: Sequence[Row], columns: Sequence[str], cell: Cell | None = None,
                   headers: Mapping[str, str] | None = None) -> str:
    """A pipe table: header line, ``|---|`` rule, one line per row."""
    cell = cell or _text
    out = ["| " + " | ".join(_header(headers, c) for c in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(str(cell(r, c)).replace("|", "\\|") for c in columns) + " |" for r in rows]
    return "\n".join(out) + "\n"


def csv_table(rows: Sequence[Row], columns: Sequence[str], cell: Cell | None = None,
              lineterminator: str = "\n") -> str:
    """CSV with the column keys as the header line."""
    cell = cell or (lambda r, c: r.get(c))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=lineterminator)
    w.writerow(columns)
    for r in rows:
        w.writerow([cell(r, c) for c in columns])
    return buf.getvalue()


def html_table(rows: Sequence[Row], columns: Sequence[str], cell: Cell | None = None,
               headers: Mapping[str, str] | None = None, *, attrs: str = "", caption: str | None = None,
               sections: bool = True, th_attrs: str | Callable[[str], str] = ' scope="col"',
               row_attrs: Callable[[Row], str] | None = None, td_attrs: Callable[[Row, str], str] | None = None,
               header_html: Callable[[str], str] | None = None) -> str:
    """``<table{attrs}>`` with an optional caption; ``sections``: header row in ``<thead>``, rows in
    ``<tbody>``. ``attrs``/``th_attrs`` (a string, or ``th_attrs(column)``)/``row_attrs(row)``/
    ``td_attrs(row, column)`` are inserted verbatim (escape what they hold); ``header_html(escaped)``
    may mark up a header's escaped text (e.g. with ``<wbr>``)."""
    cell = cell or _text
    th = th_attrs if callable(th_attrs) else (lambda _: th_attrs)
    mark = header_html or (lambda text: text)
    head = "".join(f"<th{th(c)}>{mark(html.escape(_header(headers, c)))}</th>" for c in columns)
    body = "".join(f"<tr{row_attrs(r) if row_attrs else ''}>"
                   + "".join(f"<td{td_attrs(r, c) if td_attrs else ''}>{html.escape(str(cell(r, c)))}</td>"
                             for c in columns) + "</tr>" for r in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption is not None else ""
    if sections:
        return f"<table{attrs}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f"<table{attrs}>{cap}<tr>{head}</tr>{body}</table>"
