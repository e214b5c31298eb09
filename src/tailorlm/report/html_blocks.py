"""The HTML building blocks shared by report.html and tune_report.html: the inlined stylesheet, sections,
paragraphs, tables and charts embedded as data URIs. Every piece of text goes through ``escape`` here, so a page
built from these blocks cannot carry markup from the user's data."""

from __future__ import annotations

import base64
from collections.abc import Callable
from html import escape
from importlib import resources

from tailorlm import __version__
from tailorlm.report.tables import Cell, Table


def css() -> str:
    """The stylesheet shipped as package data, inlined so the page needs no other file."""
    return resources.files("tailorlm.report").joinpath("report.css").read_text(encoding="utf-8")


def section(sid: str, heading: str, body: str) -> str:
    return f'<section id="{sid}">\n<h2>{escape(heading)}</h2>\n{body}\n</section>'


def paragraph(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{escape(text)}</p>"


def empty(text: str) -> str:
    return paragraph(text, "empty")


def html_table(table: Table, text_columns: frozenset[int] = frozenset()) -> str:
    """A ``Table`` as HTML; cell styles become CSS classes, numeric columns are right-aligned."""
    head = "".join(
        f'<th{" class=num" if i in table.numeric else ""}>{escape(h)}</th>'
        for i, h in enumerate(table.headers)
    )
    rows = "".join(
        "<tr>" + "".join(_td(c, i in table.numeric, i in text_columns) for i, c in enumerate(row)) + "</tr>"
        for row in table.rows
    )
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def _td(cell: Cell, numeric: bool, text: bool) -> str:
    classes = " ".join(c for c in ("num" if numeric else "", "text" if text else "", cell.style) if c)
    attr = f' class="{classes}"' if classes else ""
    return f"<td{attr}>{escape(cell.text)}</td>"


def _chart(svg: str | None, alt: str, caption: str = "") -> str:
    """An SVG chart as a data-URI image: vector-sharp, and its ids cannot clash with other charts'."""
    if not svg:
        return ""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    image = f'<img src="data:image/svg+xml;base64,{data}" alt="{escape(alt)}">'
    return f'<figure class="chart">{image}{cap}</figure>'


def safe_chart(draw: Callable[[], str | None], alt: str, caption: str = "") -> str:
    """A chart that fails to draw (odd data) must not cost the reader the rest of the report."""
    try:
        return _chart(draw(), alt, caption)
    except Exception as exc:  # a broken chart is reported in place, the tables still carry the numbers
        return empty(f"(chart could not be drawn: {type(exc).__name__}: {exc})")



def page(title: str, kind: str, heading: str, lead_html: str, nav: list[tuple[str, str]], body: str,
         footer: str) -> str:
    """One self-contained HTML page (report.html, tune_report.html, study.html): the stylesheet inlined, a top bar
    naming the ``kind`` of page with a link per ``(section id, label)`` of ``nav``, the heading, the lead (HTML,
    escaped by the caller), the sections' HTML and the footer text."""
    links = "".join(f'<a href="#{sid}">{escape(label)}</a>' for sid, label in nav)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="tailorlm {escape(__version__)}">
<title>{escape(title)}</title>
<style>
{css()}
</style>
</head>
<body>
<header class="top"><div class="top-inner"><div class="brand">tailorlm <span>{escape(kind)}</span></div>
<nav>{links}</nav></div></header>
<main>
<h1>{escape(heading)}</h1>
{lead_html}
{body}
</main>
<footer>{escape(footer)}</footer>
</body>
</html>
"""
