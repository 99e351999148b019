"""HCCS parameters, their constraints, and the names of the integer variants.

`HCCSParams(B, S, D)` is one head's base, slope and clip ("D_max" in the paper). The constraints for
rows of length n are DESIGN.md's: 1 <= B, 0 <= S <= 127, 0 <= D <= 127, B - S*D >= 0 and
n*B <= 32767. `violations` states each broken one with its numbers and `valid_mask` is the same
rule over arrays of candidates; `valid_region` (the calibration grid and the playground sliders)
is built from it, so there is one definition of validity.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, InputTypeError

INT16_MAX = 32767
U8_NUMER = 255 << 15  # the u8 reciprocal keeps 15 fractional bits
OUT_KINDS = ("i16", "u8")
RECIP_KINDS = ("div", "clb")
VARIANTS = ("i16-div", "u8-div", "i16-clb", "u8-clb")
FULL_SCALE = {"i16": INT16_MAX, "u8": 255}  # the integer output that reads as probability 1

# Deployment targets (DESIGN.md): what runs on the AI Engine must accept the parameters.
TARGETS = ("aie4ml", "hccs-lab")
DEFAULT_TARGET = "aie4ml"
# aie4ml broadcasts the reciprocal as int16, so (255 << 15) // Z must fit: it refuses
# cols * (B - S*Dmax) < 256 ("for reciprocal range"; reference/aie4ml.md, op_impls/.../common.py)
AIE4ML_MIN_FLOOR_SUM = 256


def split_variant(variant: str) -> tuple[str, str]:
    """"u8-clb" -> ("u8", "clb"); InputError for anything but the four variants."""
    if variant not in VARIANTS:
        raise InputError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    out, recip = variant.split("-")
    return out, recip


def full_scale(variant_or_out: str) -> int:
    """32767 for i16 output, 255 for u8 (a variant name or an output kind)."""
    out = variant_or_out if variant_or_out in OUT_KINDS else split_variant(variant_or_out)[0]
    return FULL_SCALE[out]


@dataclass(frozen=True)
class HCCSParams:
    """One head's integer parameters: base B, slope S, clip D ("D_max" in the paper)."""

    B: int
    S: int
    D: int

    def __post_init__(self):
        for name in ("B", "S", "D"):
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise InputTypeError(f"HCCSParams.{name} must be an integer, got {v!r} ({type(v).__name__})")
            object.__setattr__(self, name, int(v))

    def violations(self, n: int) -> list[str]:
        """Every broken constraint for rows of length n, each with its numbers ([] when valid)."""
        B, S, D = self.B, self.S, self.D
        out = []
        if B < 1:
            out.append(f"B = {B} < 1")
        if not 0 <= S <= 127:
            out.append(f"S = {S} outside [0, 127]")
        if not 0 <= D <= 127:
            out.append(f"D = {D} outside [0, 127]")
        if B - S * D < 0:
            out.append(f"B - S*D = {B} - {S}*{D} = {B - S * D} < 0 (scores would go negative)")
        if n * B > INT16_MAX:
            out.append(f"n*B = {n * B} > {INT16_MAX} for n={n}, B={B} (score sum would overflow int16)")
        return out

    def is_valid(self, n: int) -> bool:
        return not self.violations(n)

    def validate(self, n: int) -> "HCCSParams":
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"row length n must be a positive integer, got {n!r}")
        bad = self.violations(int(n))
        if bad:
            raise InputError(f"HCCSParams(B={self.B}, S={self.S}, D={self.D}) invalid for n={n}: " + "; ".join(bad))
        return self

    def as_dict(self) -> dict:
        return {"B": self.B, "S": self.S, "D": self.D}


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise InputError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    return target


def target_violations(params: HCCSParams, n: int, target: str) -> list[str]:
    """Every rule of `target` that `params` break for rows of length n (HCCS's own rules first).

    "hccs-lab" (our kernels widen the reciprocal) has exactly HCCS's rules; "aie4ml" adds
    n*(B - S*D) >= 256. aie4ml's layout rule (n % 32 == 0 for the linear layout) belongs to the
    export, which knows the layout.
    """
    out = params.violations(n)
    if check_target(target) == "aie4ml":
        floor_sum = n * (params.B - params.S * params.D)
        if floor_sum < AIE4ML_MIN_FLOOR_SUM:
            out.append(f"n*(B - S*D) = {floor_sum} < {AIE4ML_MIN_FLOOR_SUM} for n={n}, B={params.B}, S={params.S}, "
                       f"D={params.D} (aie4ml broadcasts its reciprocal as int16)")
    return out


def target_mask(cands, n: int, target: str) -> np.ndarray:
    """`valid_mask` plus the target's extra rules, over an int array [K, 3] of (B, S, D)."""
    c = np.asarray(cands, np.int64).reshape(-1, 3)
    ok = valid_mask(c, n)
    if check_target(target) == "aie4ml":
        ok &= n * (c[:, 0] - c[:, 1] * c[:, 2]) >= AIE4ML_MIN_FLOOR_SUM
    return ok


def max_base(n: int) -> int:
    """Largest B allowed for rows of length n (n*B <= 32767)."""
    if n < 1:
        raise InputError(f"row length n must be >= 1, got {n}")
    return INT16_MAX // n


def valid_mask(cands, n: int) -> np.ndarray:
    """Which rows of an int array [K, 3] of (B, S, D) satisfy every constraint for rows of length n."""
    c = np.asarray(cands, np.int64).reshape(-1, 3)
    B, S, D = c[:, 0], c[:, 1], c[:, 2]
    return (B >= 1) & (S >= 0) & (S <= 127) & (D >= 0) & (D <= 127) & (B - S * D >= 0) & (B * n <= INT16_MAX)


def valid_region(n: int, B_max: int | None = None) -> np.ndarray:
    """Every valid integer (B, S, D) for rows of length n, as an int32 array [K, 3], ordered by S, D, B.

    The calibration grid and the playground sliders both draw from this one definition. For n=128
    that is about 0.7 million triples; `B_max` restricts the base further.
    """
    top = max_base(n) if B_max is None else min(max_base(n), B_max)
    S, D = np.meshgrid(np.arange(128), np.arange(128), indexing="ij")
    S, D = S.ravel(), D.ravel()
    lo = np.maximum(1, S * D)
    keep = lo <= top
    S, D, lo = S[keep], D[keep], lo[keep]
    counts = top - lo + 1
    B = np.repeat(lo - np.cumsum(np.r_[0, counts[:-1]]), counts) + np.arange(counts.sum())
    out = np.stack([B, np.repeat(S, counts), np.repeat(D, counts)], axis=1).astype(np.int32)
    return out
