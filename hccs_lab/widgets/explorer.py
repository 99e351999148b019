"""The head explorer: every head of a captured bank at a glance, then one head in detail.

`HeadExplorer(bank, loaded=None)` shows a layers x heads heatmap (coloured by a summary statistic;
click a cell or use the dropdowns to pick a head), the selected head's histogram of max-centered
logits, its softmax probability against key rank (mean over rows with a p10-p90 band), the
broad/focused split of the whole model, and, when the model is passed as `loaded`, one sentence of
the bank with its tokens coloured by the head's attention from a chosen query token.

Each control calls a plain method (`select`, `set_metric`, `set_sentence`, `set_query`), so tests
drive the explorer without a browser; figures are FigureWidgets updated inside `batch_update()`.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from ..capture import BROAD_THRESHOLD, HeadRows, LogitBank, attention_for_text
from ..errors import InputError, InputTypeError

METRICS = {
    "norm_entropy": "softmax entropy / log(valid keys)",
    "entropy": "softmax entropy (nats)",
    "std": "logit spread (std of max-centered logits)",
    "p99": "99th percentile of distance below the row max",
    "scale": "suggested int8 scale",
}
HIST_BINS = 60
SENTENCE_CLASS = "hccs-sentence"


@dataclass
class RankProfile:
    """Softmax probability by key rank over a head's rows: mean and p10 / p90, for ranks 1..len."""

    ranks: np.ndarray
    mean: np.ndarray
    p10: np.ndarray
    p90: np.ndarray


def rank_profile(rows: HeadRows) -> RankProfile:
    """Per row, probabilities sorted high to low; at each rank, statistics over the rows that have that many keys."""
    p = rows.softmax()
    srt = -np.sort(-np.where(rows.mask, p, -1.0), axis=1)  # masked keys sink below every probability
    has = np.arange(rows.n)[None, :] < rows.valid_len[:, None]
    top = int(rows.valid_len.max()) if len(rows) else 0
    mean, p10, p90 = (np.zeros(top) for _ in range(3))
    for r in range(top):
        col = srt[has[:, r], r]
        mean[r], p10[r], p90[r] = col.mean(), np.percentile(col, 10), np.percentile(col, 90)
    return RankProfile(np.arange(1, top + 1), mean, p10, p90)


def centered_histogram(rows: HeadRows, bins: int = HIST_BINS) -> tuple:
    """(bin centres, counts) of a head's max-centered logits over the valid keys."""
    c = rows.centered()
    counts, edges = np.histogram(c, bins=bins)
    return 0.5 * (edges[:-1] + edges[1:]), counts


def token_html(tokens, weights, query: int) -> str:
    """Tokens as spans with a background whose strength is the attention weight (max weight = full colour)."""
    w = np.asarray(weights, dtype=np.float64)
    top = w.max() if w.size and w.max() > 0 else 1.0
    spans = []
    for i, (tok, wi) in enumerate(zip(tokens, w)):
        alpha = wi / top
        border = "border:2px solid #cf222e;" if i == query else ""
        spans.append(
            f'<span title="{wi:.4f}" data-weight="{wi:.6g}" style="background:rgba(31,119,180,{alpha:.3f});'
            f'{border}padding:1px 3px;margin:1px;border-radius:3px;display:inline-block">{html.escape(tok)}</span>'
        )
    return "".join(spans)


class HeadExplorer:
    """Layers x heads overview plus one head in detail (see the module docstring)."""

    def __init__(self, bank: LogitBank, loaded=None, metric: str = "norm_entropy", layer: int = 0, head: int = 0,
                 max_len: int | None = None):
        if not isinstance(bank, LogitBank):
            raise InputTypeError(f"HeadExplorer takes a LogitBank, got {type(bank).__name__}")
        if metric not in METRICS:
            raise InputError(f"metric must be one of {list(METRICS)}, got {metric!r}")
        if loaded is not None and (loaded.n_layers, loaded.n_heads) != (bank.n_layers, bank.n_heads):
            raise InputError(
                f"the model ({loaded.n_layers}x{loaded.n_heads}) does not match the bank ({bank.n_layers}x{bank.n_heads})")
        self.bank = bank
        self.loaded = loaded
        self.max_len = max_len or bank.seq_len
        self.summary = bank.summary()
        self.metric = metric
        self.layer, self.head = 0, 0
        self.sentence = 0
        self.query = 0
        self.sentence_attention = None  # TextAttention of the shown sentence
        self._attn_cache: dict = {}
        self._sentences = self._sentence_choices()
        self._suspend = False
        self._build_widgets()
        self.set_metric(metric)
        self.select(layer, head)

    # -- data -------------------------------------------------------------------------------------

    def _sentence_choices(self) -> list:
        """Bank texts that have rows in the reservoir, first-seen order (at most 50)."""
        if not self.bank.texts:
            return []
        seen = list(dict.fromkeys(int(t) for t in self.bank.text_index if t >= 0))
        return seen[:50]

    def grid_values(self, metric: str | None = None) -> np.ndarray:
        """The [layers, heads] values the heatmap shows."""
        return np.asarray(getattr(self.summary, metric or self.metric), dtype=np.float64)

    def split(self) -> tuple:
        """(broad heads, focused heads) as lists of (layer, head)."""
        b = self.summary.broad
        broad = [(l, h) for l, h in self.bank.heads() if b[l, h]]
        focused = [(l, h) for l, h in self.bank.heads() if not b[l, h]]
        return broad, focused

    # -- controls ---------------------------------------------------------------------------------

    def select(self, layer: int, head: int) -> None:
        rows = self.bank[layer, head]  # validates the indices
        self.layer, self.head = int(layer), int(head)
        self._sync_controls()
        centres, counts = centered_histogram(rows)
        prof = rank_profile(rows)
        self.histogram, self.profile = (centres, counts), prof
        with self.grid_fig.batch_update():
            self.grid_fig.data[1].x, self.grid_fig.data[1].y = [self.head], [self.layer]
        with self.hist_fig.batch_update():
            self.hist_fig.data[0].x, self.hist_fig.data[0].y = centres, counts
            self.hist_fig.layout.title.text = f"L{self.layer} H{self.head}: max-centered logits ({len(rows)} rows)"
        with self.rank_fig.batch_update():
            self.rank_fig.data[0].x, self.rank_fig.data[0].y = prof.ranks, prof.p90
            self.rank_fig.data[1].x, self.rank_fig.data[1].y = prof.ranks, prof.p10
            self.rank_fig.data[2].x, self.rank_fig.data[2].y = prof.ranks, prof.mean
            self.rank_fig.layout.title.text = f"L{self.layer} H{self.head}: softmax probability by key rank"
        self._show_split()
        self._show_sentence()

    def set_metric(self, metric: str) -> None:
        if metric not in METRICS:
            raise InputError(f"metric must be one of {list(METRICS)}, got {metric!r}")
        self.metric = metric
        self._sync_controls()
        z = self.grid_values()
        with self.grid_fig.batch_update():
            self.grid_fig.data[0].z = z
            self.grid_fig.data[0].colorbar.title.text = metric
            self.grid_fig.layout.title.text = f"{self.bank.model_name}: {METRICS[metric]} per head (click a cell)"

    def set_sentence(self, index: int) -> None:
        if not self._sentences:
            raise InputError("the bank holds no texts to show")
        if not 0 <= index < len(self._sentences):
            raise IndexError(f"sentence {index} outside 0..{len(self._sentences) - 1}")
        self.sentence = int(index)
        self.query = 0
        self._sync_controls()
        self._show_sentence()

    def set_query(self, query: int) -> None:
        self.query = int(query)
        self._sync_controls()
        self._show_sentence()

    # -- widgets ----------------------------------------------------------------------------------

    def _build_widgets(self):
        import ipywidgets as W
        import plotly.graph_objects as go

        L, H = self.bank.n_layers, self.bank.n_heads
        b = self.summary.broad
        text = [["broad" if b[l, h] else "focused" for h in range(H)] for l in range(L)]
        self.grid_fig = go.FigureWidget(
            data=[go.Heatmap(z=np.zeros((L, H)), x=list(range(H)), y=list(range(L)), colorscale="Viridis",
                             text=text, colorbar=dict(title=dict(text="")),
                             hovertemplate="layer %{y} head %{x}: %{z:.3f} (%{text})<extra></extra>"),
                  go.Scatter(name="selected", x=[0], y=[0], mode="markers",
                             marker=dict(symbol="square-open", size=22, color="red", line=dict(width=3)))],
            layout=go.Layout(xaxis=dict(title="head", dtick=1), yaxis=dict(title="layer", dtick=1, autorange="reversed"),
                             height=340, width=560, showlegend=False, margin=dict(l=50, r=20, t=50, b=40)),
        )
        self.grid_fig.data[0].on_click(self._on_grid_click)
        self.hist_fig = go.FigureWidget(
            data=[go.Bar(name="max-centered logits", x=[], y=[], marker_color="#1f77b4")],
            layout=go.Layout(xaxis_title="logit - row max", yaxis_title="keys", bargap=0, height=300, width=460,
                             margin=dict(l=50, r=20, t=50, b=40)),
        )
        self.rank_fig = go.FigureWidget(
            data=[go.Scatter(name="p90", x=[], y=[], mode="lines", line=dict(width=0), showlegend=False),
                  go.Scatter(name="p10-p90", x=[], y=[], mode="lines", line=dict(width=0), fill="tonexty",
                             fillcolor="rgba(31,119,180,0.25)"),
                  go.Scatter(name="mean", x=[], y=[], mode="lines+markers", line=dict(color="#1f77b4"))],
            # below 1e-6 nothing matters for int8 outputs; the axis stops there so the top ranks stay readable
            layout=go.Layout(xaxis_title="key rank", yaxis=dict(title="softmax probability", type="log", range=[-6, 0.05]),
                             height=300,
                             width=560, margin=dict(l=50, r=20, t=50, b=40)),
        )
        self.metric_dropdown = W.Dropdown(options=[(v, k) for k, v in METRICS.items()], value=self.metric,
                                          description="colour by")
        self.layer_dropdown = W.Dropdown(options=list(range(L)), value=0, description="layer")
        self.head_dropdown = W.Dropdown(options=list(range(H)), value=0, description="head")
        self.split_html = W.HTML()
        self.sentence_slider = W.IntSlider(value=0, min=0, max=max(len(self._sentences) - 1, 0), description="sentence")
        self.query_slider = W.IntSlider(value=0, min=0, max=1, description="query token")
        self.sentence_html = W.HTML()
        self.sentence_html.add_class(SENTENCE_CLASS)

        def on(w, fn):
            w.observe(lambda c: None if self._suspend else fn(c["new"]), names="value")

        on(self.metric_dropdown, self.set_metric)
        on(self.layer_dropdown, lambda v: self.select(v, self.head))
        on(self.head_dropdown, lambda v: self.select(self.layer, v))
        on(self.sentence_slider, self.set_sentence)
        on(self.query_slider, self.set_query)
        self.widget = W.VBox([
            W.HBox([self.metric_dropdown, self.layer_dropdown, self.head_dropdown]),
            W.HBox([self.grid_fig, self.split_html]),
            W.HBox([self.hist_fig, self.rank_fig]),
            W.HBox([self.sentence_slider, self.query_slider]),
            self.sentence_html,
        ])

    def _on_grid_click(self, trace, points, selector):
        if points.point_inds:
            self.select(int(points.ys[0]), int(points.xs[0]))

    def _sync_controls(self):
        self._suspend = True
        try:
            self.metric_dropdown.value = self.metric
            self.layer_dropdown.value = self.layer
            self.head_dropdown.value = self.head
            if self._sentences:
                self.sentence_slider.value = self.sentence
        finally:
            self._suspend = False

    def _show_split(self):
        broad, focused = self.split()
        s = self.summary
        l, h = self.layer, self.head
        kind = "broad" if s.broad[l, h] else "focused"
        per_layer = "".join(
            f"<tr><td style='padding:0 10px'>layer {k}</td><td style='padding:0 10px'>{int(s.broad[k].sum())}</td>"
            f"<td style='padding:0 10px'>{int((~s.broad[k]).sum())}</td></tr>"
            for k in range(self.bank.n_layers))
        self.split_html.value = (
            f"<div><b>broad</b> {len(broad)} heads, <b>focused</b> {len(focused)} heads "
            f"(broad: mean normalised entropy >= {BROAD_THRESHOLD})<br>"
            f"L{l} H{h} is <b>{kind}</b>: normalised entropy {s.norm_entropy[l, h]:.3f}, logit std {s.std[l, h]:.3f}, "
            f"p99 distance {s.p99[l, h]:.2f}, suggested scale {s.scale[l, h]:.4f}"
            f"<table><tr><th></th><th>broad</th><th>focused</th></tr>{per_layer}</table></div>")

    def _show_sentence(self):
        if self.loaded is None or not self._sentences:
            why = "pass loaded=... to see a sentence" if self.loaded is None else "the bank holds no texts"
            self.sentence_html.value = f"<i>{why}</i>"
            return
        t = self._sentences[self.sentence]
        key = (t, self.layer, self.head)
        if key not in self._attn_cache:
            self._attn_cache[key] = attention_for_text(self.loaded, self.bank.texts[t], self.layer, self.head,
                                                       max_len=self.max_len)
        ta = self._attn_cache[key]
        self.sentence_attention = ta
        n = len(ta.tokens)
        self.query = min(max(self.query, 0), n - 1)
        self._suspend = True
        try:
            self.query_slider.max = n - 1
            self.query_slider.value = self.query
        finally:
            self._suspend = False
        self.token_weights = ta.probs[self.query]
        self.sentence_html.value = (
            f"<div><b>L{self.layer} H{self.head}</b>, attention from query token {self.query} "
            f"(<code>{html.escape(ta.tokens[self.query])}</code>, red border) over the tokens:<br>"
            f"{token_html(ta.tokens, self.token_weights, self.query)}</div>")

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
