"""HCCS: the integer reference semantics, its real-valued reading, and the softmax it replaces.

Everything else in hccs_lab (calibration, retraining, kernels, the emulator) checks itself against
`hccs_int`, so it follows DESIGN.md literally. Masking rules, shared by every function here:

* a mask is boolean `[..., n]`, True where the key takes part (a valid length per row is the same
  thing written as `arange(n) < valid_len[..., None]`);
* masked keys get exactly 0 and take no part in the max or the normaliser;
* a row whose keys are *all* masked is defined to be all zeros (no probability mass at all), in
  every function, so that padded query rows never produce NaN.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

try:  # torch is a hard dependency of the package, but keep the numpy path importable without it
    import torch
except ImportError:  # pragma: no cover
    torch = None

INT16_MAX = 32767
U8_NUMER = 255 << 15  # the u8 reciprocal keeps 15 fractional bits
OUT_KINDS = ("i16", "u8")
RECIP_KINDS = ("div", "clb")


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
                raise TypeError(f"HCCSParams.{name} must be an integer, got {v!r} ({type(v).__name__})")
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
            raise ValueError(f"row length n must be a positive integer, got {n!r}")
        bad = self.violations(int(n))
        if bad:
            raise ValueError(f"HCCSParams(B={self.B}, S={self.S}, D={self.D}) invalid for n={n}: " + "; ".join(bad))
        return self

    def as_dict(self) -> dict:
        return {"B": self.B, "S": self.S, "D": self.D}


def max_base(n: int) -> int:
    """Largest B allowed for rows of length n (n*B <= 32767)."""
    if n < 1:
        raise ValueError(f"row length n must be >= 1, got {n}")
    return INT16_MAX // n


def valid_region(n: int, B_max: int | None = None) -> np.ndarray:
    """Every valid integer (B, S, D) for rows of length n, as an int32 array [K, 3].

    The calibration grid and the playground sliders both draw from this one definition. For n=128
    that is about 0.7 million triples; `B_max` restricts the base further.
    """
    top = max_base(n) if B_max is None else min(max_base(n), B_max)
    rows = []
    D = np.arange(128)
    for S in range(128):
        # For each S, D ranges over [0, 127] and B over [max(1, S*D), top].
        lo = np.maximum(1, S * D)
        for d, b0 in zip(D[lo <= top], lo[lo <= top]):
            Bs = np.arange(b0, top + 1, dtype=np.int32)
            rows.append(np.stack([Bs, np.full_like(Bs, S), np.full_like(Bs, d)], axis=1))
    return np.concatenate(rows)


def iter_valid(n: int) -> Iterator[HCCSParams]:
    for B, S, D in valid_region(n):
        yield HCCSParams(int(B), int(S), int(D))


# ---------------------------------------------------------------------------------------------
# input checks shared by the numpy and torch paths


def _is_torch(x) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def _row_mask(shape: tuple, mask=None, valid_len=None, like=None):
    """Normalise `mask` / `valid_len` to a boolean mask of `shape` (None when nothing is masked)."""
    if mask is not None and valid_len is not None:
        raise ValueError("pass either mask or valid_len, not both")
    n = shape[-1]
    if valid_len is not None:
        vl = valid_len.detach().cpu().numpy() if _is_torch(valid_len) else np.asarray(valid_len)
        if tuple(vl.shape) != tuple(shape[:-1]):
            raise ValueError(f"valid_len has shape {tuple(vl.shape)}, expected the leading shape {tuple(shape[:-1])}")
        if not np.issubdtype(vl.dtype, np.integer):
            raise TypeError(f"valid_len must hold integers (keys per row), got dtype {vl.dtype}")
        if vl.size and (vl.min() < 0 or vl.max() > n):
            raise ValueError(f"valid_len must lie in [0, {n}] (the row length), got values in [{vl.min()}, {vl.max()}]")
        keep = np.arange(n) < vl[..., None]
        return torch.as_tensor(keep, device=like.device) if _is_torch(like) else keep
    if mask is None:
        return None
    if _is_torch(like):
        mask = torch.as_tensor(mask, device=like.device)
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be boolean (True = key takes part), got {mask.dtype}")
        try:
            return torch.broadcast_to(mask, shape) if tuple(mask.shape) != tuple(shape) else mask
        except RuntimeError:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the logits' shape {tuple(shape)}") from None
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise TypeError(f"mask must be boolean (True = key takes part), got {mask.dtype}")
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(f"mask of shape {mask.shape} does not broadcast to the logits' shape {shape}") from None


def check_finite(logits, what: str = "logits") -> None:
    """Raise ValueError naming how many rows hold NaN or inf."""
    if _is_torch(logits):
        bad = ~torch.isfinite(logits.detach())
        if bool(bad.any()):
            rows = int(bad.reshape(-1, logits.shape[-1]).any(-1).sum())
            raise ValueError(f"{what} contain NaN or inf in {rows} row(s); clean or mask them first")
        return
    bad = ~np.isfinite(logits)
    if bad.any():
        rows = int(bad.reshape(-1, logits.shape[-1]).any(-1).sum())
        raise ValueError(f"{what} contain NaN or inf in {rows} row(s); clean or mask them first")


def _check_rows(x, what: str):
    if x.ndim < 1:
        raise ValueError(f"{what} must have at least one axis (the keys), got a scalar")
    if x.shape[-1] == 0:
        raise ValueError(f"{what} have an empty last axis: a row needs at least one key")


# ---------------------------------------------------------------------------------------------
# the integer reference


def hccs_int(x, params: HCCSParams, out: str = "i16", recip: str = "div", mask=None, valid_len=None) -> np.ndarray:
    """HCCS exactly as DESIGN.md defines it, on int8 rows `x` [..., n]; int16 or uint8 out.

    `out` is "i16" (Q15 int16) or "u8"; `recip` is "div" (exact integer division) or "clb" (a
    shift by floor(log2 Z), up to 2x over). Vectorised over all leading axes. `mask` (boolean,
    broadcasting to x) or `valid_len` (integers in [0, n], shape x.shape[:-1]) marks the keys
    that take part; the others get 0 and are left out of the max and of Z, and an all-masked row
    is all zeros. Anything but a numpy int8 `x` is a TypeError: quantize first (quantize_logits).
    """
    if out not in OUT_KINDS:
        raise ValueError(f"out must be one of {OUT_KINDS}, got {out!r}")
    if recip not in RECIP_KINDS:
        raise ValueError(f"recip must be one of {RECIP_KINDS}, got {recip!r}")
    if not isinstance(params, HCCSParams):
        raise TypeError(f"params must be HCCSParams, got {type(params).__name__}")
    if _is_torch(x):
        raise TypeError("hccs_int takes a numpy int8 array (use hccs_float for torch tensors)")
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise TypeError(f"hccs_int takes int8 logits, got dtype {x.dtype}; quantize first with quantize_logits")
    _check_rows(x, "x")
    n = x.shape[-1]
    params.validate(n)
    m = _row_mask(x.shape, mask, valid_len)

    rows = x.reshape(-1, n)
    mrows = None if m is None else np.ascontiguousarray(m).reshape(-1, n)
    res = np.empty(rows.shape, np.int16 if out == "i16" else np.uint8)
    kernel = _RowKernel(params, n, out, recip)
    step = max(1, _CHUNK_ELEMS // n)
    for r0 in range(0, rows.shape[0], step):
        sl = slice(r0, r0 + step)
        kernel(rows[sl], None if mrows is None else mrows[sl], res[sl])
    return res.reshape(x.shape)


# Rows are processed in chunks whose temporaries stay in the L2 cache.
_CHUNK_ELEMS = 1 << 16


class _RowKernel:
    """hccs_int on a chunk of rows [r, n], written into `res`, with the narrowest exact dtypes.

    The whole row depends on the key distances d = min(m - x, D) in [0, D] (uint8) and on one
    per-row reciprocal rho, so p = s*rho = B*rho - (S*rho)*d with two per-row constants:

    * Z = nv*B - S*sum(d) over the nv valid keys; S*sum(d) <= n*B <= 32767, so an int16 sum of d is
      exact whenever S >= 1 (and with S = 0 the sum is not needed);
    * i16+div: p = s*rho <= Z*rho <= 32767, so int16 arithmetic is exact (S*rho <= B*rho when D >= 1);
    * i16+clb: s*rho < 2**(k+1) * 32767/2**k < 65535, exact in uint16, then saturated to 32767;
    * u8: s*rho < 255 * 2**16 needs int32, then >> 15 (and saturation to 255 for clb).
    """

    def __init__(self, params: HCCSParams, n: int, out: str, recip: str):
        self.B, self.S, self.D = params.B, params.S, params.D
        self.n, self.out, self.recip = n, out, recip
        # ufuncs with a scalar operand miss numpy's SIMD loops for small ints; a row-long vector hits them
        self.clip = np.full(n, self.D, np.uint8)
        self.sat16 = np.full(n, INT16_MAX, np.uint16)
        self.sat8 = np.full(n, 255, np.int32)

    def __call__(self, x: np.ndarray, m, res: np.ndarray) -> None:
        B, S, n = self.B, self.S, self.n
        if m is None:
            mx = x.max(axis=-1, keepdims=True)
            nv = n
        else:
            mx = np.where(m, x, np.int8(-128)).max(axis=-1, keepdims=True)
            nv = m.sum(axis=-1, keepdims=True, dtype=np.int64)
        # m - x in the unsigned 8-bit domain: the wrapped uint8 difference is the true distance in [0, 255]
        d = mx.view(np.uint8) - x.view(np.uint8)
        np.minimum(d, self.clip, out=d)
        if m is not None:
            d *= m  # masked keys: d = 0 so they drop out of sum(d); their output is zeroed below
        if S and self.D:
            Z = nv * B - S * d.sum(axis=-1, keepdims=True, dtype=np.int16).astype(np.int64)
        else:
            Z = np.broadcast_to(np.asarray(nv * B, dtype=np.int64), (x.shape[0], 1))
        rho = _reciprocal(Z, self.out, self.recip)  # int64 [r, 1]; 0 for all-masked rows (Z = 0)
        a = B * rho
        c = S * rho if self.D else np.zeros_like(rho)
        if self.out == "i16" and self.recip == "div":
            t = d.astype(np.int16)
            np.multiply(t, c.astype(np.int16), out=t)
            np.subtract(a.astype(np.int16), t, out=res)
        elif self.out == "i16":
            t = d.astype(np.uint16)
            np.multiply(t, c.astype(np.uint16), out=t)
            np.subtract(a.astype(np.uint16), t, out=t)
            np.minimum(t, self.sat16, out=res.view(np.uint16))
        else:
            t = d.astype(np.int32)
            np.multiply(t, c.astype(np.int32), out=t)
            np.subtract(a.astype(np.int32), t, out=t)
            np.right_shift(t, 15, out=t)
            if self.recip == "clb":
                np.minimum(t, self.sat8, out=t)
            res[...] = t
        if m is not None:
            res *= m


def _reciprocal(Z: np.ndarray, out: str, recip: str) -> np.ndarray:
    """Per-row rho of DESIGN.md as int64 (0 where Z = 0, i.e. all-masked rows)."""
    empty = Z == 0  # only all-masked rows: otherwise the max key alone scores B >= 1
    Zs = np.where(empty, 1, Z)
    if recip == "div":
        rho = (INT16_MAX if out == "i16" else U8_NUMER) // Zs
    else:
        k = _floor_log2(Zs)
        rho = (INT16_MAX >> k) if out == "i16" else (255 << (15 - k))
    return np.where(empty, 0, rho).astype(np.int64)


def _floor_log2(Z: np.ndarray) -> np.ndarray:
    """floor(log2 Z) for 1 <= Z < 2**31, exact in integers (what count-leading-bits gives: 31 - clb)."""
    _, e = np.frexp(Z.astype(np.float64))  # Z = f * 2**e with f in [0.5, 1); exact for int32
    return (e - 1).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# quantisation of real logits to the int8 grid


def quantize_logits(logits, scale, mask=None, center: bool = True) -> np.ndarray:
    """Float logits -> int8 (round half to even, saturate to [-128, 127]).

    With `center` (the default) each row is first shifted so that its max lands on 127: HCCS only
    sees distances m - x, so the shift changes nothing for HCCS or softmax, and it keeps the top of
    the row from saturating; saturation then only touches keys 255 steps or more below the max,
    which every D <= 127 clips anyway. `scale` is one step of the int8 grid in logit units (a float,
    or an array broadcasting against the leading axes, e.g. one scale per head).
    """
    if _is_torch(logits):
        logits = logits.detach().cpu().numpy()
    logits = np.asarray(logits)
    if not np.issubdtype(logits.dtype, np.floating):
        raise TypeError(f"quantize_logits takes float logits, got dtype {logits.dtype}")
    _check_rows(logits, "logits")
    m = _row_mask(logits.shape, mask)
    check_finite(logits if m is None else np.where(m, logits, 0.0))
    scale = np.asarray(scale, dtype=np.float64)
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise ValueError(f"scale must be finite and > 0, got {scale}")
    x = logits.astype(np.float64)
    if center:
        x = x - _masked_max(x, m) + 127.0 * (scale if scale.ndim == 0 else scale[..., None])
    q = np.clip(np.rint(x / (scale if scale.ndim == 0 else scale[..., None])), -128, 127)
    if m is not None:
        q = np.where(m, q, -128)
    return q.astype(np.int8)


def _masked_max(x: np.ndarray, m) -> np.ndarray:
    if m is None:
        return x.max(axis=-1, keepdims=True)
    mx = np.where(m, x, -np.inf).max(axis=-1, keepdims=True)
    return np.where(np.isfinite(mx), mx, 0.0)


def choose_scale(logits, mask=None, percentile: float | None = 99.0, target: float = 127.0) -> float:
    """A per-head int8 scale from max-centered logits: their `percentile` (or max, if None) -> `target` steps.

    With the default the 99th percentile of distances below the row max spans 127 steps, the whole
    range a clip D <= 127 can use; the rare far-out keys beyond it are clipped by D anyway.
    """
    x = logits.detach().cpu().numpy() if _is_torch(logits) else np.asarray(logits, dtype=np.float64)
    _check_rows(x, "logits")
    m = _row_mask(x.shape, mask)
    check_finite(x if m is None else np.where(m, x, 0.0))
    dist = _masked_max(x, m) - x
    dist = dist[m] if m is not None else dist.ravel()
    if dist.size == 0:
        raise ValueError("no unmasked logits to choose a scale from")
    spread = float(dist.max() if percentile is None else np.percentile(dist, percentile))
    if spread <= 0:  # every row is flat: any scale is exact, pick one step per logit unit
        return 1.0
    return spread / target


# ---------------------------------------------------------------------------------------------
# the real-valued reading and the softmax reference (numpy or torch in, same kind out)


def _params_tuple(params):
    if isinstance(params, HCCSParams):
        return params.B, params.S, params.D
    try:
        B, S, D = params
    except (TypeError, ValueError):
        raise TypeError("params must be HCCSParams or a (B, S, D) triple of numbers / tensors") from None
    return B, S, D


def hccs_float(logits, params, scale, mask=None):
    """Real-valued HCCS: p_i proportional to B - S*min((m - x_i)/scale, D), normalised per row.

    `logits` is numpy or torch (float) and the result is the same kind; in torch it is
    differentiable in the logits and, when they are tensors, in B, S, D and scale (which may
    broadcast against the leading axes with a trailing singleton, e.g. shape [heads, 1, 1]).
    Masked keys get exactly 0; an all-masked row is all zeros. On int8-grid logits this equals
    `hccs_int(q, params, "i16", "div") / 32767` up to the integer floor of the reciprocal.
    """
    if not _is_torch(logits):
        logits = np.asarray(logits)
    _check_rows(logits, "logits")
    if isinstance(params, HCCSParams):
        params.validate(logits.shape[-1])
    B, S, D = _params_tuple(params)
    _check_scale(scale)
    if _is_torch(logits):
        if not logits.is_floating_point():
            raise TypeError(f"hccs_float takes float logits, got {logits.dtype}")
        m = _row_mask(tuple(logits.shape), mask, like=logits)
        lg = logits if m is None else logits.masked_fill(~m, 0.0)
        check_finite(lg)
        neg = torch.finfo(logits.dtype).min
        # no detach: the max key's logit moves every distance, and QAT needs that gradient
        mx = (lg if m is None else lg.masked_fill(~m, neg)).amax(-1, keepdim=True)
        if m is not None:
            # an all-masked row would keep the huge fill value as its max, and (max - 0)/scale could
            # reach inf, whose zeroed gradient is 0*inf = NaN for scale; its max is 0 instead
            mx = torch.where(m.any(-1, keepdim=True), mx, torch.zeros_like(mx))
        d = torch.minimum((mx - lg) / scale, torch.as_tensor(D, dtype=logits.dtype, device=logits.device))
        s = B - S * d
        if m is not None:
            s = s.masked_fill(~m, 0.0)
        Z = s.sum(-1, keepdim=True)
        return s / torch.where(Z > 0, Z, torch.ones_like(Z))
    x = logits
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"hccs_float takes float logits, got dtype {x.dtype}")
    m = _row_mask(x.shape, mask)
    check_finite(x if m is None else np.where(m, x, 0.0))
    d = np.minimum((_masked_max(x, m) - x) / np.asarray(scale), D)
    s = B - S * d
    if m is not None:
        s = np.where(m, s, 0.0)
    Z = s.sum(-1, keepdims=True)
    return (s / np.where(Z > 0, Z, 1.0)).astype(x.dtype, copy=False)


def _check_scale(scale) -> None:
    s = scale.detach().cpu().numpy() if _is_torch(scale) else np.asarray(scale, dtype=np.float64)
    if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"scale must be finite and > 0 (one int8 step in logit units), got {s}")


def softmax(logits, mask=None):
    """Softmax over the last axis with the module's masking rules (masked -> 0, all-masked row -> 0)."""
    if _is_torch(logits):
        if not logits.is_floating_point():
            raise TypeError(f"softmax takes float logits, got {logits.dtype}")
        _check_rows(logits, "logits")
        m = _row_mask(tuple(logits.shape), mask, like=logits)
        lg = logits if m is None else logits.masked_fill(~m, 0.0)
        check_finite(lg)
        if m is None:
            return torch.softmax(logits, -1)
        e = torch.exp(lg - lg.masked_fill(~m, torch.finfo(lg.dtype).min).amax(-1, keepdim=True).detach())
        e = e.masked_fill(~m, 0.0)
        Z = e.sum(-1, keepdim=True)
        return e / torch.where(Z > 0, Z, torch.ones_like(Z))
    x = np.asarray(logits)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"softmax takes float logits, got dtype {x.dtype}")
    _check_rows(x, "logits")
    m = _row_mask(x.shape, mask)
    check_finite(x if m is None else np.where(m, x, 0.0))
    e = np.exp(x - _masked_max(x, m))
    if m is not None:
        e = np.where(m, e, 0.0)
    Z = e.sum(-1, keepdims=True)
    return e / np.where(Z > 0, Z, 1.0)
