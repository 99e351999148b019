"""Plotly figures that keep up with a slider in the browser, and the look every widget shares.

`LiveFigure` is a `plotly.graph_objects.FigureWidget` with two changes that matter in JupyterLab:

* After every update plotly.js sends its full computed defaults back to Python, and plotly's
  Python side merges them (`_remove_overlapping_props`), which raises a ValueError into the Log
  Console whenever a trace holds a numpy array. Nothing here reads those defaults, so the
  LiveFigure does not merge them; it keeps only the message as a sign that the browser drew the
  update (`drawn`).
* `LatestOnly` sends a figure's newest state with at most one update in flight: while the browser
  draws one, slider moves only mark the figure stale, and the newest state goes out when the
  browser says it drew the previous one. A drag then never queues redraws behind each other.
  Without a front end (tests, a figure not on screen) every request is sent at once.

The rest: colours (Okabe-Ito, safe for colour-blind readers), probability axes in plain decimals
or powers of ten, colourbars whose labels fit, and CSS that makes plotly follow JupyterLab's dark
theme (`THEME_CSS`, shown once per widget through `theme_html()`).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import json
import math
import time
from typing import Callable

import numpy as np

from ..viz.palette import BLUE, ORANGE, SEQUENTIAL, VERMILLION  # noqa: F401  (the widgets' colours)

FALLBACK_S = 0.4  # a drawn message later than this: treat the browser as gone and send anyway


def _figure_widget_class():
    import plotly.graph_objects as go
    from traitlets import observe

    class LiveFigure(go.FigureWidget):
        """A FigureWidget that does not merge plotly.js' defaults back into Python (see the module doc)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # plotly refuses public attributes that are not figure properties
            self._drawn_callbacks: list[Callable[[], None]] = []
            self._front_end = False

        @property
        def has_front_end(self) -> bool:
            """True once a browser said it drew an update of this figure."""
            return self._front_end

        @property
        def edit_count(self) -> int:
            """How many updates were sent to the browser so far."""
            return self._last_layout_edit_id

        def on_drawn(self, fn: Callable[[], None]) -> None:
            self._drawn_callbacks.append(fn)

        @contextlib.contextmanager
        def batch_redraw_traces(self):
            """Like `batch_update`, for new data of existing traces only: sent as a zero-length animation
            without redraw, which plotly.js draws by updating those traces alone (no full replot of axes,
            legend and the other traces)."""
            if self._in_batch_mode:
                yield
                return
            self._in_batch_mode = True
            try:
                yield
            finally:
                self._in_batch_mode = False
                self._perform_batch_animate({"transition": {"duration": 0, "easing": "linear"},
                                             "frame": {"duration": 0, "redraw": False}})

        @observe("_js2py_traceDeltas")
        def _handler_js2py_traceDeltas(self, change):  # noqa: N802 (plotly's name, replaced on purpose)
            if change["new"]:
                self._trace_edit_in_process = False
                self._js2py_traceDeltas = None

        @observe("_js2py_layoutDelta")
        def _handler_js2py_layoutDelta(self, change):  # noqa: N802
            msg = change["new"]
            if not msg:
                return
            self._layout_edit_in_process = False
            self._js2py_layoutDelta = None
            if msg.get("layout_edit_id") == self._last_layout_edit_id:
                self._front_end = True
                for fn in list(self._drawn_callbacks):
                    fn()

    return LiveFigure


_LIVE = None


def live_figure(*args, **kwargs):
    """A `LiveFigure` (built on first use, so importing this module does not import plotly)."""
    global _LIVE
    if _LIVE is None:
        _LIVE = _figure_widget_class()
    return _LIVE(*args, **kwargs)


class LatestOnly:
    """Draw `render(fig)` (which sends the current state to `fig`) with at most one update in flight.

    `render` chooses how to send: `fig.batch_update()`, `fig.batch_redraw_traces()` or
    `fig.plotly_relayout(...)`; whatever it sends counts as the update in flight.
    """

    def __init__(self, fig, render: Callable):
        self.fig, self.render = fig, render
        self.dirty = False
        self.in_flight = False
        self.sent_at = 0.0
        self.sent = 0  # updates sent (tests and benchmarks read it)
        fig.on_drawn(self._drawn)

    def request(self) -> None:
        if self.in_flight and time.monotonic() - self.sent_at < FALLBACK_S:
            self.dirty = True
            call_later(FALLBACK_S, self._fallback)
            return
        self._send()

    def _send(self) -> None:
        self.dirty = False
        before = self.fig.edit_count
        self.render(self.fig)
        if self.fig.edit_count != before:  # something was sent
            self.sent += 1
            self.sent_at = time.monotonic()
            self.in_flight = self.fig.has_front_end

    def _drawn(self) -> None:
        self.in_flight = False
        if self.dirty:
            self._send()

    def _fallback(self) -> None:
        if self.dirty and (not self.in_flight or time.monotonic() - self.sent_at >= FALLBACK_S):
            self.in_flight = False
            self._send()


def running_loop():
    """The Jupyter kernel's running event loop, or None (plain scripts and tests have none).

    Only inside a kernel: other code can leave a loop marked running while this thread goes on
    (Playwright's sync API does), and a callback scheduled there would never run.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    if getattr(get_ipython(), "kernel", None) is None:
        return None
    try:
        loop = asyncio.get_event_loop()
    except RuntimeError:
        return None
    return loop if loop.is_running() else None


def call_later(delay: float, fn: Callable):
    """Run `fn` after `delay` s on the kernel's event loop; nothing when no loop runs."""
    loop = running_loop()
    return None if loop is None else loop.call_later(delay, fn)


class Later:
    """Run `fn` once, `delay` s after the last `request()`: work that may wait until a drag pauses.

    Without a running event loop (tests, scripts) `request()` runs `fn` at once.
    """

    def __init__(self, fn: Callable, delay: float):
        self.fn, self.delay = fn, delay
        self._handle = None

    def request(self) -> None:
        if running_loop() is None:
            self.fn()
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle = call_later(self.delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self.fn()


# ---- axes, colourbars ----------------------------------------------------------------------------

def probability_axis(title: str = "probability", log: bool = False, **extra) -> dict:
    """A probability axis in plain decimals, or on a log scale labelled in powers of ten (no "100u")."""
    if log:
        return dict(title=title, type="log", exponentformat="power", dtick=1, **extra)
    return dict(title=title, exponentformat="none", tickformat=".2~f", **extra)


def log10_colorbar(title: str, lo: float, hi: float) -> dict:
    """Colourbar for log10 values, ticked at 1, 2, 5 x 10^k and labelled as the values themselves (0.02, 0.1, 1)."""
    ticks = [math.log10(m * 10.0 ** k) for k in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in (1, 2, 5)]
    ticks = [t for t in ticks if lo - 1e-9 <= t <= hi + 1e-9]
    return dict(title=dict(text=title, side="right"), thickness=14, len=0.9, tickvals=ticks,
                ticktext=[decimal_label(10.0 ** t) for t in ticks], outlinewidth=0)


def decimal_label(v: float) -> str:
    """0.001 -> "0.001", 1e-05 -> "1e-5": plain decimals down to a thousandth, then powers of ten."""
    if v >= 1e-3:
        return f"{v:.3g}"
    k = math.floor(math.log10(v) + 1e-9)
    m = v / 10.0 ** k
    return f"{m:.2g}e{k}"


def typed_array(a: np.ndarray) -> dict:
    """A float array as plotly.js' typed-array spec (dtype, base64 data, shape).

    For a large heatmap this is the cheap way in: plotly's Python side validates a nested list
    element by element (~80 ms for 128 x 128) and sends a 2-D numpy array as nested lists, where NaN
    is no valid JSON; the spec is one base64 string, NaN (a gap) included, decoded by plotly.js.
    """
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


def state_span(record: dict) -> str:
    """A hidden element carrying a widget's shown settings as JSON keyed by its controls' labels.

    The same JSON goes into the `meta` of the trace a widget redraws, so the browser benchmark and
    tests can tell which setting a readout or a curve on screen belongs to.
    """
    return f"<span class='hccs-state' hidden data-state='{html.escape(json.dumps(record), quote=True)}'></span>"


BASE_LAYOUT = dict(font=dict(size=12), paper_bgcolor="rgba(0,0,0,0)", hoverlabel=dict(namelength=-1))


# ---- dark theme -----------------------------------------------------------------------------------

THEME_CSS = """
body[data-jp-theme-light="false"] .js-plotly-plot .main-svg { background: transparent !important; }
body[data-jp-theme-light="false"] .js-plotly-plot .bg { fill: var(--jp-layout-color1) !important; }
body[data-jp-theme-light="false"] .js-plotly-plot .main-svg :is(.cartesianlayer, .infolayer, .annotation) text
  { fill: var(--jp-ui-font-color1) !important; }
body[data-jp-theme-light="false"] .js-plotly-plot :is(.gridlayer, .zerolinelayer) path
  { stroke: var(--jp-border-color2) !important; }
body[data-jp-theme-light="false"] .js-plotly-plot .legend .bg { fill: transparent !important; }
.hccs-panel { color: var(--jp-ui-font-color1); }
.hccs-panel code { background: var(--jp-layout-color2); }
"""


def theme_html():
    """An invisible HTML widget holding THEME_CSS: plotly's figures then follow JupyterLab's theme."""
    import ipywidgets as W

    return W.HTML(f"<style>{THEME_CSS}</style>", layout=W.Layout(display="none"))


def follow_jupyterlab_theme() -> None:
    """Display THEME_CSS in a notebook without widgets (03, 06), so static figures follow the theme too."""
    from IPython.display import HTML, display

    display(HTML(f"<style>{THEME_CSS}</style>"))
