"""aie4ml's rules for an export: the parameter rules of target "aie4ml" plus its layout rules.

aie4ml's HCCS Softmax (op_impls/families/softmax/common.py and softmax.py in the wheel) accepts a
head for rows of n keys when, on top of HCCS's constraints (`HCCSParams.violations`):

- n*(B - S*D) >= 256: the smallest possible score sum Z stays >= 256, because the kernel
  broadcasts its reciprocal as int16 and (255 << 15) // Z only fits for Z >= 256 (u8 outputs
  differ from `hccs_int` below that);
- n % 32 == 0 for the linear layout (whole rows in 32-lane int8 vectors); the tiled layout needs
  n % 8 == 0 (its microtiles are 8 keys wide) and a whole number of 4-row bands per tile;
- inv_shift = 15 (the only shift with which u8+div is exact; aie4ml's default), no runtime scale.

The parameter rules live in the core (`hccs_lab.core.target_violations` / `target_mask` with
target "aie4ml", which calibration uses); this module adds the layout rules an export needs.
Only numbers are checked here, no aie4ml import.
"""
from __future__ import annotations

LINEAR_VEC = 32  # aie4ml's int8 vector width for the linear kernel
TILED_INNER = 8  # keys per microtile of the tiled kernel (its default 4x8 microtile)
TILED_OUTER = 4  # rows per microtile band
INV_SHIFT = 15
LAYOUTS = ("linear", "tiled")


def _bsd(params) -> tuple[int, int, int]:
    if isinstance(params, dict):
        return int(params["B"]), int(params["S"]), int(params["D"])
    return int(params.B), int(params.S), int(params.D)


def layout_violation(n: int, layout: str) -> str | None:
    """Why aie4ml's `layout` cannot take rows of n keys, or None when it can."""
    if layout == "linear" and n % LINEAR_VEC:
        up = -(-n // LINEAR_VEC) * LINEAR_VEC
        return (f"n = {n} is not a multiple of {LINEAR_VEC}, which aie4ml's linear layout needs: pad the rows to "
                f"{up} keys (padded keys enter as -128 and take part in the max and in Z) or use layout 'tiled'")
    if layout == "tiled" and n % TILED_INNER:
        up = -(-n // TILED_INNER) * TILED_INNER
        return (f"n = {n} is not a multiple of {TILED_INNER}, which aie4ml's tiled layout needs (its microtiles "
                f"are {TILED_INNER} keys wide): pad the rows to {up} keys")
    return None


def aie4ml_violations(params, n: int, layout: str = "linear") -> list[str]:
    """Every rule of target "aie4ml" that (B, S, D) breaks for rows of n keys in `layout`, with numbers.

    `params` is an HCCSParams or a mapping with B, S, D; [] when aie4ml accepts the head. The
    parameter rules are the core's (`target_violations(..., "aie4ml")`: HCCS's own, then
    n*(B - S*D) >= 256); the layout rule, which only an export knows, comes last.
    """
    from hccs_lab import HCCSParams
    from hccs_lab.core import target_violations

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    B, S, D = _bsd(params)
    out = list(target_violations(HCCSParams(B, S, D), int(n), "aie4ml"))
    bad_layout = layout_violation(int(n), layout)
    if bad_layout:
        out.append(bad_layout)
    return out
