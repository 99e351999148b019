"""The clip / slope playground: drag B, S, D (and the int8 scale) for one head and watch KL and ranks move.

Everything a control does goes through plain methods (`set_params`, `set_scale`, `set_variant`,
`set_row`, `set_target`, `select_head`, `snap_to_calibrated`, `save_params`, `generate_kernel`),
so tests and exercises reach the same numbers the browser shows. The metrics come from
`BinnedRows` (exact, a few ms for 256 rows x 128 keys); the figures and controls live in
`playground_view.PlaygroundView`.

An invalid (B, S, D) (a broken integer constraint, e.g. B - S*D < 0) is never clamped: the readout
says "invalid" and lists every violated constraint, the curves and the metrics keep the last valid
state, and the marker on the KL map becomes a cross at the requested (S, D). A point HCCS can
compute but the chosen deployment target refuses (aie4ml: n*(B - S*D) >= 256) keeps its numbers and
is flagged with the target's rule and its values.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core import DEFAULT_TARGET, HCCSParams, check_target, choose_scale, target_violations
from ..core.metrics import topk_overlap
from ..core.params import split_variant
from ..errors import HCCSLabError, InputError
from .binned import BinnedRows
from .playground_view import INT_CLASS, MAP_CLASS, PLOT_CLASS, READOUT_CLASS, PlaygroundView
from .ranges import start_params
from .source import HeadSource


__all__ = ["ClipSlopePlayground", "PlaygroundState", "READOUT_CLASS", "PLOT_CLASS", "MAP_CLASS", "INT_CLASS"]


@dataclass
class PlaygroundState:
    """What the playground shows after an update (the last valid metrics when `valid` is False)."""

    params: tuple  # requested (B, S, D)
    variant: str
    scale: float
    valid: bool  # HCCS's own rules hold: the metrics belong to these parameters
    violations: list  # HCCS's broken rules
    target: str = DEFAULT_TARGET
    target_violations: list = field(default_factory=list)  # every rule of the target that is broken
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

    @property
    def deployable(self) -> bool:
        return self.valid and not self.target_violations


_VIEW_PARTS = frozenset({"prob_fig", "map_fig", "readout", "status", "b_slider", "s_slider", "d_slider",
                         "scale_slider", "row_slider", "variant_dropdown", "target_dropdown", "model_dropdown",
                         "layer_dropdown", "head_dropdown", "snap_button", "save_button", "kernel_button"})


def _nonempty(head_rows, max_rows: int, seed: int):
    keep = np.nonzero(head_rows.valid_len > 0)[0]
    if keep.size == 0:
        raise InputError("this head has no rows with a valid key; capture more text")
    rows = head_rows.take(keep)
    return rows.sample(max_rows, seed=seed) if len(rows) > max_rows else rows


def _triple(params) -> tuple:
    if isinstance(params, HCCSParams):
        return params.B, params.S, params.D
    B, S, D = params
    return B, S, D


class ClipSlopePlayground:
    """Sliders for base B, slope S, clip D and the int8 scale of one head; live KL, ranks and a KL map.

    `source`: one head's rows (`bank[layer, head]`), a `LogitBank`, or a mapping model name ->
    bank (then a model selector appears; a lazy `hccs_lab.session.Banks` captures on first pick);
    with a bank, `layer`/`head` (and `model`) pick the head and layer / head selectors appear.
    At most `max_rows` rows of the head are used. `params`: the starting (B, S, D), by default a
    deliberately imperfect valid point (`ranges.start_params`), not the optimum. `scale`: int8
    step, by default `choose_scale` of the rows. `target`: "aie4ml" (default) or "hccs-lab", whose
    rules the readout checks. `calibration`: a `Calibration` that "snap to calibrated" reads and
    "save these parameters" updates (else the head is calibrated on its rows when asked).
    `calibration_path`: the JSON "save" writes; `kernel_dir`: where "generate kernel" writes;
    `on_select(model, layer, head)`: called when a person picks a head (e.g.
    `hccs_lab.session.remember_head`).
    """

    def __init__(self, source, params=None, scale=None, variant: str = "i16-div", max_rows: int = 256,
                 seed: int = 0, title: str = "", *, layer: int | None = None, head: int | None = None,
                 model: str | None = None, target: str = DEFAULT_TARGET, calibration=None, calibration_path=None,
                 kernel_dir=None, arch: str = "aie-ml", on_select=None):
        split_variant(variant)
        self.source = HeadSource(source)
        self.max_rows, self.seed, self.title = max_rows, seed, title
        self.variant, self.target, self.arch = variant, check_target(target), arch
        self.calibration, self.on_select = calibration, on_select
        self.calibration_path = None if calibration_path is None else Path(calibration_path)
        self.kernel_dir = None if kernel_dir is None else Path(kernel_dir)
        self.model = model if model is not None else (self.source.models[0] if self.source.models else None)
        self.layer = (layer or 0) if self.source.selectable else layer
        self.head = (head or 0) if self.source.selectable else head
        self.state: PlaygroundState | None = None
        self.message = ""  # the status line under the buttons
        self._calibrated: dict = {}
        self._load_rows(scale)
        self.params = _triple(params) if params is not None else _triple(start_params(self.n))
        self.params = tuple(int(v) if isinstance(v, (int, np.integer)) else v for v in self.params)
        self.view = PlaygroundView(self)
        self.update()

    @property
    def widget(self):
        return self.view.widget

    def __getattr__(self, name):
        # the controls and figures (pg.s_slider, pg.prob_fig, ...) live on the view
        if name in _VIEW_PARTS and "view" in self.__dict__:
            return getattr(self.view, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- the head's data ---------------------------------------------------------------------------

    def _load_rows(self, scale=None):
        self.rows = _nonempty(self.source.rows(self.model, self.layer, self.head), self.max_rows, self.seed)
        self.n = self.rows.n
        self.row = 0
        self.scale = float(scale) if scale is not None else float(choose_scale(self.rows.logits, mask=self.rows.mask))
        self._binned = BinnedRows(self.rows.logits, self.rows.mask, self.scale)
        self._map_key, self._map = None, None

    @property
    def head_label(self) -> str:
        if self.layer is None:
            return self.title
        model = f"{self.model} " if self.model and len(self.source.models) > 1 else ""
        return f"{model}L{self.layer} H{self.head}"

    def select_head(self, layer: int, head: int, model: str | None = None, notify: bool = True) -> PlaygroundState:
        """Show another head (and model): its rows, its own suggested scale, the same (B, S, D) when valid there."""
        if not self.source.selectable:
            raise InputError("this playground was given one head's rows; give it a bank to pick heads")
        model = self.model if model is None else model
        bank = self.source.bank(model)
        bank[layer, head]  # validates the indices before anything changes
        self.model, self.layer, self.head = model, int(layer), int(head)
        self.title = ""
        self._load_rows()
        if not (self._all_int() and HCCSParams(*self.params).is_valid(self.n)):
            self.params = _triple(start_params(self.n))
        if notify and self.on_select is not None:
            self.on_select(self.model, self.layer, self.head)
        return self.update()

    def _all_int(self) -> bool:
        return all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in self.params)

    # -- pure computations ------------------------------------------------------------------------

    def kl_map(self, B: int | None = None) -> np.ndarray:
        """Mean KL (i16+div) over (S, D) for base B (default: the current one), [S, D], NaN where invalid."""
        B = self.params[0] if B is None else int(B)
        if self._map_key != (B, self.scale):
            self._map = self._binned.kl_map(B)
            self._map_key = (B, self.scale)
        return self._map

    def best_on_map(self, B: int) -> HCCSParams:
        m = self.kl_map(B)
        if not np.isfinite(m).any():
            raise InputError(f"no valid (S, D) for B={B} at n={self.n}")
        S, D = np.unravel_index(np.nanargmin(m), m.shape)
        return HCCSParams(int(B), int(S), int(D))

    def metrics_at(self, B: int, S: int, D: int, variant: str | None = None) -> PlaygroundState:
        """The numbers the readout would show at (B, S, D), without moving the playground."""
        return self._compute((B, S, D), variant or self.variant, self.row, None)

    def compute(self) -> PlaygroundState:
        """The metrics and plot data for the current settings, without touching any widget."""
        return self._compute(self.params, self.variant, self.row, self.state)

    def _compute(self, params, variant, r, previous) -> PlaygroundState:
        t0 = time.perf_counter()
        B, S, D = params
        try:
            hp = HCCSParams(B, S, D)
            bad, bad_target = hp.violations(self.n), target_violations(hp, self.n, self.target)
        except (TypeError, ValueError) as e:
            hp, bad, bad_target = None, [str(e)], [str(e)]
        st = PlaygroundState(params=tuple(params), variant=variant, scale=self.scale, valid=not bad, violations=bad,
                             target=self.target, target_violations=bad_target, row=r)
        if bad:
            if previous is not None:  # keep the last valid numbers and curves, say they are stale
                for f in ("kl_mean", "kl_p95", "kendall_tau", "top1", "top5", "out_sum", "ranks", "softmax_sorted",
                          "hccs_sorted", "int_sorted", "shown_params", "row"):
                    setattr(st, f, getattr(previous, f))
            st.elapsed_ms = (time.perf_counter() - t0) * 1e3
            return st
        br = self._binned
        pm = br.point(hp, variant)
        q = br.key_probs(pm)
        st.kl_mean, st.kl_p95, st.kendall_tau = pm.kl_mean, pm.kl_p95, pm.tau_mean
        st.out_sum = float((pm.prob_bins * br.counts).sum(1).mean())
        st.top1 = float(topk_overlap(br.p, q, 1, br.mask).mean())
        st.top5 = float(topk_overlap(br.p, q, 5, br.mask).mean())
        ints, probs = br.key_output(pm, r)
        valid = np.nonzero(br.mask[r])[0]
        order = valid[np.argsort(-br.p[r, valid], kind="stable")]
        st.ranks = np.arange(1, order.size + 1)
        st.softmax_sorted = br.p[r, order]
        st.hccs_sorted = probs[order]
        st.int_sorted = ints[order]
        st.shown_params = tuple(params)
        st.elapsed_ms = (time.perf_counter() - t0) * 1e3
        return st

    # -- setters (what the controls call) ---------------------------------------------------------

    def set_params(self, B=None, S=None, D=None) -> PlaygroundState:
        B0, S0, D0 = self.params
        self.params = (B0 if B is None else B, S0 if S is None else S, D0 if D is None else D)
        return self.update()

    def set_scale(self, scale: float) -> PlaygroundState:
        scale = float(scale)
        if not np.isfinite(scale) or scale <= 0:
            raise InputError(f"scale must be finite and > 0, got {scale}")
        if scale != self.scale:
            self.scale = scale
            self._binned = BinnedRows(self.rows.logits, self.rows.mask, scale)
        return self.update()

    def set_variant(self, variant: str) -> PlaygroundState:
        split_variant(variant)
        self.variant = variant
        return self.update()

    def set_target(self, target: str) -> PlaygroundState:
        self.target = check_target(target)
        return self.update()

    def set_row(self, row: int) -> PlaygroundState:
        if not 0 <= int(row) < len(self.rows):
            raise IndexError(f"row {row} outside 0..{len(self.rows) - 1}")
        self.row = int(row)
        return self.update()

    def update(self) -> PlaygroundState:
        """Recompute for the current settings and show it: readout first, then the figures."""
        t0 = time.perf_counter()
        st = self.compute()
        self.state = st
        self.view.show(st)
        st.elapsed_ms = (time.perf_counter() - t0) * 1e3
        return st

    # -- buttons: snap, save, generate -------------------------------------------------------------

    def calibrated_params(self) -> tuple:
        """(HCCSParams, scale, where from) of this head: the given calibration, else a grid search now."""
        cal = self.calibration
        if (cal is not None and self.layer is not None and cal.seq_len == self.n and cal.model == (self.model or cal.model)
                and self.layer < cal.n_layers and self.head < cal.n_heads and not target_violations(
                    cal.params(self.layer, self.head), self.n, self.target)):
            return cal.params(self.layer, self.head), cal.scale(self.layer, self.head), "the calibration file"
        key = (self.model, self.layer, self.head, self.target, self.n)
        if key not in self._calibrated:
            from ..calibrate import calibrate_rows

            full = self.source.rows(self.model, self.layer, self.head)
            p, scale, _ = calibrate_rows(full.logits, full.mask, self.n, target=self.target)
            self._calibrated[key] = (p, float(scale))
        p, scale = self._calibrated[key]
        return p, scale, f"a grid search on this head's rows (target {self.target})"

    def snap_to_calibrated(self) -> PlaygroundState:
        params, scale, where = self.calibrated_params()
        self.params = (params.B, params.S, params.D)
        self.message = f"calibrated B={params.B} S={params.S} D={params.D}, scale {scale:.4g}, from {where}"
        return self.set_scale(scale)

    def _base_calibration(self, path: Path):
        """The calibration "save" updates: the file at `path`, else the given one if it fits this bank, else
        one made now for every head of the bank."""
        from ..calibrate import Calibration, calibrate

        bank = self.source.bank(self.model) if self.source.selectable else None
        shape = None if bank is None else (bank.model_name, bank.n_layers, bank.n_heads, self.n)

        def fits(cal):
            return shape is not None and (cal.model, cal.n_layers, cal.n_heads, cal.seq_len) == shape

        if path.is_file():
            cal = Calibration.from_json(path)
            if not fits(cal):
                raise InputError(f"not saved: {path} holds {cal.model} ({cal.n_layers}x{cal.n_heads} heads, seq_len "
                                 f"{cal.seq_len}), not this head's model at n={self.n}; give another path")
            return cal, f"updated {path}"
        if bank is None:
            raise InputError(f"{path} does not exist yet and this playground has one head's rows only: "
                             "run notebook 03 first, or give the playground a bank")
        if self.calibration is not None and fits(self.calibration):
            return self.calibration, f"wrote {path} (from the given calibration)"
        t0 = time.perf_counter()
        cal = calibrate(bank, self.n, target=self.target, progress=False)
        return cal, f"wrote {path} (every head calibrated first, {time.perf_counter() - t0:.1f} s)"

    def save_params(self, path=None) -> Path:
        """Write the current (B, S, D) and scale as this head's entry of a calibration JSON (atomically)."""
        from ..session import save_head_params, user_calibration_path

        st = self.state
        if self.layer is None:
            raise InputError("this playground does not know which layer and head its rows are; give it a bank")
        if not st.valid:
            raise InputError("not saved: the parameters are invalid: " + "; ".join(st.violations))
        path = Path(path or self.calibration_path or user_calibration_path(self.model or "model"))
        base, what = self._base_calibration(path)
        kl = self.metrics_at(*self.params, variant="i16-div").kl_mean
        out = save_head_params(path, base, self.layer, self.head, HCCSParams(*self.params), self.scale, kl)
        self.message = f"{what}: L{self.layer} H{self.head} = B={self.params[0]} S={self.params[1]} D={self.params[2]}"
        return out

    def generate_kernel(self, out_dir=None):
        """Generate this head's AIE kernel for the current parameters and variant (`hccs_lab.aie.generate`)."""
        from ..aie import generate

        st = self.state
        if not st.valid:
            raise InputError("no kernel for invalid parameters: " + "; ".join(st.violations))
        name = f"{self.model or 'head'}_L{self.layer}H{self.head}_{self.variant}" if self.layer is not None else self.variant
        out = Path(out_dir or self.kernel_dir or Path.cwd() / "hccs_kernels") / name
        gen = generate(HCCSParams(*self.params), self.variant, self.arch, self.n, out_dir=out)
        files = sorted(p.name for p in out.iterdir())
        self.message = f"kernel ({self.variant}, {self.arch}, n={self.n}) written to {out}: {', '.join(files)}"
        return gen

    def run_action(self, action) -> None:
        """What a button does: run `action`, and put its outcome or its error in the status line."""
        try:
            action()
        except HCCSLabError as e:
            self.message = f"not done: {e}"
        self.view.show_message(self.message)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
