"""HCCS exactly as DESIGN.md defines it: the integer reference every other part checks against.

Calibration, retraining, the kernels and the emulator all compare themselves with `hccs_int`, so it
follows DESIGN.md literally; the reciprocal and floor(log2) live here once and the playground, the
kernels' bounds and the deployed reading use these. Masking rules: `hccs_lab.core.masks`.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError, InputTypeError
from .masks import check_rows, is_torch, row_mask, torch
from .params import FULL_SCALE, INT16_MAX, OUT_KINDS, RECIP_KINDS, U8_NUMER, HCCSParams, split_variant
from .relaxed import _check_scale, hccs_float, quantize_logits



def hccs_int(x, params: HCCSParams, out: str = "i16", recip: str = "div", mask=None, valid_len=None) -> np.ndarray:
    """HCCS exactly as DESIGN.md defines it, on int8 rows `x` [..., n]; int16 or uint8 out.

    `out` is "i16" (Q15 int16) or "u8"; `recip` is "div" (exact integer division) or "clb" (a
    shift by floor(log2 Z), up to 2x over). Vectorised over all leading axes. `mask` (boolean,
    broadcasting to x) or `valid_len` (integers in [0, n], shape x.shape[:-1]) marks the keys
    that take part; the others get 0 and are left out of the max and of Z, and an all-masked row
    is all zeros. Anything but a numpy int8 `x` is a TypeError: quantize first (quantize_logits).
    """
    if out not in OUT_KINDS:
        raise InputError(f"out must be one of {OUT_KINDS}, got {out!r}")
    if recip not in RECIP_KINDS:
        raise InputError(f"recip must be one of {RECIP_KINDS}, got {recip!r}")
    if not isinstance(params, HCCSParams):
        raise InputTypeError(f"params must be HCCSParams, got {type(params).__name__}")
    if is_torch(x):
        raise InputTypeError("hccs_int takes a numpy int8 array (use hccs_float for torch tensors)")
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise InputTypeError(f"hccs_int takes int8 logits, got dtype {x.dtype}; quantize first with quantize_logits")
    check_rows(x, "x")
    n = x.shape[-1]
    params.validate(n)
    m = row_mask(x.shape, mask, valid_len)

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
        rho = reciprocal(Z, self.out, self.recip)  # int64 [r, 1]; 0 for all-masked rows (Z = 0)
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


def reciprocal(Z, out: str, recip: str) -> np.ndarray:
    """Per-row rho of DESIGN.md as int64 (0 where Z = 0, i.e. all-masked rows).

    div: 32767 // Z (i16) or (255 << 15) // Z (u8); clb: 32767 >> floor(log2 Z) or 255 << (15 - k).
    """
    Z = np.asarray(Z)
    empty = Z == 0  # only all-masked rows: otherwise the max key alone scores B >= 1
    Zs = np.where(empty, 1, Z)
    if recip == "div":
        rho = (INT16_MAX if out == "i16" else U8_NUMER) // Zs
    else:
        k = floor_log2(Zs)
        rho = (INT16_MAX >> k) if out == "i16" else (255 << (15 - k))
    return np.where(empty, 0, rho).astype(np.int64)


def floor_log2(Z) -> np.ndarray:
    """floor(log2 Z) for 1 <= Z < 2**31, exact in integers (what count-leading-bits gives: 31 - clb)."""
    _, e = np.frexp(np.asarray(Z).astype(np.float64))  # Z = f * 2**e with f in [0.5, 1); exact for int32
    return (e - 1).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# the deployed reading: what the kernel of one variant outputs, as probabilities

PADDINGS = ("exclude", "as_min")


def hccs_deployed(logits, params, scale, variant: str, mask=None, padding: str = "exclude"):
    """The exact output of a deployed integer kernel, read as probabilities (DESIGN.md's contract).

    Forward: `hccs_int(quantize_logits(logits, scale, mask), params, out, recip, mask=mask if
    padding == "exclude" else None) / full_scale(out)`. `padding="exclude"` is a kernel that takes
    the mask (ours, with a per-row valid length: masked keys get 0); `"as_min"` a kernel without one
    (aie4ml): masked keys enter as int8 -128 and take part in the max and in Z like any key, and get
    their share. `variant` is one of i16-div | u8-div | i16-clb | u8-clb.

    `params` is an HCCSParams, or (B, S, D) as `hccs_float` takes them: numbers, or per-head arrays
    / tensors of shape [H, 1, 1] (or [H]) for logits [..., H, Lq, Lk], integer-valued. `scale` is a
    float or broadcasts against the logits with a trailing singleton (e.g. [H, 1, 1]), as for
    `hccs_float`. Vectorised over rows; one `hccs_int` call per distinct parameter set.

    numpy in: an array of the logits' float dtype. torch in: a tensor of the logits' dtype and
    device whose forward is exactly the integer output and whose backward is straight-through: the
    gradient of `hccs_float(logits, params, scale, mask)` (the real-valued reading), so QAT trains
    against what ships.
    """
    o, r = split_variant(variant)
    if padding not in PADDINGS:
        raise InputError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    if is_torch(logits):
        return _deployed_torch(logits, params, scale, o, r, mask, padding)
    x = np.asarray(logits)
    if not np.issubdtype(x.dtype, np.floating):
        raise InputTypeError(f"hccs_deployed takes float logits, got dtype {x.dtype}")
    check_rows(x, "logits")
    groups = _head_groups(params, x.shape)
    mask = mask.detach().cpu().numpy() if is_torch(mask) else mask
    m = row_mask(x.shape, mask)
    q = _quantize_in_chunks(x, _leading_scale(scale), m)
    keep = m if padding == "exclude" else None
    if keep is not None and np.ndim(mask) >= 3 and np.shape(mask)[-3] == 1:
        keep = np.asarray(mask)  # one mask for every head: hccs_int broadcasts it, no per-head copies
    # k / 32767 (or / 255) in float32 equals the float64 quotient rounded to float32 (53 >= 2*24 + 2 bits)
    p = np.empty(x.shape, x.dtype if x.dtype.itemsize >= 4 else np.float64)
    for prm, heads in groups:
        if heads is None:
            p[...] = hccs_int(q, prm, o, r, mask=keep)
        else:
            hm = None if keep is None else keep if keep.shape[-3] == 1 else keep[..., heads, :, :]
            p[..., heads, :, :] = hccs_int(q[..., heads, :, :], prm, o, r, mask=hm)
    p /= p.dtype.type(FULL_SCALE[o])
    return p.astype(x.dtype, copy=False)


def _deployed_torch(logits, params, scale, out: str, recip: str, mask, padding: str):
    """hccs_deployed for a torch tensor: the same checks and numbers, computed in torch (`deployed_torch`)."""
    from . import deployed_torch as dt

    if not logits.is_floating_point():
        raise InputTypeError(f"hccs_deployed takes float logits, got dtype {logits.dtype}")
    check_rows(logits, "logits")
    n = logits.shape[-1]
    for prm, _ in _head_groups(params, tuple(logits.shape)):  # integer-valued, one set or one per head
        prm.validate(n)
    B, S, D = (_int_param(v, logits) for v in _params_of(params))
    _check_scale(scale)
    s = np.asarray(scale.detach().cpu().numpy() if is_torch(scale) else scale, dtype=np.float64)
    _leading_scale(s)  # the shape rule: a float, or a trailing singleton
    scale64 = torch.as_tensor(s, dtype=torch.float64, device=logits.device)
    m = _torch_mask(mask, logits)
    value = dt.deployed_forward(logits, B, S, D, scale64, out, recip, m, padding == "exclude")
    if not (torch.is_grad_enabled() and _needs_grad(logits, params, scale)):
        return value
    relaxed_args = tuple(_params_of(params)) + (scale,)
    if all(is_torch(t) and t.dtype == logits.dtype and not t.requires_grad for t in relaxed_args):
        return dt.straight_through(logits, value, m, *relaxed_args)  # hccs_float's gradient, block by block
    relaxed = hccs_float(logits, params, scale, mask=mask)  # the parameters learn too: plain autograd
    return value + (relaxed - relaxed.detach())  # exactly `value` forward (x - x == 0), hccs_float's gradient back


def _params_of(params) -> tuple:
    return (params.B, params.S, params.D) if isinstance(params, HCCSParams) else tuple(params)


def _int_param(v, like):
    """One of B, S, D as an int32 tensor broadcasting against logits [..., H, Lq, Lk] (checked integral already)."""
    t = torch.as_tensor(v.detach() if is_torch(v) else np.asarray(v, dtype=np.float64), device=like.device)
    t = torch.round(t.to(torch.float64)).to(torch.int32).reshape(-1)
    return t[0] if t.numel() == 1 else t.view(-1, 1, 1)


def _torch_mask(mask, like):
    """The mask as a torch bool tensor with the logits' number of axes (leading singletons), or None."""
    if mask is None:
        return None
    m = torch.as_tensor(mask.detach() if is_torch(mask) else np.asarray(mask), device=like.device)
    if m.dtype != torch.bool:
        raise InputTypeError(f"mask must be boolean (True = key takes part), got {m.dtype}")
    try:
        fits = m.ndim <= like.ndim and torch.broadcast_shapes(tuple(m.shape), tuple(like.shape)) == like.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise InputError(f"mask of shape {tuple(m.shape)} does not broadcast to the logits' shape {tuple(like.shape)}")
    return m.reshape((1,) * (like.ndim - m.ndim) + tuple(m.shape))


# quantize_logits works row by row; calls on blocks of this many elements keep its float64 temporaries in cache
_QUANT_CHUNK_ELEMS = 1 << 14


def _quantize_in_chunks(x: np.ndarray, scale: np.ndarray, m) -> np.ndarray:
    """`quantize_logits(x, scale, mask=m)`, computed on blocks of rows (the same numbers, about 3x faster)."""
    n = x.shape[-1]
    rows = x.reshape(-1, n)
    lead = x.shape[:-1]
    sc = scale if scale.ndim == 0 else np.broadcast_to(scale, lead).reshape(-1)
    mr = None if m is None else np.broadcast_to(m, x.shape).reshape(-1, n)
    q = np.empty(rows.shape, np.int8)
    step = max(1, _QUANT_CHUNK_ELEMS // n)
    for i in range(0, rows.shape[0], step):
        sl = slice(i, i + step)
        q[sl] = quantize_logits(rows[sl], sc if sc.ndim == 0 else sc[sl], mask=None if mr is None else mr[sl])
    return q.reshape(x.shape)


def _needs_grad(logits, params, scale) -> bool:
    parts = [logits, scale] + ([] if isinstance(params, HCCSParams) else list(params))
    return any(is_torch(t) and t.requires_grad for t in parts)


def _leading_scale(scale):
    """hccs_float's scale (broadcasting against the logits, trailing singleton) -> quantize_logits' (leading axes)."""
    s = scale.detach().cpu().numpy() if is_torch(scale) else np.asarray(scale, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    if s.ndim == 0:
        return s
    if s.shape[-1] != 1:
        raise InputError(f"scale of shape {s.shape} must broadcast against the logits with a trailing singleton "
                         "(one scale per row, e.g. [H, 1, 1] for per-head scales)")
    return s[..., 0]


def _head_groups(params, shape: tuple) -> list:
    """[(HCCSParams, head indices or None for all)]: heads that share one parameter set are run together."""
    if isinstance(params, HCCSParams):
        return [(params, None)]
    try:
        B, S, D = params
    except (TypeError, ValueError):
        raise InputTypeError("params must be HCCSParams or a (B, S, D) triple of numbers / per-head tensors") from None
    cols = []
    for name, v in zip("BSD", (B, S, D)):
        a = np.asarray(v.detach().cpu().numpy() if is_torch(v) else v, dtype=np.float64).reshape(-1)
        if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise InputError(f"{name} must hold integers (the deployed kernel's parameters), got {a}")
        cols.append(a.astype(np.int64))
    H = max(c.size for c in cols)
    if any(c.size not in (1, H) for c in cols):
        raise InputError(f"B, S, D hold {[c.size for c in cols]} values: give one per head, or one for all")
    cols = [np.broadcast_to(c, (H,)) for c in cols]
    if all(np.all(c == c[0]) for c in cols):
        return [(HCCSParams(int(cols[0][0]), int(cols[1][0]), int(cols[2][0])), None)]
    if len(shape) < 3 or shape[-3] != H:
        raise InputError(f"{H} per-head parameter sets need logits [..., {H}, Lq, Lk], got shape {tuple(shape)}")
    groups: dict = {}
    for h in range(H):
        groups.setdefault((int(cols[0][h]), int(cols[1][h]), int(cols[2][h])), []).append(h)
    return [(HCCSParams(*k), hs) for k, hs in groups.items()]
