"""Where the sliders may go: ranges that follow HCCS's valid region, a starting point, the target's rules.

Valid (B, S, D) for rows of n keys form a thin region (`S*D <= B`, `n*B <= 32767`): at D = 36 and
B = 255 only S = 0..7 is valid. The playground's sliders therefore span the valid values given the
other two parameters (`slider_bounds`), so every position of a slider is a point HCCS can compute.
A value set from code outside that range widens the range to include it, so an invalid point is
shown where it is, never clamped. The deployment target's own rules (aie4ml's n*(B - S*D) >= 256)
are not folded into the ranges: such a point is computable, and the readout says which rule it
breaks and by how much (`hccs_lab.core.target_violations`).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core import INT16_MAX, HCCSParams, max_base
from ..core.params import AIE4ML_MIN_FLOOR_SUM

S_TOP = D_TOP = 127


@dataclass(frozen=True)
class Bounds:
    """Inclusive slider ranges for base B, slope S and clip D."""

    B: tuple[int, int]
    S: tuple[int, int]
    D: tuple[int, int]


def slider_bounds(B: int, S: int, D: int, n: int) -> Bounds:
    """Ranges of each slider that keep the point valid when only that slider moves.

    S: 0..B // D (all of 0..127 at D = 0); D: 0..B // S; B: max(1, S*D)..32767 // n. A current
    value outside its range (an invalid point set from code) widens the range to include it.
    """
    top_B = max_base(n)
    s_hi = S_TOP if D <= 0 else min(S_TOP, max(B, 0) // D)
    d_hi = D_TOP if S <= 0 else min(D_TOP, max(B, 0) // S)
    b_lo = max(1, S * D)
    return Bounds(B=(min(b_lo, B, top_B), max(top_B, B)), S=(0, max(s_hi, S)), D=(0, max(d_hi, D)))


def start_params(n: int) -> HCCSParams:
    """A deliberately imperfect, valid start to drag from: the largest base (at most 1536), D = 64,
    and the steepest slope that leaves the clipped keys a quarter of the base or more."""
    B = min(max_base(n), 1536)
    D = 64
    S = max(1, min(16, (3 * B) // (4 * D)))
    return HCCSParams(B=B, S=S, D=D)


def rule_quantities(params: HCCSParams, n: int) -> list[tuple[str, int, str]]:
    """The quantities HCCS's rules and aie4ml's extra rule are about, as (name, value, bound) for the readout."""
    B, S, D = params.B, params.S, params.D
    return [("n*B", n * B, f"<= {INT16_MAX}"), ("B - S*D", B - S * D, ">= 0"),
            ("n*(B - S*D)", n * (B - S * D), f">= {AIE4ML_MIN_FLOOR_SUM} for aie4ml")]


def set_slider(slider, value, lo, hi) -> None:
    """An ipywidgets slider to `value` with range lo..hi, in one message, never clamping on the way."""
    if (slider.min, slider.max, slider.value) == (lo, hi, value):
        return
    with slider.hold_sync():
        slider.max = max(hi, slider.max, value)
        slider.min = min(lo, slider.min, value)
        slider.value = value
        slider.min, slider.max = lo, hi
