"""Small HTML builders for the report: escaped text, tables, inline PNGs, sections, the page."""
from __future__ import annotations

import base64
import html
from typing import Any, Iterable, Sequence

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1150px; padding: 1em 2em; color: #222; }
nav a { margin-right: 1em; } h1 { margin-bottom: .2em; } h2 { border-bottom: 2px solid #ddd; padding-top: .6em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #2e7d32; font-weight: 600; } .bad { color: #c62828; font-weight: 600; } .muted { color: #777; }
.figures { display: flex; flex-wrap: wrap; gap: 8px; } img { max-width: 100%; }
.note { background: #fff8e1; border-left: 4px solid #f9a825; padding: .5em 1em; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: 12px; white-space: pre-wrap; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def fmt(value: Any) -> str:
    """Numbers to 4 significant decimals, the rest as text; None as an em dash."""
    if value is None:
        return "&mdash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.4f}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return esc(value)


def image(png: bytes, alt: str) -> str:
    """An inline PNG: the report is one file and needs no network."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], raw: bool = False) -> str:
    """A table; cells are escaped and numbers right-aligned unless `raw` (cells already HTML)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)

    def cell(value: Any) -> str:
        if raw:
            return f"<td>{value}</td>"
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        return f'<td class="num">{fmt(value)}</td>' if numeric else f"<td>{fmt(value)}</td>"
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def breakable(text: str) -> str:
    """Escaped text that may wrap after `/`, `,` and `:` (long paths and fingerprints in table cells)."""
    return esc(text).replace("/", "/<wbr>").replace(",", ",<wbr>").replace(":", ":<wbr>")


def paragraph(text: str, css: str = "") -> str:
    return f'<p class="{css}">{esc(text)}</p>' if css else f"<p>{esc(text)}</p>"


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole self-contained document: (anchor, title, body) sections with a navigation bar."""
    nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _ in sections)
    body = "".join(section(a, t, b) for a, t, b in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1><p class=\"muted\">{esc(subtitle)}</p>"
            f"<nav>{nav}</nav>{body}</body></html>")
