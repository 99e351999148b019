"""The playground's controls, readout and figures (the browser side of `ClipSlopePlayground`).

What one slider step costs in the browser decides how the playground feels, so a step sends only
what changed: the readout first (plain HTML, the quickest to show), then the HCCS curve (one
trace's y values), then the KL map's marker, a layout shape that plotly redraws without touching
the heatmap. The heatmap itself is resent only when B, the scale or the head change. Each figure
goes through `LatestOnly`: during a drag the browser always draws the newest state and never a
queue of old ones.
"""
from __future__ import annotations

import base64
import html
import json

import numpy as np

from ..core import VARIANTS, TARGETS
from ..core.params import AIE4ML_MIN_FLOOR_SUM, full_scale
from .figures import (BASE_LAYOUT, BLUE, ORANGE, SEQUENTIAL, LatestOnly, Later, live_figure, log10_colorbar,
                      probability_axis, state_span, theme_html, typed_array)
from .ranges import rule_quantities, set_slider, slider_bounds
from .slider import FlowFloatSlider, FlowIntSlider

READOUT_CLASS = "hccs-kl-readout"
PLOT_CLASS = "hccs-playground-plot"
MAP_CLASS = "hccs-kl-map"
INT_CLASS = "hccs-int-output"
SHOW_INTS = 32  # integer outputs listed for the shown row
LABELS = {"B": "base B", "S": "slope S", "D": "clip D", "scale": "scale", "row": "sample row"}
MARKER_SIZE = 5.0  # the map marker's size, in (S, D) cells
# The marker on the KL map is a layout image: plotly.js moves an image without redrawing the heatmap
# (a shape or a scatter point would replot the whole figure on every step).
_SVG = "data:image/svg+xml;base64,"
RING = _SVG + base64.b64encode(
    b"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 20 20'><circle cx='10' cy='10' r='7.5' fill='none' "
    b"stroke='black' stroke-width='4.5'/><circle cx='10' cy='10' r='7.5' fill='none' stroke='white' "
    b"stroke-width='2'/></svg>").decode()
CROSS = _SVG + base64.b64encode(
    b"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 20 20'><path d='M3,3L17,17M3,17L17,3' stroke='black' "
    b"stroke-width='5'/><path d='M3,3L17,17M3,17L17,3' stroke='white' stroke-width='2.2'/></svg>").decode()
CTRL_WIDTH = "400px"
RANGE_DELAY_S = 0.25


def state_record(pg) -> dict:
    """The shown settings keyed by the controls' labels (what the browser benchmark matches against)."""
    B, S, D = pg.params
    return {LABELS["B"]: B, LABELS["S"]: S, LABELS["D"]: D, LABELS["scale"]: pg.scale, LABELS["row"]: pg.row,
            "variant": pg.variant, "target": pg.target, "layer": pg.layer, "head": pg.head, "model": pg.model}


class PlaygroundView:
    """Builds the widgets of one playground and shows its states."""

    def __init__(self, pg):
        import ipywidgets as W

        self.pg = pg
        self._suspend = False
        self._prob_key = None  # what the softmax trace and the axes were drawn for
        self._map_key = None  # what the heatmap was drawn for
        self._scale_head = None  # the head the scale slider's range was set for
        B, S, D = pg.params
        wide = dict(description_width="78px", layout=W.Layout(width="390px"))
        self.b_slider = FlowIntSlider(value=B, min=1, max=max(B, 1), description=LABELS["B"], **wide)
        self.s_slider = FlowIntSlider(value=S, min=0, max=max(S, 1), description=LABELS["S"], **wide)
        self.d_slider = FlowIntSlider(value=D, min=0, max=max(D, 1), description=LABELS["D"], **wide)
        self.scale_slider = FlowFloatSlider(value=pg.scale, min=pg.scale / 4, max=pg.scale * 4, step=pg.scale / 100,
                                            description=LABELS["scale"], readout_format=".4f", **wide)
        self.row_slider = FlowIntSlider(value=0, min=0, max=max(len(pg.rows) - 1, 1), description=LABELS["row"], **wide)
        half = dict(style={"description_width": "50px"}, layout=W.Layout(width="190px"))
        self.variant_dropdown = W.Dropdown(options=list(VARIANTS), value=pg.variant, description="variant", **half)
        self.target_dropdown = W.Dropdown(options=list(TARGETS), value=pg.target, description="target", **half)
        self.model_dropdown = W.Dropdown(options=pg.source.models or ["-"], value=pg.model or "-",
                                         description="model", **half)
        self.layer_dropdown = W.Dropdown(description="layer", **dict(half, layout=W.Layout(width="125px")))
        self.head_dropdown = W.Dropdown(description="head", **dict(half, layout=W.Layout(width="125px")))
        self._fill_head_options()
        button = dict(layout=W.Layout(width="auto", margin="2px 4px 2px 0"))
        self.snap_button = W.Button(description="snap to calibrated", tooltip="this head's calibrated (B, S, D) and scale", **button)
        self.save_button = W.Button(description="save these parameters", tooltip="write them into your calibration JSON", **button)
        self.kernel_button = W.Button(description="generate kernel", tooltip="the AIE kernel for these parameters", **button)
        self.status = W.HTML(layout=W.Layout(width=CTRL_WIDTH, min_height="2.6em"))
        self.status.add_class("hccs-playground-status")
        self.readout = W.HTML(layout=W.Layout(flex="1 1 auto", min_width="430px", min_height="330px"))
        self.readout.add_class(READOUT_CLASS)
        self.readout.add_class("hccs-panel")
        self.prob_fig = self._build_prob_figure()
        self.map_fig = self._build_map_figure()
        self.prob = LatestOnly(self.prob_fig, self._render_prob)
        self.map = LatestOnly(self.map_fig, self._render_map)
        # narrowing the other sliders' ranges re-renders them (and makes JupyterLab re-measure the
        # page): it waits until the moving slider pauses; a value outside a range is shown at once
        self.ranges = Later(self.sync_ranges, RANGE_DELAY_S)
        self._wire()
        pickers = [self.layer_dropdown, self.head_dropdown]
        if len(pg.source.models) > 1:
            pickers.insert(0, self.model_dropdown)
        rows = ([W.HBox(pickers)] if pg.source.selectable else []) + [
            self.b_slider, self.s_slider, self.d_slider, self.scale_slider,
            W.HBox([self.variant_dropdown, self.target_dropdown]), self.row_slider,
            W.HBox([self.snap_button, self.save_button, self.kernel_button], layout=W.Layout(flex_flow="row wrap")),
            self.status]
        controls = W.VBox(rows, layout=W.Layout(flex="0 0 auto", width=CTRL_WIDTH))
        self.widget = W.VBox([theme_html(), W.HBox([controls, self.readout]),
                              W.HBox([self.prob_fig, self.map_fig])])
        self.widget.add_class("hccs-playground")

    # -- figures ----------------------------------------------------------------------------------

    def _build_prob_figure(self):
        import plotly.graph_objects as go

        fig = live_figure(
            # lines without markers and fixed axis ranges: the cheapest redraw plotly.js has for a new curve
            data=[go.Scatter(name="softmax", mode="lines", x=[], y=[], line=dict(color=BLUE, width=2)),
                  go.Scatter(name="HCCS", mode="lines", x=[], y=[], customdata=[], line=dict(color=ORANGE, width=2.5),
                             hovertemplate="rank %{x}: %{y:.4f} (int %{customdata})<extra>HCCS</extra>")],
            layout=go.Layout(**BASE_LAYOUT, title=dict(text="", font=dict(size=13)), xaxis=dict(title="key rank (by softmax)"),
                             yaxis=probability_axis(), height=370, width=560, legend=dict(x=0.98, xanchor="right", y=0.98),
                             margin=dict(l=60, r=20, t=50, b=45)))
        fig.add_class(PLOT_CLASS)
        return fig

    def _build_map_figure(self):
        import plotly.graph_objects as go

        fig = live_figure(
            data=[go.Heatmap(name="mean KL", z=[[None]], x=list(range(128)), y=list(range(128)), colorscale=SEQUENTIAL,
                             colorbar=log10_colorbar("mean KL", -2, 0),
                             hovertemplate="S=%{x} D=%{y}: log10 mean KL %{z:.2f}<extra></extra>"),
                  go.Scatter(name="best on map", x=[], y=[], mode="markers", hovertemplate="best: S=%{x} D=%{y}<extra></extra>",
                             marker=dict(symbol="star", size=15, color="white", line=dict(color="black", width=1.5))),
                  go.Scatter(name="aie4ml limit", x=[], y=[], mode="lines", hoverinfo="skip",
                             line=dict(color="white", width=1.5, dash="dash"))],
            layout=go.Layout(**BASE_LAYOUT, title=dict(text="", font=dict(size=13)),
                             xaxis=dict(title="slope S", range=[-0.5, 127.5]), yaxis=dict(title="clip D", range=[-0.5, 127.5]),
                             height=370, width=520, showlegend=False, margin=dict(l=55, r=95, t=50, b=45),
                             images=[dict(source=RING, xref="x", yref="y", x=0, y=0, sizex=MARKER_SIZE, sizey=MARKER_SIZE,
                                          xanchor="center", yanchor="middle", layer="above")]))
        fig.add_class(MAP_CLASS)
        return fig

    def _render_prob(self, fig) -> None:
        """A new row or head redraws the figure; a new (B, S, D) only the HCCS trace (plotly.js' cheapest path)."""
        pg, st = self.pg, self.pg.state
        if st.shown_params is None:
            return
        key = (pg.model, pg.layer, pg.head, st.row, id(pg.rows))
        top = float(max(st.softmax_sorted.max(initial=0.0), st.hccs_sorted.max(initial=0.0)))
        shown = dict(state_record(pg), **dict(zip((LABELS["B"], LABELS["S"], LABELS["D"]), st.shown_params)))
        new_frame = self._prob_key != key or top > fig.layout.yaxis.range[1]
        with fig.batch_update() if new_frame else fig.batch_redraw_traces():
            if self._prob_key != key:
                fig.data[0].x, fig.data[0].y = st.ranks.tolist(), st.softmax_sorted.tolist()
                fig.data[1].x = st.ranks.tolist()
                fig.layout.title.text = (f"{pg.head_label + ': ' if pg.head_label else ''}row {st.row}, softmax vs HCCS "
                                         f"({st.ranks.size} keys)")
                fig.layout.xaxis.range = [0.5, st.ranks.size + 0.5]
                self._prob_key = key
            if new_frame:  # fixed ranges: plotly.js then never recomputes the axes for a new curve
                fig.layout.yaxis.range = [0.0, 1.1 * top]
            # numpy arrays: plotly validates them at once and sends them as binary (lists go element by element)
            fig.data[1].y = np.asarray(st.hccs_sorted, np.float64)
            fig.data[1].customdata = np.asarray(st.int_sorted, np.int32)
            fig.data[1].meta = json.dumps(shown)

    def _render_map(self, fig) -> None:
        """The heatmap only when B, the scale or the head changed; the marker is a layout image, moved
        with a relayout that plotly.js draws without touching the heatmap."""
        pg, st = self.pg, self.pg.state
        B, S, D = st.params
        key = (pg.model, pg.layer, pg.head, B, pg.scale, pg.target)
        if st.valid and self._map_key != key:
            with fig.batch_update():
                self._draw_heatmap(fig, B)
            self._map_key = key
        if not (isinstance(S, (int, np.integer)) and isinstance(D, (int, np.integer))):
            return
        marker = fig.layout.images[0]
        move = {}
        if (marker.x, marker.y) != (int(S), int(D)):
            move["images[0].x"], move["images[0].y"] = int(S), int(D)
        source = RING if st.valid else CROSS
        if marker.source != source:
            move["images[0].source"] = source
        if move:
            fig.plotly_relayout(move)

    def _draw_heatmap(self, fig, B: int) -> None:
        pg = self.pg
        m = pg.kl_map(B)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log10(np.where(m > 0, m, np.nan)).T
        finite = np.isfinite(z)
        lo = float(np.nanmin(z)) if finite.any() else -2.0
        hm = fig.data[0]
        hm.z = typed_array(z)
        hm.zmin, hm.zmax = lo, lo + 2.0  # the two decades above the best point: where the choice is made
        hm.colorbar = log10_colorbar("mean KL", lo, lo + 2.0)
        if finite.any():
            bS, bD = np.unravel_index(np.nanargmin(m), m.shape)
            fig.data[1].x, fig.data[1].y = [int(bS)], [int(bD)]
        floor = -(-AIE4ML_MIN_FLOOR_SUM // pg.n)  # aie4ml needs B - S*D >= ceil(256 / n)
        s = np.arange(1, 128)
        d = (B - floor) / s
        keep = d <= 127
        fig.data[2].x, fig.data[2].y = (s[keep].tolist(), d[keep].round(3).tolist()) if pg.target == "aie4ml" else ([], [])
        limit = "; dashed: aie4ml's limit" if pg.target == "aie4ml" else ""
        fig.layout.title.text = f"mean KL over (S, D) at B={B}, i16+div{limit}"

    # -- controls ---------------------------------------------------------------------------------

    def _fill_head_options(self):
        pg = self.pg
        if not pg.source.selectable:
            return
        bank = pg.source.bank(pg.model)
        with self._quiet():
            self.layer_dropdown.options = list(range(bank.n_layers))
            self.head_dropdown.options = list(range(bank.n_heads))
            self.layer_dropdown.value, self.head_dropdown.value = pg.layer, pg.head
            self.model_dropdown.value = pg.model

    def _wire(self):
        pg = self.pg

        def on(w, fn):
            w.observe(lambda change: None if self._suspend else fn(change["new"]), names="value")

        on(self.b_slider, lambda v: pg.set_params(B=v))
        on(self.s_slider, lambda v: pg.set_params(S=v))
        on(self.d_slider, lambda v: pg.set_params(D=v))
        on(self.scale_slider, pg.set_scale)
        on(self.row_slider, pg.set_row)
        on(self.variant_dropdown, pg.set_variant)
        on(self.target_dropdown, pg.set_target)
        on(self.layer_dropdown, lambda v: pg.select_head(v, pg.head))
        on(self.head_dropdown, lambda v: pg.select_head(pg.layer, v))
        on(self.model_dropdown, self._pick_model)
        self.snap_button.on_click(lambda _: pg.run_action(pg.snap_to_calibrated))
        self.save_button.on_click(lambda _: pg.run_action(pg.save_params))
        self.kernel_button.on_click(lambda _: pg.run_action(pg.generate_kernel))

    def _pick_model(self, model):
        self.show_message(f"loading {model} (captured once, then cached) ...")
        bank = self.pg.source.bank(model)
        layer, head = min(self.pg.layer, bank.n_layers - 1), min(self.pg.head, bank.n_heads - 1)
        self.pg.select_head(layer, head, model=model)
        self._fill_head_options()
        self.show_message("")

    class _Quiet:
        def __init__(self, view):
            self.view = view

        def __enter__(self):
            self.view._suspend = True

        def __exit__(self, *exc):
            self.view._suspend = False

    def _quiet(self):
        return self._Quiet(self)

    def sync_controls(self):
        """Move every control to the playground's state now; the sliders' ranges follow when idle."""
        pg = self.pg
        with self._quiet():
            for slider, v in self._int_sliders():
                if slider.value != v:
                    set_slider(slider, v, min(slider.min, v), max(slider.max, v))  # widened, never clamped
            if self.scale_slider.value != pg.scale:
                set_slider(self.scale_slider, pg.scale, min(self.scale_slider.min, pg.scale),
                           max(self.scale_slider.max, pg.scale))
            self.variant_dropdown.value, self.target_dropdown.value = pg.variant, pg.target
            if pg.source.selectable:
                self.layer_dropdown.value, self.head_dropdown.value = pg.layer, pg.head
        self.ranges.request()

    def _int_sliders(self):
        pg = self.pg
        B, S, D = pg.params
        out = [(self.row_slider, pg.row)]
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (B, S, D)):
            out += [(self.b_slider, int(B)), (self.s_slider, int(S)), (self.d_slider, int(D))]
        return out

    def sync_ranges(self):
        """Each slider spans the values that keep the point valid (`ranges.slider_bounds`)."""
        pg = self.pg
        B, S, D = pg.params
        with self._quiet():
            if len(self._int_sliders()) == 4:
                bounds = slider_bounds(int(B), int(S), int(D), pg.n)
                for slider, v, (lo, hi) in ((self.b_slider, B, bounds.B), (self.s_slider, S, bounds.S),
                                            (self.d_slider, D, bounds.D)):
                    set_slider(slider, int(v), lo, hi)
            head = (pg.model, pg.layer, pg.head, id(pg.rows))
            if self._scale_head != head:  # a new head: its own suggested scale in the middle
                self._scale_head = head
                self.scale_slider.step = pg.scale / 100
                set_slider(self.scale_slider, pg.scale, pg.scale / 4, pg.scale * 4)
            set_slider(self.row_slider, pg.row, 0, max(len(pg.rows) - 1, 1))

    def show(self, st) -> None:
        """Readout first (the quickest to appear), then the curve, the map, and the controls' ranges."""
        self.readout.value = readout_html(self.pg, st)
        self.prob.request()
        self.map.request()
        self.sync_controls()

    def show_message(self, text: str) -> None:
        self.status.value = f"<small>{html.escape(text)}</small>" if text else ""


def readout_html(pg, st) -> str:
    B, S, D = st.params
    head = html.escape(f"B={B}, S={S}, D={D}, n={pg.n}, scale={st.scale:.4g}, {st.variant}")
    if not st.valid:
        items = "".join(f"<li>{html.escape(v)}</li>" for v in st.violations)
        shown = "" if st.shown_params is None else f"; the numbers below are for the last valid B, S, D = {st.shown_params}"
        status = f"<b>invalid</b> ({head}): nothing clamped{html.escape(shown)}<ul>{items}</ul>"
    elif st.target_violations:
        items = "".join(f"<li>{html.escape(v)}</li>" for v in st.target_violations)
        status = (f"<b>valid HCCS, not deployable on {html.escape(st.target)}</b> ({head})<ul>{items}</ul>")
    else:
        status = f"<b>valid</b> for target {html.escape(st.target)} ({head})"
    rows = [("mean KL", st.kl_mean, ".5f"), ("p95 KL", st.kl_p95, ".5f"), ("Kendall tau", st.kendall_tau, ".4f"),
            ("top-1 agreement", st.top1, ".3f"), ("top-5 overlap", st.top5, ".3f"),
            ("output sum / full scale", st.out_sum, ".4f")]
    cells = "".join(f"<tr><td>{k}</td><td style='text-align:right'><code>{v:{fmt}}</code></td></tr>" for k, v, fmt in rows)
    rules = ""
    if isinstance(B, int) and isinstance(S, int) and isinstance(D, int):
        from ..core import HCCSParams

        qs = rule_quantities(HCCSParams(B, S, D), pg.n)
        rules = "<br><small>rules: " + ", ".join(f"{html.escape(k)} = {v} ({html.escape(bound)})" for k, v, bound in qs) + "</small>"
    note = ("<br><small>KL &lt; 0: the output sums to more than one (clb overshoot), so KL is not a distance "
            "here; compare Kendall tau and the sum</small>" if st.kl_mean < 0 else "")
    return (f"<div>{status}<table>{cells}</table>{rules}{note}<br>"
            f"<small>{len(pg.rows)} rows of {html.escape(pg.head_label or 'this head')}; KL(softmax || HCCS output read "
            f"as probability); top-k ties broken at random (expected overlap); update {st.elapsed_ms:.1f} ms</small>"
            f"{ints_html(st)}{state_span(state_record(pg))}</div>")


def ints_html(st) -> str:
    """The chosen variant's integer output of the shown row (part of the readout: one message per step)."""
    if st.shown_params is None:
        return f"<div class='{INT_CLASS}'><i>no valid parameters yet</i></div>"
    ints = st.int_sorted[:SHOW_INTS]
    more = "" if st.int_sorted.size <= SHOW_INTS else f" ... ({st.int_sorted.size} keys)"
    return (f"<div class='{INT_CLASS}' style='margin-top:.4em'><b>{html.escape(st.variant)} integer output</b>, row "
            f"{st.row}, keys in softmax-rank order (sum {int(st.int_sorted.sum())}, full scale "
            f"{full_scale(st.variant)}):<br><code style='white-space:normal'>{' '.join(str(int(v)) for v in ints)}{more}"
            f"</code></div>")

