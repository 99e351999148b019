"""The five-minute introduction: softmax next to HCCS on one attention row, with clip/slope/base sliders.

The row comes from the real model (`hccs_lab.capture.example_row`: all-MiniLM-L6-v2's own eager
attention). Everything the sliders do goes through `StartHere.evaluate`, a pure function
of (B, S, D), so tests and exercises reach the same numbers the figure shows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import json

from ..core.metrics import kendall_tau, kl
from ..core import HCCSParams, choose_scale, hccs_int, max_base, quantize_logits, softmax
from ..capture import ExampleRow
from ..errors import InputError
from .figures import BASE_LAYOUT, BLUE, ORANGE, LatestOnly, live_figure, probability_axis, state_span, theme_html
from .ranges import set_slider, slider_bounds, start_params
from .slider import FlowIntSlider

READOUT_CLASS = "hccs-start-readout"
PLOT_CLASS = "hccs-start-plot"
LABELS = {"B": "base B", "S": "slope S", "D": "clip D"}

@dataclass(frozen=True)
class Evaluation:
    """What the figure shows for one (B, S, D): both distributions and how far apart they are."""

    params: HCCSParams
    valid: bool
    problems: tuple[str, ...]
    softmax: np.ndarray  # float [n]
    hccs: np.ndarray | None  # float [n], i16+div output / 32767; None when the params are invalid
    kl: float | None  # KL(softmax || HCCS) in nats
    tau: float | None  # Kendall tau-b between the two rows


class StartHere:
    """Softmax vs HCCS on one row; `widget` is the sliders + readout + FigureWidget, ready to display."""

    def __init__(self, row: ExampleRow | np.ndarray, params: HCCSParams | None = None, scale: float | None = None):
        if isinstance(row, ExampleRow):
            logits, self.tokens = np.asarray(row.logits, dtype=np.float64), list(row.tokens)
        else:
            logits = np.asarray(row, dtype=np.float64)
            self.tokens = [str(i) for i in range(logits.shape[-1])]
        if logits.ndim != 1 or logits.size < 2:
            raise InputError(f"StartHere takes one row of at least 2 logits, got shape {logits.shape}")
        if not np.all(np.isfinite(logits)):
            raise InputError("StartHere: the row holds NaN or inf logits")
        self.n = logits.size
        self.logits = logits - logits.max()
        # the whole row spans the int8 grid: on one row there is no tail worth clipping
        self.scale = float(scale) if scale is not None else choose_scale(self.logits[None], percentile=None)
        self.x_int8 = quantize_logits(self.logits[None], self.scale)[0]
        self.p_softmax = softmax(self.logits)
        self.params = params if params is not None else self.default_params()
        self._figure = None
        self._widget = None
        self._syncing = False

    def default_params(self) -> HCCSParams:
        """A deliberately imperfect start to drag from (`ranges.start_params`, shared with the playground)."""
        return start_params(self.n)

    def evaluate(self, B: int, S: int, D: int) -> Evaluation:
        """Pure: HCCS (i16+div, as the calibration scores it) against softmax for these parameters."""
        params = HCCSParams(B=int(B), S=int(S), D=int(D))
        problems = tuple(params.violations(self.n))
        if problems:
            return Evaluation(params, False, problems, self.p_softmax, None, None, None)
        q = hccs_int(self.x_int8, params, out="i16", recip="div").astype(np.float64) / 32767.0
        return Evaluation(
            params, True, (), self.p_softmax, q,
            float(kl(self.p_softmax, q)), float(kendall_tau(self.p_softmax, q)),
        )

    def search(self, D_values=range(4, 128, 4), S_values=range(1, 33)) -> Evaluation:
        """Brute force over a coarse (S, D) grid with the largest valid B: the best KL for this row."""
        best = None
        Bmax = max_base(self.n)
        for D in D_values:
            for S in S_values:
                if S * D > Bmax:
                    continue
                ev = self.evaluate(Bmax, S, D)
                if best is None or ev.kl < best.kl:
                    best = ev
        if best is None:
            raise InputError(f"no valid (B, S, D) in the grid for n={self.n}")
        return best

    # ---- the interactive part (plotly FigureWidget + ipywidgets), built on first use ----------

    def readout_html(self, ev: Evaluation) -> str:
        p = ev.params
        state = state_span(self.state_record(p))
        if not ev.valid:
            return (f"<b>B={p.B} S={p.S} D={p.D} is not valid for n={self.n}</b>: "
                    + "; ".join(ev.problems) + " &mdash; the plot keeps the last valid curve." + state)
        return (f"B={p.B} S={p.S} D={p.D} &nbsp; KL(softmax&#8214;HCCS) = <b>{ev.kl:.4f}</b> nats"
                f" &nbsp; Kendall &tau; = {ev.tau:.3f} &nbsp; (int8 step = {self.scale:.4f} logit units){state}")

    @staticmethod
    def state_record(p: HCCSParams) -> dict:
        return {LABELS["B"]: p.B, LABELS["S"]: p.S, LABELS["D"]: p.D}

    @property
    def figure(self):
        if self._figure is None:
            self._build()
        return self._figure

    @property
    def widget(self):
        if self._widget is None:
            self._build()
        return self._widget

    def _build(self):
        import ipywidgets as W
        import plotly.graph_objects as go

        labels = [f"{i}:{t}" for i, t in enumerate(self.tokens)]
        ev = self.evaluate(self.params.B, self.params.S, self.params.D)
        fig = live_figure(
            data=[
                go.Scatter(x=labels, y=ev.softmax.tolist(), name="softmax", mode="lines+markers", line=dict(color=BLUE)),
                go.Scatter(x=labels, y=(ev.hccs if ev.valid else np.zeros(self.n)).tolist(), name="HCCS",
                           mode="lines+markers", line=dict(color=ORANGE), marker=dict(symbol="diamond"),
                           meta=json.dumps(self.state_record(ev.params))),
            ],
            layout=go.Layout(
                **BASE_LAYOUT, title="one attention row: softmax vs HCCS (i16+div)",
                xaxis_title="key token", height=380,
                # a fixed range: a new curve is then drawn without re-laying out the axes
                yaxis=probability_axis(range=[0.0, 1.1 * float(max(ev.softmax.max(), 0 if ev.hccs is None else ev.hccs.max()))]),
                margin=dict(l=60, r=20, t=50, b=90), legend=dict(orientation="h", y=1.02, x=0.6),
            ),
        )
        fig.add_class(PLOT_CLASS)
        self.sliders = {key: FlowIntSlider(value=getattr(self.params, key), min=0, max=1, description=LABELS[key],
                                           description_width="60px", layout=W.Layout(width="320px"))
                        for key in ("D", "S", "B")}
        self.readout = W.HTML(self.readout_html(ev), layout=W.Layout(min_height="2.5em"))
        self.readout.add_class(READOUT_CLASS)
        for s in self.sliders.values():
            s.observe(self._on_slider, names="value")
        self._figure = fig
        self._drawn = ev
        self._redraw = LatestOnly(fig, self._render)
        self._widget = W.VBox([theme_html(), W.HBox(list(self.sliders.values())), self.readout, fig])
        self._sync_sliders(self.params)

    def set_params(self, B: int, S: int, D: int) -> Evaluation:
        """What a slider move does, callable directly (tests, exercises)."""
        ev = self.evaluate(B, S, D)
        self.params = ev.params
        if self._figure is not None:
            self._sync_sliders(ev.params)
            self.readout.value = self.readout_html(ev)
            if ev.valid:
                self._drawn = ev
                self._redraw.request()
        return ev

    def _render(self, fig) -> None:
        """The new HCCS curve alone (plotly.js' cheapest redraw); the whole figure when it outgrows the axis."""
        top = float(self._drawn.hccs.max())
        grow = top > fig.layout.yaxis.range[1]
        with fig.batch_update() if grow else fig.batch_redraw_traces():
            if grow:
                fig.layout.yaxis.range = [0.0, 1.1 * max(top, float(self.p_softmax.max()))]
            fig.data[1].y = np.asarray(self._drawn.hccs, np.float64)
            fig.data[1].meta = json.dumps(self.state_record(self._drawn.params))

    def _sync_sliders(self, p: HCCSParams) -> None:
        """Sliders at `p`, each spanning the values that keep the point valid (moving the sliders must
        not re-enter set_params)."""
        bounds = slider_bounds(p.B, p.S, p.D, self.n)
        self._syncing = True
        try:
            for key, (lo, hi) in (("B", bounds.B), ("S", bounds.S), ("D", bounds.D)):
                set_slider(self.sliders[key], getattr(p, key), lo, hi)
        finally:
            self._syncing = False

    def _on_slider(self, _change):
        if self._syncing:
            return
        s = self.sliders
        self.set_params(s["B"].value, s["S"].value, s["D"].value)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
