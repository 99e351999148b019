"""The head explorer: every head of a captured bank at a glance, then one head and one sentence in detail.

`HeadExplorer(bank, loaded=None)` shows

* a layers x heads heatmap coloured by a summary statistic (click a cell, or use the dropdowns);
* the selected head's histogram of max-centered logits and its softmax probability by key rank
  (mean over rows with a p10-p90 band, on a log axis labelled in powers of ten);
* the broad / focused split of the whole model;
* with the model passed as `loaded`: one sentence (from the bank, or typed into the box) as a query x
  key attention matrix of the selected head (click a row to pick the query; a causal head's matrix
  is a lower triangle), the sentence's tokens shaded by the attention of the chosen query (click a
  token to make it the query), and the attention patterns of every head of the layer (click one
  to select that head).

Each control calls a plain method (`select`, `set_metric`, `set_sentence`, `set_text`,
`set_query`), so tests drive the explorer without a browser. `on_select(model, layer, head)` is
called when a person picks a head (e.g. `hccs_lab.session.remember_head`, so 02-04 start there).
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from ..capture import BROAD_THRESHOLD, HeadRows, LogitBank, attention_for_text
from ..errors import InputError, InputTypeError
from . import attention_views as AV
from .figures import BASE_LAYOUT, BLUE, SEQUENTIAL, VERMILLION, Later, live_figure, probability_axis, state_span, theme_html
from .slider import FlowIntSlider

METRICS = {
    "norm_entropy": ("normalised entropy", "softmax entropy / log(valid keys): 1 = uniform"),
    "entropy": ("entropy (nats)", "softmax entropy in nats"),
    "std": ("logit spread", "std of max-centered logits"),
    "p99": ("p99 distance", "99th percentile of the distance below the row max"),
    "scale": ("int8 scale", "suggested int8 step (p99 distance -> 127 steps)"),
}
HIST_BINS = 60
SENTENCE_CLASS = "hccs-sentence"
READOUT_CLASS = "hccs-explorer-readout"
LAYER_DELAY_S = 0.3  # the layer's small multiples wait until the sentence slider pauses


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


def token_html(tokens, weights, query: int, valid=None) -> str:
    """Tokens as spans whose background strength is the attention weight (max weight = full colour);
    keys the query may not attend to (the future of a causal row) are struck through."""
    w = np.asarray(weights, dtype=np.float64)
    ok = np.ones(w.size, bool) if valid is None else np.asarray(valid, bool)
    top = w[ok].max() if ok.any() and w[ok].max() > 0 else 1.0
    r, g, b = (int(BLUE[i:i + 2], 16) for i in (1, 3, 5))
    spans = []
    for i, (tok, wi) in enumerate(zip(tokens, w)):
        alpha = wi / top if ok[i] else 0.0
        border = f"border:2px solid {VERMILLION};" if i == query else "border:2px solid transparent;"
        strike = "" if ok[i] else "text-decoration:line-through;opacity:.5;"
        spans.append(
            f'<span title="{wi:.4f}" data-weight="{wi:.6g}" style="background:rgba({r},{g},{b},{alpha:.3f});'
            f'{border}{strike}padding:1px 3px;margin:1px;border-radius:3px;display:inline-block">{html.escape(tok)}</span>'
        )
    return "".join(spans)


class HeadExplorer:
    """Layers x heads overview plus one head and one sentence in detail (see the module docstring)."""

    def __init__(self, bank: LogitBank, loaded=None, metric: str = "norm_entropy", layer: int = 0, head: int = 0,
                 max_len: int | None = None, on_select=None):
        if not isinstance(bank, LogitBank):
            raise InputTypeError(f"HeadExplorer takes a LogitBank, got {type(bank).__name__}")
        if metric not in METRICS:
            raise InputError(f"metric must be one of {list(METRICS)}, got {metric!r}")
        if loaded is not None and (loaded.n_layers, loaded.n_heads) != (bank.n_layers, bank.n_heads):
            raise InputError(
                f"the model ({loaded.n_layers}x{loaded.n_heads}) does not match the bank ({bank.n_layers}x{bank.n_heads})")
        self.bank, self.loaded, self.on_select = bank, loaded, on_select
        self.max_len = max_len or bank.seq_len
        self.summary = bank.summary()
        self.metric = metric
        self.layer, self.head = 0, 0
        self.sentence, self.query = 0, 0
        self.own_text: str | None = None  # a sentence typed into the box, shown instead of the bank's
        self.sentence_attention = None  # TextAttention of the shown sentence and head
        self.token_weights = np.zeros(0)
        self._attn_cache: dict = {}
        self._sentences = self._sentence_choices()
        self._suspend = False
        self._build_widgets()
        self._layer_later = Later(self._show_layer, LAYER_DELAY_S)
        self.set_metric(metric)
        self.select(layer, head, notify=False)

    # -- data -------------------------------------------------------------------------------------

    def _sentence_choices(self) -> list:
        """Bank texts that have rows in the reservoir, first-seen order (at most 50)."""
        if not self.bank.texts:
            return []
        seen = list(dict.fromkeys(int(t) for t in self.bank.text_index if t >= 0))
        return seen[:50]

    @property
    def text(self) -> str | None:
        """The sentence the detail views show."""
        if self.own_text is not None:
            return self.own_text
        return self.bank.texts[self._sentences[self.sentence]] if self._sentences else None

    def grid_values(self, metric: str | None = None) -> np.ndarray:
        """The [layers, heads] values the heatmap shows."""
        return np.asarray(getattr(self.summary, metric or self.metric), dtype=np.float64)

    def split(self) -> tuple:
        """(broad heads, focused heads) as lists of (layer, head)."""
        b = self.summary.broad
        broad = [(l, h) for l, h in self.bank.heads() if b[l, h]]
        focused = [(l, h) for l, h in self.bank.heads() if not b[l, h]]
        return broad, focused

    def attention(self, head: int | None = None):
        """TextAttention of the shown sentence for `head` (default: the selected one), cached."""
        head = self.head if head is None else head
        key = (self.text, self.layer, head)
        if key not in self._attn_cache:
            self._attn_cache[key] = attention_for_text(self.loaded, self.text, self.layer, head, max_len=self.max_len)
        return self._attn_cache[key]

    def state_record(self) -> dict:
        return {"sentence": self.sentence, "layer": self.layer, "head": self.head, "query": self.query,
                "own text": self.own_text is not None}

    # -- controls ---------------------------------------------------------------------------------

    def select(self, layer: int, head: int, notify: bool = True) -> None:
        rows = self.bank[layer, head]  # validates the indices
        layer_changed = int(layer) != self.layer
        self.layer, self.head = int(layer), int(head)
        self._sync_controls()
        centres, counts = centered_histogram(rows)
        prof = rank_profile(rows)
        self.histogram, self.profile = (centres, counts), prof
        with self.grid_fig.batch_update():
            box = self.grid_fig.layout.shapes[0]
            box.x0, box.x1, box.y0, box.y1 = self.head - 0.5, self.head + 0.5, self.layer - 0.5, self.layer + 0.5
        with self.hist_fig.batch_update():
            self.hist_fig.data[0].x, self.hist_fig.data[0].y = centres.tolist(), counts.tolist()
            self.hist_fig.layout.title.text = f"L{self.layer} H{self.head}: max-centered logits ({len(rows)} rows)"
        with self.rank_fig.batch_update():
            self.rank_fig.data[0].x, self.rank_fig.data[0].y = prof.ranks.tolist(), prof.p90.tolist()
            self.rank_fig.data[1].x, self.rank_fig.data[1].y = prof.ranks.tolist(), prof.p10.tolist()
            self.rank_fig.data[2].x, self.rank_fig.data[2].y = prof.ranks.tolist(), prof.mean.tolist()
            self.rank_fig.layout.title.text = f"L{self.layer} H{self.head}: softmax probability by key rank"
        self._show_split()
        self._show_sentence(layer_too=layer_changed)
        if notify and self.on_select is not None:
            self.on_select(self.bank.model_name, self.layer, self.head)

    def set_metric(self, metric: str) -> None:
        if metric not in METRICS:
            raise InputError(f"metric must be one of {list(METRICS)}, got {metric!r}")
        self.metric = metric
        self._sync_controls()
        short, long = METRICS[metric]
        with self.grid_fig.batch_update():
            self.grid_fig.data[0].z = self.grid_values().tolist()
            self.grid_fig.data[0].colorbar.title.text = short
            self.grid_fig.layout.title.text = f"{self.bank.model_name}: {short} per head (click a cell)"
            self.grid_fig.layout.xaxis.title.text = f"head  -  colour: {long}"

    def set_sentence(self, index: int) -> None:
        if not self._sentences:
            raise InputError("the bank holds no texts to show")
        if not 0 <= index < len(self._sentences):
            raise IndexError(f"sentence {index} outside 0..{len(self._sentences) - 1}")
        self.sentence, self.own_text, self.query = int(index), None, 0
        self._sync_controls()
        self._show_sentence(layer_too=True)

    def set_text(self, text: str) -> None:
        """Show your own sentence in the detail views (the bank's statistics stay those of the bank)."""
        if self.loaded is None:
            raise InputError("pass loaded=... to the explorer to look at your own sentence")
        if not isinstance(text, str) or not text.strip():
            raise InputError("type a sentence first")
        self.own_text, self.query = text.strip(), 0
        self._show_sentence(layer_too=True)

    def set_query(self, query: int) -> None:
        self.query = int(query)
        self._show_sentence(layer_too=False, query_only=True)

    # -- widgets ----------------------------------------------------------------------------------

    def _build_widgets(self):
        import ipywidgets as W
        import plotly.graph_objects as go

        L, H = self.bank.n_layers, self.bank.n_heads
        b = self.summary.broad
        text = [["broad" if b[l, h] else "focused" for h in range(H)] for l in range(L)]
        self.grid_fig = live_figure(
            data=[go.Heatmap(z=np.zeros((L, H)).tolist(), x=list(range(H)), y=list(range(L)), colorscale=SEQUENTIAL,
                             text=text, colorbar=dict(title=dict(text="", side="right"), thickness=14),
                             hovertemplate="layer %{y} head %{x}: %{z:.3f} (%{text})<extra></extra>")],
            layout=go.Layout(**BASE_LAYOUT, title=dict(text="", font=dict(size=13)),
                             xaxis=dict(title=dict(text="head", font=dict(size=11)), dtick=1),
                             yaxis=dict(title="layer", dtick=1 if L <= 12 else 2, autorange="reversed"),
                             height=max(300, 22 * L + 140), width=max(520, 38 * H + 200), showlegend=False,
                             margin=dict(l=50, r=20, t=50, b=50),
                             shapes=[dict(type="rect", x0=-0.5, x1=0.5, y0=-0.5, y1=0.5,
                                          line=dict(color="white", width=3))]))
        self.grid_fig.data[0].on_click(self._on_grid_click)
        self.hist_fig = live_figure(
            data=[go.Bar(name="max-centered logits", x=[], y=[], marker_color=BLUE)],
            layout=go.Layout(**BASE_LAYOUT, title=dict(text="", font=dict(size=13)), xaxis_title="logit - row max",
                             yaxis=dict(title="keys", exponentformat="none", separatethousands=True), bargap=0,
                             height=300, width=520, margin=dict(l=60, r=20, t=50, b=45)))
        self.rank_fig = live_figure(
            data=[go.Scatter(name="p90", x=[], y=[], mode="lines", line=dict(width=0), showlegend=False),
                  go.Scatter(name="p10-p90", x=[], y=[], mode="lines", line=dict(width=0), fill="tonexty",
                             fillcolor="rgba(0,114,178,0.25)"),
                  go.Scatter(name="mean", x=[], y=[], mode="lines+markers", line=dict(color=BLUE), marker=dict(size=4))],
            # below 1e-6 nothing matters for int8 outputs; the axis stops there so the top ranks stay readable
            layout=go.Layout(**BASE_LAYOUT, title=dict(text="", font=dict(size=13)), xaxis_title="key rank",
                             yaxis=probability_axis("softmax probability", log=True, range=[-6, 0.05]),
                             height=300, width=560, margin=dict(l=70, r=20, t=50, b=45)))
        self.metric_dropdown = W.Dropdown(options=[(v[0], k) for k, v in METRICS.items()], value=self.metric,
                                          description="colour by")
        self.layer_dropdown = W.Dropdown(options=list(range(L)), value=0, description="layer",
                                         layout=W.Layout(width="150px"))
        self.head_dropdown = W.Dropdown(options=list(range(H)), value=0, description="head",
                                        layout=W.Layout(width="150px"))
        self.split_html = W.HTML(layout=W.Layout(min_width="300px"))
        self.split_html.add_class("hccs-panel")
        self.sentence_slider = FlowIntSlider(value=0, min=0, max=max(len(self._sentences) - 1, 1),
                                             description="sentence", description_width="70px",
                                             layout=W.Layout(width="420px"))
        self.text_box = W.Text(placeholder="type your own sentence, then press Enter or 'show'",
                               continuous_update=False, layout=W.Layout(width="520px"))
        self.text_button = W.Button(description="show", layout=W.Layout(width="80px"))
        self.readout = W.HTML(layout=W.Layout(min_height="2.4em"))
        self.readout.add_class(READOUT_CLASS)
        self.readout.add_class("hccs-panel")
        self.sentence_html = W.HTML()
        self.sentence_html.add_class(SENTENCE_CLASS)
        self.matrix_fig = AV.build_matrix_figure(self._on_matrix_click)
        self.strip_fig = AV.build_strip_figure(self._on_strip_click)
        self.layer_fig = AV.build_layer_figure(H, lambda h: self.select(self.layer, h))

        def on(w, fn):
            w.observe(lambda c: None if self._suspend else fn(c["new"]), names="value")

        on(self.metric_dropdown, self.set_metric)
        on(self.layer_dropdown, lambda v: self.select(v, self.head))
        on(self.head_dropdown, lambda v: self.select(self.layer, v))
        on(self.sentence_slider, self.set_sentence)
        self.text_box.observe(lambda _c: self._typed(), names="value")  # Enter or leaving the box
        self.text_button.on_click(lambda _b: self._typed())
        detail = []
        if self.loaded is not None:
            box = W.VBox([W.HBox([self.sentence_slider, self.text_box, self.text_button]), self.readout,
                          W.HBox([self.matrix_fig, self.layer_fig]), self.strip_fig])
            box.add_class("hccs-explorer-detail")
            detail = [box]
        self.widget = W.VBox([
            theme_html(),
            W.HBox([self.metric_dropdown, self.layer_dropdown, self.head_dropdown]),
            W.HBox([self.grid_fig, self.split_html]),
            W.HBox([self.hist_fig, self.rank_fig]),
            *detail, self.sentence_html,
        ])
        self.widget.add_class("hccs-explorer")

    def _typed(self):
        if not self.text_box.value.strip() or self.text_box.value.strip() == self.own_text:
            return
        try:
            self.set_text(self.text_box.value)
        except InputError as e:
            self.readout.value = f"<i>{html.escape(str(e))}</i>"

    def _on_grid_click(self, trace, points, selector):
        if points.point_inds:
            self.select(int(points.ys[0]), int(points.xs[0]))

    def _on_matrix_click(self, trace, points, selector):
        if points.point_inds:
            labels = list(trace.y)
            self.set_query(labels.index(points.ys[0]) if points.ys[0] in labels else int(points.point_inds[0][0]))

    def _on_strip_click(self, trace, points, selector):
        if points.point_inds:
            self.set_query(int(points.point_inds[0]))

    def _sync_controls(self):
        self._suspend = True
        try:
            self.metric_dropdown.value = self.metric
            self.layer_dropdown.value = self.layer
            self.head_dropdown.value = self.head
            if self._sentences and self.sentence_slider.value != self.sentence:
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

    def _show_sentence(self, layer_too: bool, query_only: bool = False):
        if self.loaded is None or self.text is None:
            why = "pass loaded=... to see a sentence" if self.loaded is None else "the bank holds no texts"
            self.sentence_html.value = f"<i>{why}</i>"
            return
        ta = self.attention()
        self.sentence_attention = ta
        n = len(ta.tokens)
        self.query = min(max(self.query, 0), n - 1)
        self.token_weights = np.where(ta.mask[self.query], ta.probs[self.query], 0.0)
        state = self.state_record()
        where = "your sentence" if self.own_text is not None else f"sentence {self.sentence}"
        q_tok = html.escape(ta.tokens[self.query])
        keys = int(ta.mask[self.query].sum())
        causal = " (causal: a query sees itself and the tokens before it)" if getattr(self.loaded, "causal", False) else ""
        self.readout.value = (f"<b>L{self.layer} H{self.head}</b>, {where}: {n} tokens; query {self.query} "
                              f"(<code>{q_tok}</code>) attends over {keys} keys{causal}{state_span(state)}")
        if query_only:
            AV.mark_query(self.matrix_fig, self.query, state)
        else:
            AV.draw_matrix(self.matrix_fig, ta, self.query, f"L{self.layer} H{self.head}: attention, query rows x key "
                                                             f"columns ({where})", state)
        AV.draw_strip(self.strip_fig, ta, self.query, f"attention from query {self.query} ({ta.tokens[self.query]}); "
                                                      "click a token to make it the query")
        self.sentence_html.value = (
            f"<div><b>L{self.layer} H{self.head}</b>, attention from query token {self.query} "
            f"(<code>{q_tok}</code>, orange border) over the tokens:<br>"
            f"{token_html(ta.tokens, self.token_weights, self.query, ta.mask[self.query])}</div>")
        if layer_too or not query_only:
            self._layer_later.request()

    def _show_layer(self):
        """Every head of the layer on the shown sentence (after the sentence slider pauses)."""
        if self.loaded is None or self.text is None:
            return
        heads = [self.attention(h) for h in range(self.bank.n_heads)]
        AV.draw_layer(self.layer_fig, heads, self.head, f"layer {self.layer}: every head on this sentence "
                                                        "(click one to select it)")

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


class ModelPicker:
    """A model dropdown above whatever `build(name)` returns for that model (e.g. a HeadExplorer).

    `build` is the notebook's own function (it loads or reads the model's bank), so widgets still
    never load models themselves. `current` is the widget shown now.
    """

    def __init__(self, models, build, value: str | None = None):
        import ipywidgets as W

        models = list(models)
        if not models:
            raise InputError("ModelPicker needs at least one model name")
        self.build = build
        self.dropdown = W.Dropdown(options=models, value=value if value in models else models[0], description="model")
        self.status = W.HTML()
        self.current = build(self.dropdown.value)
        self.box = W.VBox([self.current.widget])
        self.widget = W.VBox([W.HBox([self.dropdown, self.status]), self.box])
        self.dropdown.observe(lambda c: self.pick(c["new"]), names="value")

    def pick(self, name: str) -> None:
        self.status.value = f"<i>loading {html.escape(name)} (captured once, then cached) ...</i>"
        self.current = self.build(name)
        self.box.children = [self.current.widget]
        self.status.value = ""

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


__all__ = ["HeadExplorer", "ModelPicker", "METRICS", "rank_profile", "centered_histogram", "token_html",
           "SENTENCE_CLASS", "READOUT_CLASS"]
