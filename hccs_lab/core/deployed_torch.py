"""`hccs_deployed` on torch tensors, computed in torch: the same integers as the numpy reference.

QAT and every accuracy run the deployed kernel in each attention layer of each step, so a round
trip through numpy (single-threaded, one `hccs_int` call per parameter set, float64 temporaries the
size of the logits) used to cost more than the layer's matmuls. Here every head runs at once with
its parameters broadcast as [H, 1, 1] integer tensors, on blocks of sentences small enough to stay
in cache. The numbers are the reference's by construction, step for step: quantisation in float64
with numpy's order of operations, the integer arithmetic in int32 (every intermediate fits: see
`reference._RowKernel`), the division by the full scale in the same float dtype. The tests hold the
two bit for bit.

Straight-through backward (`_StraightThrough`): the gradient of `hccs_float`, written out as the
chain autograd builds for `hccs_float`'s torch code (each op's own backward formula, in its order),
so it is that gradient bit for bit, computed block by block from the saved logits instead of from
a dozen full-size saved intermediates.
"""
from __future__ import annotations

import torch

from .masks import nonfinite_error
from .params import FULL_SCALE, INT16_MAX, U8_NUMER

# elements per block of sentences: float64 temporaries of this many elements stay in L2/L3
_BLOCK_ELEMS = 1 << 17


def blocks(x: torch.Tensor, *masks):
    """(slice, x block, mask blocks...) over the first axis of 4-D logits [N, H, Lq, Lk]; else one block."""
    if x.ndim != 4 or x.shape[0] <= 1:
        yield (slice(None), x, *masks)
        return
    step = max(1, _BLOCK_ELEMS // max(1, x[0].numel()))
    for i in range(0, x.shape[0], step):
        sl = slice(i, i + step)
        yield (sl, x[sl], *(None if m is None else m[sl] if m.shape[0] != 1 else m for m in masks))


def quantize_block(x: torch.Tensor, m, scale64) -> torch.Tensor:
    """`relaxed.quantize_logits` (centred) in torch: int32 values in [-128, 127], -128 where masked."""
    x64 = x.to(torch.float64)
    if m is None:
        mx = x64.amax(-1, keepdim=True)
    else:
        mx = x64.masked_fill(~m, float("-inf")).amax(-1, keepdim=True)
        mx = torch.where(torch.isfinite(mx), mx, torch.zeros((), dtype=torch.float64))
    q = torch.round(((x64 - mx) + 127.0 * scale64) / scale64).clamp_(-128, 127)
    if m is not None:
        q = q.masked_fill_(~m, -128)
    return q.to(torch.int32)


def kernel_block(q: torch.Tensor, keep, B, S, D, out: str, recip: str) -> torch.Tensor:
    """`reference.hccs_int` on int32 rows in torch (B, S, D: int32 tensors broadcasting as [H, 1, 1])."""
    n = q.shape[-1]
    mq = q.amax(-1, keepdim=True)  # masked keys hold -128, so this is the max of the valid keys
    d = torch.minimum(mq - q, D)
    if keep is None:
        nv = n
    else:
        d = d.masked_fill(~keep, 0)
        nv = keep.sum(-1, keepdim=True, dtype=torch.int32)
    Z = nv * B - S * d.sum(-1, keepdim=True, dtype=torch.int32)
    empty = Z == 0  # only all-masked rows
    Zs = torch.where(empty, 1, Z)
    if recip == "div":
        rho = torch.div(INT16_MAX if out == "i16" else U8_NUMER, Zs, rounding_mode="floor")
    else:
        k = torch.frexp(Zs.to(torch.float64))[1] - 1  # floor(log2 Z), exact for Z < 2**31
        top = torch.full_like(Zs, INT16_MAX if out == "i16" else 255)
        rho = torch.bitwise_right_shift(top, k) if out == "i16" else torch.bitwise_left_shift(top, 15 - k)
    rho = torch.where(empty, 0, rho).to(torch.int32)
    p = B * rho - (S * rho) * d
    if out == "i16" and recip == "clb":
        p = torch.clamp_max(p, INT16_MAX)
    elif out == "u8":
        p = torch.bitwise_right_shift(p, 15)
        if recip == "clb":
            p = torch.clamp_max(p, 255)
    if keep is not None:
        p = p.masked_fill(~keep, 0)
    return p


def deployed_forward(logits: torch.Tensor, B, S, D, scale64, out: str, recip: str, mask, exclude: bool):
    """The deployed output as probabilities, dtype of `logits`; B, S, D int32, scale64 float64 tensors."""
    work = logits.dtype if logits.element_size() >= 4 else torch.float64
    res = torch.empty(logits.shape, dtype=work, device=logits.device)
    full = torch.tensor(FULL_SCALE[out], dtype=work)
    bad_rows = 0
    with torch.no_grad():
        for sl, x, m in blocks(logits.detach(), mask):
            bad = ~torch.isfinite(x) if m is None else ~torch.isfinite(x) & m
            if bool(bad.any()):  # the reference's check, on the keys that take part
                bad_rows += int(bad.reshape(-1, x.shape[-1]).any(-1).sum())
            if bad_rows:
                continue
            q = quantize_block(x, m, scale64)
            res[sl] = kernel_block(q, m if exclude else None, B, S, D, out, recip).to(work) / full
    if bad_rows:
        raise nonfinite_error(bad_rows)
    return res.to(logits.dtype)


def relaxed_grad_block(g, lg0, m, B, S, D, scale):
    """d(sum g * hccs_float(lg0))/d lg0, op for op as autograd differentiates hccs_float's torch code."""
    # forward, as hccs_float computes it
    lg = lg0 if m is None else lg0.masked_fill(~m, 0.0)
    lgf = lg if m is None else lg.masked_fill(~m, torch.finfo(lg.dtype).min)
    mx_raw = lgf.amax(-1, keepdim=True)
    if m is not None:
        anym = m.any(-1, keepdim=True)
        mx = torch.where(anym, mx_raw, torch.zeros_like(mx_raw))
    else:
        mx = mx_raw
    u = (mx - lg) / scale
    Dt = torch.as_tensor(D, dtype=lg.dtype)
    d = torch.minimum(u, Dt)
    s = B - S * d
    if m is not None:
        s = s.masked_fill(~m, 0.0)
    Z = s.sum(-1, keepdim=True)
    pos = Z > 0
    Zs = torch.where(pos, Z, torch.ones_like(Z))
    # backward: p = s / Zs
    gs = g / Zs
    gZs = (-g * ((s / Zs) / Zs)).sum(-1, keepdim=True)
    gZ = torch.where(pos, gZs, torch.zeros((), dtype=g.dtype))
    gs = gs + gZ  # Z = s.sum(-1): its gradient comes back to every key
    if m is not None:
        gs = gs.masked_fill(~m, 0.0)
    gd = (-gs) * S
    gu = torch.where(u == Dt, gd / 2, gd).masked_fill_(u > Dt, 0)
    gdiff = gu / scale
    gmx = gdiff.sum(-1, keepdim=True)
    glg = -gdiff
    if m is not None:
        gmx = torch.where(anym, gmx, torch.zeros((), dtype=g.dtype))
    at_max = lgf == mx_raw
    gmax = (gmx / at_max.sum(-1, keepdim=True)) * at_max
    if m is not None:
        gmax = gmax.masked_fill(~m, 0.0)
    glg = glg + gmax
    if m is not None:
        glg = glg.masked_fill(~m, 0.0)
    return glg


class _StraightThrough(torch.autograd.Function):
    """Forward: the deployed integer output (computed by the caller); backward: hccs_float's gradient."""

    @staticmethod
    def forward(ctx, logits, value, mask, B, S, D, scale):
        ctx.save_for_backward(logits)
        ctx.rest = (mask, B, S, D, scale)
        return value

    @staticmethod
    def backward(ctx, g):
        (logits,) = ctx.saved_tensors
        mask, B, S, D, scale = ctx.rest
        grad = torch.empty_like(logits)
        for sl, x, m in blocks(logits, mask):
            grad[sl] = relaxed_grad_block(g[sl], x, m, B, S, D, scale)
        return grad, None, None, None, None, None, None


def straight_through(logits, value, mask, B, S, D, scale):
    """`value` forward, the gradient of `hccs_float(logits, (B, S, D), scale, mask)` backward.

    B, S, D, scale: tensors of the logits' dtype broadcasting as [H, 1, 1]; mask boolean (broadcasting) or None.
    """
    return _StraightThrough.apply(logits, value, mask, B, S, D, scale)
