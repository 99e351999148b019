"""The explorer's views of one sentence: a query x key matrix, a token strip, the heads of a layer.

Pure data functions (`matrix_values`, `token_strip_layout`, `grid_shape`) next to figure builders
and updaters that only draw. Every view uses only the keys a row's mask lets through: padding is
never shown, and for a causal head (a decoder) row i has keys 0..i, so the matrix is a lower
triangle whose upper part is empty, not small.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from .figures import BASE_LAYOUT, BLUE, SEQUENTIAL, VERMILLION, live_figure

MATRIX_CLASS = "hccs-attention-matrix"
STRIP_CLASS = "hccs-token-strip"
LAYER_CLASS = "hccs-layer-patterns"
STRIP_WIDTH = 1080  # px of the token strip
CHAR_PX = 7.5  # estimated width of one character of the strip's font


def token_labels(tokens) -> list[str]:
    """Axis labels that stay unique when a token repeats: "3:the"."""
    return [f"{i}:{t}" for i, t in enumerate(tokens)]


def matrix_values(probs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The attention matrix [query, key] with NaN where the mask hides a key (padding, the future)."""
    return np.where(np.asarray(mask, bool), np.asarray(probs, np.float64), np.nan)


def nested(z: np.ndarray, digits: int = 5) -> list:
    """Nested lists with None for NaN (what plotly draws as a gap)."""
    z = np.round(np.asarray(z, np.float64), digits)
    return [[None if not math.isfinite(v) else v for v in row] for row in z.tolist()]


@dataclass(frozen=True)
class StripLayout:
    """Where each token's box sits in the strip: left edge, width (in characters) and line."""

    x: np.ndarray
    width: np.ndarray
    line: np.ndarray

    @property
    def lines(self) -> int:
        return int(self.line.max()) + 1 if self.line.size else 1


def token_strip_layout(tokens, chars_per_line: int) -> StripLayout:
    """Tokens left to right, wrapped onto a new line when the next one would not fit."""
    x, widths, lines = [], [], []
    pos, line = 0.0, 0
    for t in tokens:
        w = max(len(t), 2) + 1.0
        if pos > 0 and pos + w > chars_per_line:
            pos, line = 0.0, line + 1
        x.append(pos)
        widths.append(w)
        lines.append(line)
        pos += w
    return StripLayout(np.array(x), np.array(widths), np.array(lines, dtype=int))


def grid_shape(n_heads: int) -> tuple[int, int]:
    """Rows and columns of the small-multiples grid: at most 6 columns, as square as that allows."""
    cols = min(6, max(1, math.ceil(math.sqrt(n_heads))))
    if n_heads > cols * cols:
        cols = min(6, math.ceil(n_heads / math.ceil(n_heads / 6)))
    return math.ceil(n_heads / cols), cols


# ---- the query x key matrix -------------------------------------------------------------------------

def build_matrix_figure(on_click):
    import plotly.graph_objects as go

    fig = live_figure(
        data=[go.Heatmap(name="attention", z=[[None]], colorscale=SEQUENTIAL, zmin=0,
                         colorbar=dict(title=dict(text="softmax<br>probability", side="right"), thickness=14),
                         hovertemplate="query %{y}<br>key %{x}<br>p = %{z:.4f}<extra></extra>")],
        layout=go.Layout(**BASE_LAYOUT, title=dict(text="", font=dict(size=13)), height=520, width=600,
                         xaxis=dict(title="key token", tickangle=-60, tickfont=dict(size=10)),
                         yaxis=dict(title="query token (click a row)", autorange="reversed", tickfont=dict(size=10)),
                         margin=dict(l=110, r=20, t=60, b=110),
                         shapes=[dict(type="rect", xref="paper", x0=0, x1=1, yref="y", y0=-0.5, y1=0.5,
                                      line=dict(color="white", width=2.5))]))
    fig.add_class(MATRIX_CLASS)
    fig.data[0].on_click(on_click)
    return fig


def draw_matrix(fig, ta, query: int, title: str, state: dict) -> None:
    """The whole matrix of one sentence and head (a new sentence or head)."""
    labels = token_labels(ta.tokens)
    z = matrix_values(ta.probs, ta.mask)
    with fig.batch_update():
        hm = fig.data[0]
        hm.x, hm.y, hm.z = labels, labels, nested(z)
        hm.zmax = float(np.nanmax(z)) if np.isfinite(z).any() else 1.0
        hm.meta = json.dumps(state)
        fig.layout.title.text = title
        _query_box(fig, query)


def mark_query(fig, query: int, state: dict) -> None:
    """Only the box around the chosen query row (a click on another token)."""
    with fig.batch_update():
        _query_box(fig, query)
        fig.data[0].meta = json.dumps(state)


def _query_box(fig, query: int) -> None:
    box = fig.layout.shapes[0]
    box.y0, box.y1 = query - 0.5, query + 0.5


# ---- the token strip -------------------------------------------------------------------------------

def build_strip_figure(on_click):
    import plotly.graph_objects as go

    fig = live_figure(
        data=[go.Bar(name="tokens", orientation="h", x=[], y=[], base=[], text=[], textposition="inside",
                     insidetextanchor="middle", textfont=dict(size=12), marker=dict(color=[], line=dict(width=0)),
                     hovertemplate="%{text}: %{customdata:.4f}<extra></extra>", customdata=[])],
        layout=go.Layout(**BASE_LAYOUT, height=120, width=STRIP_WIDTH, bargap=0.15, showlegend=False,
                         title=dict(text="", font=dict(size=13)), margin=dict(l=10, r=10, t=40, b=10),
                         xaxis=dict(visible=False, fixedrange=True), yaxis=dict(visible=False, autorange="reversed",
                                                                              fixedrange=True)))
    fig.add_class(STRIP_CLASS)
    fig.data[0].on_click(on_click)
    return fig


def strip_colours(weights: np.ndarray, valid: np.ndarray, query: int) -> list[str]:
    """Blue with opacity = attention / the row's largest; keys the query may not see in light grey; the
    query itself outlined by the caller."""
    w = np.asarray(weights, np.float64)
    top = w[valid].max() if valid.any() and w[valid].max() > 0 else 1.0
    r, g, b = (int(BLUE[i:i + 2], 16) for i in (1, 3, 5))
    return [f"rgba({r},{g},{b},{0.08 + 0.92 * wi / top:.3f})" if ok else "rgba(160,160,160,0.15)"
            for wi, ok in zip(w, valid)]


def draw_strip(fig, ta, query: int, title: str) -> None:
    chars = int(STRIP_WIDTH / CHAR_PX)
    lay = token_strip_layout(ta.tokens, chars)
    weights = np.where(ta.mask[query], ta.probs[query], 0.0)
    with fig.batch_update():
        bar = fig.data[0]
        bar.base, bar.x, bar.y = lay.x.tolist(), (lay.width - 0.4).tolist(), lay.line.tolist()
        bar.text = list(ta.tokens)
        bar.customdata = weights.round(6).tolist()
        bar.marker.color = strip_colours(weights, ta.mask[query], query)
        bar.marker.line.width = [3 if i == query else 0 for i in range(len(ta.tokens))]
        bar.marker.line.color = VERMILLION
        fig.layout.height = 40 + 34 * lay.lines
        fig.layout.xaxis.range = [-0.5, chars + 0.5]
        fig.layout.title.text = title


# ---- the heads of one layer (small multiples) -----------------------------------------------------

def build_layer_figure(n_heads: int, on_click_head):
    """A grid of small attention patterns, one per head; a click on one picks that head."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows, cols = grid_shape(n_heads)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"H{h}" for h in range(n_heads)],
                        horizontal_spacing=0.02, vertical_spacing=0.08)
    for h in range(n_heads):
        fig.add_trace(go.Heatmap(z=[[None]], coloraxis="coloraxis", name=f"H{h}",
                                 hovertemplate=f"H{h}<br>query %{{y}}<br>key %{{x}}<br>p = %{{z:.3f}}<extra></extra>"),
                      row=h // cols + 1, col=h % cols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    fig.update_layout(**BASE_LAYOUT, coloraxis=dict(colorscale=SEQUENTIAL, cmin=0, cmax=1, showscale=False),
                      height=90 + 100 * rows, width=110 * cols + 40, margin=dict(l=10, r=10, t=60, b=10),
                      title=dict(text="", font=dict(size=13)))
    widget = live_figure(fig)
    widget.add_class(LAYER_CLASS)
    for h, trace in enumerate(widget.data):
        trace.on_click(lambda *_args, h=h: on_click_head(h))
    return widget


def draw_layer(fig, attentions: list, selected: int, title: str) -> None:
    """Each head's matrix of the sentence; the selected head's title in bold."""
    with fig.batch_update():
        for h, ta in enumerate(attentions):
            fig.data[h].z = nested(matrix_values(ta.probs, ta.mask), digits=3)
        for h, ann in enumerate(fig.layout.annotations[:len(attentions)]):
            ann.text = f"<b>[H{h}]</b>" if h == selected else f"H{h}"
        fig.layout.title.text = title
