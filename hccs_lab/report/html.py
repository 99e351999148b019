"""The review as one self-contained HTML file (plotly.js inlined once, no CDN), or shown in a notebook."""
from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import write_text
from .context import Section


def html_table(rows: list[dict], columns: list[tuple[str, str]], cls: str = "") -> str:
    """rows of dicts -> an HTML table; columns are (key, header); floats get 4 significant digits."""

    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return f"{v:.4g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in columns)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(k, ''))}</td>" for k, _ in columns) + "</tr>" for r in rows)
    return f"<table class='hccs-table {cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def paragraph(text: str) -> str:
    return f"<p>{text}</p>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table.hccs-table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
table.hccs-table th,table.hccs-table td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
table.hccs-table th{background:#f4f4f4} table.kv td{text-align:left}
pre.cpp{background:#f8f8f8;border:1px solid #ddd;padding:.8em;overflow:auto;font-size:.8em;max-height:40em}
nav a{margin-right:1em} .meta{color:#666;font-size:.9em}
"""


def render_html(sections: list[Section], settings, title: str | None = None) -> str:
    """The whole file as a string: plotly.js inlined once in <head>, every figure a div + its script."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    from .. import __version__

    title = title or f"HCCS design review: {settings.model}"
    parts, nav = [], []
    fig_no = 0
    for s in sections:
        nav.append(f"<a href='#{s.key}'>{html.escape(s.title)}</a>")
        parts.append(f"<section id='{s.key}' class='hccs-section'><h2>{html.escape(s.title)}</h2>")
        for b in s.blocks:
            if isinstance(b, str):
                parts.append(b)
            else:
                fig_no += 1
                parts.append(pio.to_html(b, full_html=False, include_plotlyjs=False, include_mathjax=False,
                                         div_id=f"fig-{s.key}-{fig_no}", config={"displaylogo": False}))
        parts.append("</section>")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='meta'>hccs-lab {__version__}, {stamp}. Self-contained: "
        f"no network needed to view. Cycle and throughput figures are emulator estimates.</p>"
        f"<nav>{''.join(nav)}</nav>{''.join(parts)}</body></html>"
    )


def write_atomic(path, text: str) -> Path:
    """Write via a temp file in the same folder and os.replace, so no half-written file ever exists."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"--out {path} is a directory; give a file name such as {path / 'review.html'}")
    return write_text(path, text)


def display_sections(sections: list[Section]) -> None:
    """Show sections in a notebook: HTML fragments as HTML, figures through plotly's renderer."""
    from IPython.display import HTML, display

    for s in sections:
        display(HTML(f"<h2>{html.escape(s.title)}</h2>"))
        for b in s.blocks:
            display(HTML(b) if isinstance(b, str) else b)


def show(section: Section) -> None:
    """Display one section in a notebook."""
    display_sections([section])


def save_html(sections: list[Section], settings, out) -> Path:
    """The same self-contained file `hccs-lab report` writes, from sections already built."""
    return write_atomic(out, render_html(sections, settings))


