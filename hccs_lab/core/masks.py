"""Key masks and the input checks every numeric function shares (numpy and torch).

Masking rules, the same everywhere in hccs_lab:

* a mask is boolean `[..., n]`, True where the key takes part (a valid length per row is the same
  thing written as `arange(n) < valid_len[..., None]`);
* masked keys get exactly 0 and take no part in the max or the normaliser;
* a row whose keys are *all* masked is defined to be all zeros (no probability mass at all), so
  padded query rows never produce NaN.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError, InputTypeError

try:  # torch is a hard dependency of the package, but keep the numpy path importable without it
    import torch
except ImportError:  # pragma: no cover
    torch = None


def is_torch(x) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def check_mask(mask, shape: tuple, exact: bool = False) -> np.ndarray:
    """A numpy boolean mask broadcast to `shape` (or equal to it with `exact`), else a clear error."""
    mask = np.asarray(mask.detach().cpu().numpy() if is_torch(mask) else mask)
    if mask.dtype != np.bool_:
        raise InputTypeError(f"mask must be boolean (True = key takes part), got dtype {mask.dtype}")
    if exact:
        if mask.shape != tuple(shape):
            raise InputError(f"mask shape {mask.shape} differs from the logits' shape {tuple(shape)}")
        return mask
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise InputError(f"mask of shape {mask.shape} does not broadcast to the rows' shape {tuple(shape)}") from None


def valid_len_mask(valid_len, shape: tuple) -> np.ndarray:
    """`arange(n) < valid_len[..., None]`, after checking shape, dtype and range of `valid_len`."""
    n = shape[-1]
    vl = valid_len.detach().cpu().numpy() if is_torch(valid_len) else np.asarray(valid_len)
    if tuple(vl.shape) != tuple(shape[:-1]):
        raise InputError(f"valid_len has shape {tuple(vl.shape)}, expected the leading shape {tuple(shape[:-1])}")
    if not np.issubdtype(vl.dtype, np.integer):
        raise InputTypeError(f"valid_len must hold integers (keys per row), got dtype {vl.dtype}")
    if vl.size and (vl.min() < 0 or vl.max() > n):
        raise InputError(f"valid_len must lie in [0, {n}] (the row length), got values in [{vl.min()}, {vl.max()}]")
    return np.arange(n) < vl[..., None]


def row_mask(shape: tuple, mask=None, valid_len=None, like=None):
    """Normalise `mask` / `valid_len` to a boolean mask of `shape` (None when nothing is masked).

    With a torch tensor `like`, the mask comes back as a torch bool tensor on its device.
    """
    if mask is not None and valid_len is not None:
        raise InputError("pass either mask or valid_len, not both")
    if valid_len is not None:
        keep = valid_len_mask(valid_len, shape)
        return torch.as_tensor(keep, device=like.device) if is_torch(like) else keep
    if mask is None:
        return None
    if is_torch(like):
        mask = torch.as_tensor(mask, device=like.device)
        if mask.dtype != torch.bool:
            raise InputTypeError(f"mask must be boolean (True = key takes part), got {mask.dtype}")
        try:
            return torch.broadcast_to(mask, shape) if tuple(mask.shape) != tuple(shape) else mask
        except RuntimeError:
            raise InputError(f"mask of shape {tuple(mask.shape)} does not broadcast to the logits' shape {tuple(shape)}") from None
    return check_mask(mask, shape)


def check_finite(logits, what: str = "logits") -> None:
    """Raise InputError naming how many rows hold NaN or inf."""
    bad = ~torch.isfinite(logits.detach()) if is_torch(logits) else ~np.isfinite(logits)
    if bool(bad.any()):
        raise nonfinite_error(int(bad.reshape(-1, logits.shape[-1]).any(-1).sum()), what)


def nonfinite_error(rows: int, what: str = "logits") -> InputError:
    """The error for `rows` rows holding NaN or inf among the keys that take part."""
    return InputError(f"{what} contain NaN or inf in {rows} row(s); clean or mask them first")


def check_rows(x, what: str) -> None:
    if x.ndim < 1:
        raise InputError(f"{what} must have at least one axis (the keys), got a scalar")
    if x.shape[-1] == 0:
        raise InputError(f"{what} have an empty last axis: a row needs at least one key")


def masked_max(x: np.ndarray, m) -> np.ndarray:
    """Row max over valid keys (keepdims); 0 for an all-masked row."""
    if m is None:
        return x.max(axis=-1, keepdims=True)
    mx = np.where(m, x, -np.inf).max(axis=-1, keepdims=True)
    return np.where(np.isfinite(mx), mx, 0.0)


def float_rows(x, mask, who: str):
    """(numpy float rows, their mask or None) after the checks every float-logit function makes.

    dtype float, at least one key per row, the mask's shape and dtype, and no NaN or inf among the
    valid keys (masked keys may hold anything).
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise InputTypeError(f"{who} takes float logits, got dtype {x.dtype}")
    check_rows(x, "logits")
    m = row_mask(x.shape, mask)
    check_finite(x if m is None else np.where(m, x, 0.0))
    return x, m
