"""The rules aie4ml 0.2.1 adds to HCCS's own, stated once for export and calibration.

aie4ml's HCCS Softmax (op_impls/families/softmax/common.py and softmax.py in the wheel) accepts a
head for rows of n keys when, on top of HCCS's constraints (`HCCSParams.violations`):

- n*(B - S*D) >= 256: the smallest possible score sum Z stays >= 256, because the kernel
  broadcasts its reciprocal as int16 and (255 << 15) // Z only fits for Z >= 256 (u8 outputs
  differ from `hccs_int` below that);
- n % 32 == 0 for the linear layout (whole rows in 32-lane int8 vectors); the tiled layout needs
  n % 8 == 0 (its microtiles are 8 keys wide) and a whole number of 4-row bands per tile;
- inv_shift = 15 (the only shift with which u8+div is exact; aie4ml's default), no runtime scale.

Only numbers are checked here, no aie4ml import: the calibration grid reuses these rules.
"""
from __future__ import annotations

import numpy as np

MIN_SCORE_SUM = 256  # aie4ml: cols * (B - S*Dmax) >= 256 "for reciprocal range"
LINEAR_VEC = 32  # aie4ml's int8 vector width for the linear kernel
TILED_INNER = 8  # keys per microtile of the tiled kernel (its default 4x8 microtile)
TILED_OUTER = 4  # rows per microtile band
INV_SHIFT = 15
LAYOUTS = ("linear", "tiled")


def _bsd(params) -> tuple[int, int, int]:
    if isinstance(params, dict):
        return int(params["B"]), int(params["S"]), int(params["D"])
    return int(params.B), int(params.S), int(params.D)


def _layout_violation(n: int, layout: str) -> str | None:
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
    """Every rule of target "aie4ml" that (B, S, D) breaks for rows of n keys, each with its numbers.

    `params` is an HCCSParams or a mapping with B, S, D; [] when aie4ml accepts the head. The list
    starts with HCCS's own rules (`HCCSParams.violations`), then aie4ml's extra ones.
    """
    from hccs_lab import HCCSParams

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    B, S, D = _bsd(params)
    out = list(HCCSParams(B, S, D).violations(int(n)))
    low = int(n) * (B - S * D)
    if B - S * D >= 0 and low < MIN_SCORE_SUM:  # a negative B - S*D is already reported above
        out.append(f"n*(B - S*D) = {low} < {MIN_SCORE_SUM} for n={n}, B={B}, S={S}, D={D} (aie4ml broadcasts "
                   f"its reciprocal as int16, so the smallest score sum must be >= {MIN_SCORE_SUM})")
    bad_layout = _layout_violation(int(n), layout)
    if bad_layout:
        out.append(bad_layout)
    return out


def aie4ml_extra_mask(cands, n: int, layout: str = "linear") -> np.ndarray:
    """aie4ml's extra rules over an int array [K, 3] of (B, S, D): True where they hold.

    AND it with HCCS's own valid mask; the layout rule is all-or-nothing for a given n.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    c = np.asarray(cands, np.int64).reshape(-1, 3)
    ok = int(n) * (c[:, 0] - c[:, 1] * c[:, 2]) >= MIN_SCORE_SUM
    if _layout_violation(int(n), layout):
        ok[:] = False
    return ok
