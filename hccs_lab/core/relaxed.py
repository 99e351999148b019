"""The real-valued side of HCCS: int8 quantization of logits, the differentiable reading, softmax.

Numpy or torch in, the same kind out. `hccs_float` is what gradients flow through (QAT, the
gradient calibration); on int8-grid logits it equals `hccs_int(q, params, "i16", "div") / 32767`
up to the floor of the reciprocal. Masking rules: `hccs_lab.core.masks`.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError, InputTypeError
from .masks import check_finite, check_rows, float_rows, is_torch, masked_max, row_mask, torch
from .params import HCCSParams



def quantize_logits(logits, scale, mask=None, center: bool = True) -> np.ndarray:
    """Float logits -> int8 (round half to even, saturate to [-128, 127]).

    With `center` (the default) each row is first shifted so that its max lands on 127: HCCS only
    sees distances m - x, so the shift changes nothing for HCCS or softmax, and it keeps the top of
    the row from saturating; saturation then only touches keys 255 steps or more below the max,
    which every D <= 127 clips anyway. `scale` is one step of the int8 grid in logit units (a float,
    or an array broadcasting against the leading axes, e.g. one scale per head).
    """
    if is_torch(logits):
        logits = logits.detach().cpu().numpy()
    logits, m = float_rows(logits, mask, "quantize_logits")
    scale = np.asarray(scale, dtype=np.float64)
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise InputError(f"scale must be finite and > 0, got {scale}")
    x = logits.astype(np.float64)
    if center:
        x = x - masked_max(x, m) + 127.0 * (scale if scale.ndim == 0 else scale[..., None])
    q = np.clip(np.rint(x / (scale if scale.ndim == 0 else scale[..., None])), -128, 127)
    if m is not None:
        q = np.where(m, q, -128)
    return q.astype(np.int8)


def choose_scale(logits, mask=None, percentile: float | None = 99.0, target: float = 127.0) -> float:
    """A per-head int8 scale from max-centered logits: their `percentile` (or max, if None) -> `target` steps.

    With the default the 99th percentile of distances below the row max spans 127 steps, the whole
    range a clip D <= 127 can use; the rare far-out keys beyond it are clipped by D anyway.
    """
    x = logits.detach().cpu().numpy() if is_torch(logits) else np.asarray(logits, dtype=np.float64)
    x, m = float_rows(x, mask, "choose_scale")
    dist = masked_max(x, m) - x
    dist = dist[m] if m is not None else dist.ravel()
    if dist.size == 0:
        raise InputError("no unmasked logits to choose a scale from")
    spread = float(dist.max() if percentile is None else np.percentile(dist, percentile))
    if spread <= 0:  # every row is flat: any scale is exact, pick one step per logit unit
        return 1.0
    return spread / target


def _params_tuple(params):
    if isinstance(params, HCCSParams):
        return params.B, params.S, params.D
    try:
        B, S, D = params
    except (TypeError, ValueError):
        raise InputTypeError("params must be HCCSParams or a (B, S, D) triple of numbers / tensors") from None
    return B, S, D


def hccs_float(logits, params, scale, mask=None):
    """Real-valued HCCS: p_i proportional to B - S*min((m - x_i)/scale, D), normalised per row.

    `logits` is numpy or torch (float) and the result is the same kind; in torch it is
    differentiable in the logits and, when they are tensors, in B, S, D and scale (which may
    broadcast against the leading axes with a trailing singleton, e.g. shape [heads, 1, 1]).
    Masked keys get exactly 0; an all-masked row is all zeros. On int8-grid logits this equals
    `hccs_int(q, params, "i16", "div") / 32767` up to the integer floor of the reciprocal.
    """
    if not is_torch(logits):
        logits = np.asarray(logits)
    check_rows(logits, "logits")
    if isinstance(params, HCCSParams):
        params.validate(logits.shape[-1])
    B, S, D = _params_tuple(params)
    _check_scale(scale)
    if is_torch(logits):
        if not logits.is_floating_point():
            raise InputTypeError(f"hccs_float takes float logits, got {logits.dtype}")
        m = row_mask(tuple(logits.shape), mask, like=logits)
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
    x, m = float_rows(logits, mask, "hccs_float")
    d = np.minimum((masked_max(x, m) - x) / np.asarray(scale), D)
    s = B - S * d
    if m is not None:
        s = np.where(m, s, 0.0)
    Z = s.sum(-1, keepdims=True)
    return (s / np.where(Z > 0, Z, 1.0)).astype(x.dtype, copy=False)


def _check_scale(scale) -> None:
    s = scale.detach().cpu().numpy() if is_torch(scale) else np.asarray(scale, dtype=np.float64)
    if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise InputError(f"scale must be finite and > 0 (one int8 step in logit units), got {s}")


def softmax(logits, mask=None):
    """Softmax over the last axis with the module's masking rules (masked -> 0, all-masked row -> 0)."""
    if is_torch(logits):
        if not logits.is_floating_point():
            raise InputTypeError(f"softmax takes float logits, got {logits.dtype}")
        check_rows(logits, "logits")
        m = row_mask(tuple(logits.shape), mask, like=logits)
        lg = logits if m is None else logits.masked_fill(~m, 0.0)
        check_finite(lg)
        if m is None:
            return torch.softmax(logits, -1)
        e = torch.exp(lg - lg.masked_fill(~m, torch.finfo(lg.dtype).min).amax(-1, keepdim=True).detach())
        e = e.masked_fill(~m, 0.0)
        Z = e.sum(-1, keepdim=True)
        return e / torch.where(Z > 0, Z, torch.ones_like(Z))
    x, m = float_rows(logits, mask, "softmax")
    e = np.exp(x - masked_max(x, m))
    if m is not None:
        e = np.where(m, e, 0.0)
    Z = e.sum(-1, keepdims=True)
    return e / np.where(Z > 0, Z, 1.0)
