"""The five-minute introduction: softmax next to HCCS on one attention row, with clip/slope/base sliders.

The row comes from the real model (`hccs_lab.capture.example_row`: all-MiniLM-L6-v2's own eager
attention). Everything the sliders do goes through `StartHere.evaluate`, a pure function
of (B, S, D), so tests and exercises reach the same numbers the figure shows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.metrics import kendall_tau, kl
from ..core import HCCSParams, choose_scale, hccs_int, max_base, quantize_logits, softmax
from ..capture import ExampleRow
from ..errors import InputError

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
        """A deliberately imperfect start (the clipped keys keep a quarter of the base) to drag from."""
        D = 64
        B = min(max_base(self.n), 1536)
        S = min(16, B // D)
        return HCCSParams(B=B, S=S, D=D)

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
        if not ev.valid:
            return (f"<b>B={p.B} S={p.S} D={p.D} is not valid for n={self.n}</b>: "
                    + "; ".join(ev.problems) + " &mdash; the plot keeps the last valid curve.")
        return (f"B={p.B} S={p.S} D={p.D} &nbsp; KL(softmax&#8214;HCCS) = <b>{ev.kl:.4f}</b> nats"
                f" &nbsp; Kendall &tau; = {ev.tau:.3f} &nbsp; (int8 step = {self.scale:.4f} logit units)")

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
        fig = go.FigureWidget(
            data=[
                go.Scatter(x=labels, y=ev.softmax, name="softmax", mode="lines+markers"),
                go.Scatter(x=labels, y=ev.hccs if ev.valid else np.zeros(self.n), name="HCCS",
                           mode="lines+markers"),
            ],
            layout=go.Layout(
                title="one attention row: softmax vs HCCS (i16+div)",
                xaxis_title="key token", yaxis_title="probability", height=380,
                margin=dict(l=50, r=20, t=50, b=90), legend=dict(orientation="h", y=1.02, x=0.6),
            ),
        )
        fig.add_class("hccs-start-plot")
        Bmax = max_base(self.n)
        self.sliders = {
            "D": W.IntSlider(value=self.params.D, min=0, max=127, description="clip D", continuous_update=True),
            "S": W.IntSlider(value=self.params.S, min=0, max=127, description="slope S", continuous_update=True),
            "B": W.IntSlider(value=self.params.B, min=1, max=Bmax, description="base B", continuous_update=True),
        }
        self.readout = W.HTML(self.readout_html(ev))
        self.readout.add_class("hccs-start-readout")
        for s in self.sliders.values():
            s.observe(self._on_slider, names="value")
        self._figure = fig
        self._widget = W.VBox([W.HBox(list(self.sliders.values())), self.readout, fig])

    def set_params(self, B: int, S: int, D: int) -> Evaluation:
        """What a slider move does, callable directly (tests, exercises)."""
        ev = self.evaluate(B, S, D)
        self.params = ev.params
        if self._figure is not None:
            self._syncing = True  # moving the sliders to match must not re-enter this method
            try:
                for key, value in (("B", ev.params.B), ("S", ev.params.S), ("D", ev.params.D)):
                    self.sliders[key].value = value
            finally:
                self._syncing = False
            self.readout.value = self.readout_html(ev)
            if ev.valid:
                with self._figure.batch_update():
                    self._figure.data[1].y = ev.hccs
        return ev

    def _on_slider(self, _change):
        if self._syncing:
            return
        s = self.sliders
        self.set_params(s["B"].value, s["S"].value, s["D"].value)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
