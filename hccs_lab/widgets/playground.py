"""The clip / slope playground: drag B, S, D (and the int8 scale) for one head and watch KL and ranks move.

All the work of a slider move happens in `ClipSlopePlayground.update()`, plain Python that tests call
without a browser. The metrics come from `BinnedRows` (exact, a few ms for 256 rows x 128 keys);
figures are plotly FigureWidgets changed in place inside `batch_update()`.

An invalid (B, S, D) (a broken integer constraint, e.g. B - S*D < 0) is never clamped: the readout
says "invalid" and lists every violated constraint, the probability plot and the metrics keep the
last valid state, and the marker on the KL map turns into a red cross at the requested (S, D).
"""
from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass, field

import numpy as np

from ..core.metrics import topk_overlap
from ..core import HCCSParams, choose_scale, max_base
from ..core.params import VARIANTS, full_scale, split_variant
from .binned import BinnedRows
from ..errors import InputError

def typed_array(a: np.ndarray) -> dict:
    """A float64 array as plotly.js' typed-array spec (dtype, base64 data, shape)."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    spec = {"dtype": "f8", "bdata": base64.b64encode(a.tobytes()).decode("ascii")}
    if a.ndim > 1:
        spec["shape"] = ", ".join(str(k) for k in a.shape)
    return spec


def from_typed_array(spec) -> np.ndarray:
    """The inverse of `typed_array` (what a test reads back from a figure)."""
    a = np.frombuffer(base64.b64decode(spec["bdata"]), dtype=np.float64)
    shape = tuple(int(k) for k in spec["shape"].split(",")) if "shape" in spec else a.shape
    return a.reshape(shape)


READOUT_CLASS = "hccs-kl-readout"
PLOT_CLASS = "hccs-playground-plot"
MAP_CLASS = "hccs-kl-map"
INT_CLASS = "hccs-int-output"
SHOW_INTS = 32  # integer outputs listed for the shown row


@dataclass
class PlaygroundState:
    """What the playground shows after an update (the last valid metrics when `valid` is False)."""

    params: tuple  # requested (B, S, D)
    variant: str
    scale: float
    valid: bool
    violations: list
    kl_mean: float = float("nan")
    kl_p95: float = float("nan")
    kendall_tau: float = float("nan")
    top1: float = float("nan")
    top5: float = float("nan")
    out_sum: float = float("nan")  # mean over rows of the output's sum, as a fraction of full scale
    row: int = 0
    ranks: np.ndarray = field(default_factory=lambda: np.zeros(0))
    softmax_sorted: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hccs_sorted: np.ndarray = field(default_factory=lambda: np.zeros(0))
    int_sorted: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    shown_params: tuple | None = None  # the (B, S, D) the plots and metrics belong to
    elapsed_ms: float = 0.0


def _nonempty(head_rows, max_rows: int, seed: int):
    keep = np.nonzero(head_rows.valid_len > 0)[0]
    if keep.size == 0:
        raise InputError("this head has no rows with a valid key; capture more text")
    rows = head_rows.take(keep)
    return rows.sample(max_rows, seed=seed) if len(rows) > max_rows else rows


class ClipSlopePlayground:
    """Sliders for base B, slope S, clip D and the int8 scale of one head; live KL, ranks and a KL map.

    `head_rows`: a `HeadRows` (e.g. `bank[layer, head]`); at most `max_rows` of its rows are used.
    `params`: starting (B, S, D) (HCCSParams or a triple); by default the lowest mean KL of the
    i16+div map at the largest valid B. `scale`: int8 step; by default `choose_scale` of the rows.
    """

    def __init__(self, head_rows, params=None, scale=None, variant: str = "i16-div", max_rows: int = 256,
                 seed: int = 0, title: str = ""):
        split_variant(variant)
        self.rows = _nonempty(head_rows, max_rows, seed)
        self.n = self.rows.n
        self.title = title
        self.scale = float(scale) if scale is not None else float(choose_scale(self.rows.logits, mask=self.rows.mask))
        self.variant = variant
        self.row = 0
        self._binned = BinnedRows(self.rows.logits, self.rows.mask, self.scale)
        self._map_B = None
        self._map = None
        self._map_shown = None
        self.map_z = None  # log10 of the shown KL map, [D, S] as the heatmap draws it
        if params is None:
            params = self.best_on_map(max_base(self.n))
        B, S, D = params.as_dict().values() if isinstance(params, HCCSParams) else params
        self.params = (int(B), int(S), int(D))
        self.state: PlaygroundState | None = None
        self._suspend = False
        self._build_widgets()
        self.update()

    # -- pure computations ------------------------------------------------------------------------

    def kl_map(self, B: int | None = None) -> np.ndarray:
        """Mean KL (i16+div) over (S, D) for base B (default: the current one), [S, D], NaN where invalid."""
        B = self.params[0] if B is None else int(B)
        if self._map_B != (B, self.scale):
            self._map = self._binned.kl_map(B)
            self._map_B = (B, self.scale)
        return self._map

    def best_on_map(self, B: int) -> HCCSParams:
        m = self.kl_map(B)
        if not np.isfinite(m).any():
            raise InputError(f"no valid (S, D) for B={B} at n={self.n}")
        S, D = np.unravel_index(np.nanargmin(m), m.shape)
        return HCCSParams(int(B), int(S), int(D))

    def compute(self) -> PlaygroundState:
        """The metrics and plot data for the current settings, without touching any widget."""
        t0 = time.perf_counter()
        B, S, D = self.params
        try:
            hp = HCCSParams(B, S, D)
            bad = hp.violations(self.n)
        except TypeError as e:
            hp, bad = None, [str(e)]
        st = PlaygroundState(params=self.params, variant=self.variant, scale=self.scale, valid=not bad,
                             violations=bad, row=self.row)
        if bad:
            if self.state is not None:  # keep the last valid numbers and curves, say they are stale
                prev = self.state
                for f in ("kl_mean", "kl_p95", "kendall_tau", "top1", "top5", "out_sum", "ranks", "softmax_sorted",
                          "hccs_sorted", "int_sorted", "shown_params", "row"):
                    setattr(st, f, getattr(prev, f))
            st.elapsed_ms = (time.perf_counter() - t0) * 1e3
            return st
        br = self._binned
        pm = br.point(hp, self.variant)
        q = br.key_probs(pm)
        st.kl_mean, st.kl_p95, st.kendall_tau = pm.kl_mean, pm.kl_p95, pm.tau_mean
        st.out_sum = float((pm.prob_bins * br.counts).sum(1).mean())
        st.top1 = float(topk_overlap(br.p, q, 1, br.mask).mean())
        st.top5 = float(topk_overlap(br.p, q, 5, br.mask).mean())
        r = self.row
        ints, probs = br.key_output(pm, r)
        valid = np.nonzero(br.mask[r])[0]
        order = valid[np.argsort(-br.p[r, valid], kind="stable")]
        st.ranks = np.arange(1, order.size + 1)
        st.softmax_sorted = br.p[r, order]
        st.hccs_sorted = probs[order]
        st.int_sorted = ints[order]
        st.shown_params = self.params
        st.elapsed_ms = (time.perf_counter() - t0) * 1e3
        return st

    # -- setters (what the sliders call) ----------------------------------------------------------

    def set_params(self, B=None, S=None, D=None) -> PlaygroundState:
        B0, S0, D0 = self.params
        self.params = (B0 if B is None else B, S0 if S is None else S, D0 if D is None else D)
        self._sync_controls()
        return self.update()

    def set_scale(self, scale: float) -> PlaygroundState:
        scale = float(scale)
        if not np.isfinite(scale) or scale <= 0:
            raise InputError(f"scale must be finite and > 0, got {scale}")
        self.scale = scale
        self._binned = BinnedRows(self.rows.logits, self.rows.mask, scale)
        self._sync_controls()
        return self.update()

    def set_variant(self, variant: str) -> PlaygroundState:
        split_variant(variant)
        self.variant = variant
        self._sync_controls()
        return self.update()

    def set_row(self, row: int) -> PlaygroundState:
        if not 0 <= int(row) < len(self.rows):
            raise IndexError(f"row {row} outside 0..{len(self.rows) - 1}")
        self.row = int(row)
        self._sync_controls()
        return self.update()

    # -- widgets ----------------------------------------------------------------------------------

    def _build_widgets(self):
        import ipywidgets as W
        import plotly.graph_objects as go

        B, S, D = self.params
        b_top = max(max_base(self.n) * 2, B)  # past n*B <= 32767 on purpose: that constraint is shown, not hidden
        self.d_slider = W.IntSlider(value=D, min=0, max=127, description="clip D", continuous_update=True)
        self.s_slider = W.IntSlider(value=S, min=0, max=127, description="slope S", continuous_update=True)
        self.b_slider = W.IntSlider(value=B, min=1, max=min(b_top, 32767), description="base B", continuous_update=True)
        self.scale_slider = W.FloatSlider(value=self.scale, min=self.scale / 4, max=self.scale * 4, step=self.scale / 200,
                                          description="scale", readout_format=".4f", continuous_update=False)
        self.variant_dropdown = W.Dropdown(options=list(VARIANTS), value=self.variant, description="variant")
        self.row_slider = W.IntSlider(value=0, min=0, max=len(self.rows) - 1, description="sample row")
        self.readout = W.HTML()
        self.readout.add_class(READOUT_CLASS)
        self.int_output = W.HTML()
        self.int_output.add_class(INT_CLASS)

        self.prob_fig = go.FigureWidget(
            data=[go.Scatter(name="softmax", mode="lines+markers", x=[], y=[]),
                  go.Scatter(name="HCCS", mode="lines+markers", x=[], y=[], customdata=[],
                             hovertemplate="rank %{x}: %{y:.4f} (int %{customdata})<extra>HCCS</extra>")],
            layout=go.Layout(title="softmax vs HCCS, keys sorted by softmax rank", xaxis_title="key rank",
                             yaxis_title="probability", height=360, width=560, margin=dict(l=50, r=20, t=50, b=40)),
        )
        self.prob_fig.add_class(PLOT_CLASS)
        self.map_fig = go.FigureWidget(
            data=[go.Heatmap(name="log10 mean KL", z=[[0]], x=list(range(128)), y=list(range(128)),
                             colorscale="Viridis", colorbar=dict(title=dict(text="log10<br>KL"), thickness=14),
                             hovertemplate="S=%{x} D=%{y}: log10 KL %{z:.2f}<extra></extra>"),
                  go.Scatter(name="current", x=[S], y=[D], mode="markers",
                             marker=dict(symbol="circle-open", size=14, color="white", line=dict(width=3))),
                  go.Scatter(name="best on map", x=[], y=[], mode="markers",
                             marker=dict(symbol="star", size=12, color="orange"))],
            layout=go.Layout(title="mean KL over (S, D), i16+div", xaxis_title="slope S", yaxis_title="clip D",
                             height=360, width=480, showlegend=False, margin=dict(l=50, r=10, t=50, b=40)),
        )
        self.map_fig.add_class(MAP_CLASS)

        def on(slider, fn):
            slider.observe(lambda change: None if self._suspend else fn(change["new"]), names="value")

        on(self.d_slider, lambda v: self.set_params(D=v))
        on(self.s_slider, lambda v: self.set_params(S=v))
        on(self.b_slider, lambda v: self.set_params(B=v))
        on(self.scale_slider, self.set_scale)
        on(self.variant_dropdown, self.set_variant)
        on(self.row_slider, self.set_row)
        controls = W.VBox([self.b_slider, self.s_slider, self.d_slider, self.scale_slider, self.variant_dropdown,
                           self.row_slider])
        self.widget = W.VBox([
            W.HBox([controls, self.readout]),
            W.HBox([self.prob_fig, self.map_fig]),
            self.int_output,
        ])

    def _sync_controls(self):
        """Move the controls to the state set from code, without firing their handlers."""
        self._suspend = True
        try:
            B, S, D = self.params
            for slider, v in ((self.b_slider, B), (self.s_slider, S), (self.d_slider, D)):
                if isinstance(v, (int, np.integer)) and slider.min <= v <= slider.max and slider.value != v:
                    slider.value = int(v)
            if self.scale_slider.value != self.scale and self.scale_slider.min <= self.scale <= self.scale_slider.max:
                self.scale_slider.value = self.scale
            if self.variant_dropdown.value != self.variant:
                self.variant_dropdown.value = self.variant
            if self.row_slider.value != self.row:
                self.row_slider.value = self.row
        finally:
            self._suspend = False

    def update(self) -> PlaygroundState:
        """Recompute for the current settings and update every figure and readout in place."""
        t0 = time.perf_counter()
        st = self.compute()
        B, S, D = self.params
        if st.valid:
            m = self.kl_map(B)
            with self.prob_fig.batch_update():
                self.prob_fig.data[0].x = st.ranks
                self.prob_fig.data[0].y = st.softmax_sorted
                self.prob_fig.data[1].x = st.ranks
                self.prob_fig.data[1].y = st.hccs_sorted
                self.prob_fig.data[1].customdata = st.int_sorted
                self.prob_fig.layout.title.text = (
                    f"{self.title + ': ' if self.title else ''}row {self.row}, B={B} S={S} D={D}, {self.variant}")
            with self.map_fig.batch_update():
                if self._map_shown != (B, self.scale):  # the heatmap is only resent when B or the scale moved
                    with np.errstate(divide="ignore"):
                        self.map_z = np.ascontiguousarray(np.log10(m.T))
                    # as a plotly.js typed-array spec: one base64 string instead of 16k list items to walk
                    self.map_fig.data[0].z = typed_array(self.map_z)
                    # colour the two decades above the best point: that is where the choice is made
                    lo = float(np.nanmin(self.map_z[np.isfinite(self.map_z)])) if np.isfinite(self.map_z).any() else 0.0
                    self.map_fig.data[0].zmin, self.map_fig.data[0].zmax = lo, lo + 2.0
                    self._map_shown = (B, self.scale)
                    bS, bD = np.unravel_index(np.nanargmin(m), m.shape)
                    self.map_fig.data[2].x, self.map_fig.data[2].y = [int(bS)], [int(bD)]
                    self.map_fig.layout.title.text = f"mean KL over (S, D), i16+div, B={B}"
                self.map_fig.data[1].x, self.map_fig.data[1].y = [S], [D]
                self.map_fig.data[1].marker.symbol = "circle-open"
                self.map_fig.data[1].marker.color = "white"
        else:
            with self.map_fig.batch_update():
                if isinstance(S, (int, np.integer)) and isinstance(D, (int, np.integer)):
                    self.map_fig.data[1].x, self.map_fig.data[1].y = [S], [D]
                self.map_fig.data[1].marker.symbol = "x"
                self.map_fig.data[1].marker.color = "red"
        self.readout.value = self._readout_html(st)
        self.int_output.value = self._ints_html(st)
        st.elapsed_ms = (time.perf_counter() - t0) * 1e3
        self.state = st
        return st

    def _readout_html(self, st: PlaygroundState) -> str:
        B, S, D = st.params
        head = f"B={B}, S={S}, D={D}, n={self.n}, scale={st.scale:.4g}, {st.variant}"
        if st.valid:
            status = f'<b style="color:#1a7f37">valid</b> ({html.escape(head)})'
        else:
            items = "".join(f"<li>{html.escape(v)}</li>" for v in st.violations)
            shown = "" if st.shown_params is None else f"; numbers below are for the last valid B,S,D = {st.shown_params}"
            status = (f'<b style="color:#cf222e">invalid</b> ({html.escape(head)}): nothing clamped{html.escape(shown)}'
                      f"<ul>{items}</ul>")
        rows = [("mean KL", st.kl_mean, ".5f"), ("p95 KL", st.kl_p95, ".5f"), ("Kendall tau", st.kendall_tau, ".4f"),
                ("top-1 agreement", st.top1, ".3f"), ("top-5 overlap", st.top5, ".3f"),
                ("output sum / full scale", st.out_sum, ".4f")]
        cells = "".join(f"<tr><td>{k}</td><td style='text-align:right'><code>{v:{fmt}}</code></td></tr>" for k, v, fmt in rows)
        note = ("<br><small>KL &lt; 0: the output sums to more than one (clb overshoot), so KL is not a distance "
                "here; compare Kendall tau and the sum</small>" if st.kl_mean < 0 else "")
        return (f"<div>{status}<table>{cells}</table>{note}"
                f"<small>{len(self.rows)} rows; KL(softmax || HCCS output read as probability), "
                f"top-k ties broken at random (expected overlap); update {st.elapsed_ms:.1f} ms</small></div>")

    def _ints_html(self, st: PlaygroundState) -> str:
        if st.shown_params is None:
            return "<i>no valid parameters yet</i>"
        ints = st.int_sorted[:SHOW_INTS]
        more = "" if st.int_sorted.size <= SHOW_INTS else f" ... ({st.int_sorted.size} keys)"
        return (f"<div><b>{html.escape(st.variant)} integer output</b>, row {st.row}, keys in softmax-rank order "
                f"(sum {int(st.int_sorted.sum())}, full scale {full_scale(st.variant)}):<br>"
                f"<code>{' '.join(str(int(v)) for v in ints)}{more}</code></div>")

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
