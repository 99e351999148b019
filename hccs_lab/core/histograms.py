"""One head's rows reduced to histograms over their int8 distances below the row max.

HCCS sees a row only through the distances d = max - x of its int8 view, in [0, 255] (with the row
max centred on 127 by `quantize_logits`). For a fixed scale a row is therefore fully described, as
far as any HCCS output and its KL to softmax go, by how many keys sit at each distance (`counts`)
and how much softmax mass sits there (`mass`). The calibration objective and the playground's
metrics are both computed from these histograms: O(rows x 256) per parameter set instead of
O(rows x n).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, InputTypeError
from .masks import check_mask
from .metrics import plogp
from .relaxed import quantize_logits, softmax

N_DIST = 256  # int8 distances 0..255 below the row max


@dataclass
class DistanceHistograms:
    """Per-row distance histograms of rows that each have at least one valid key."""

    p: np.ndarray  # float64 [R, n]: softmax of the float logits over the valid keys (0 elsewhere)
    d: np.ndarray  # int16 [R, n]: int8 distance of each key below its row max (0 under the mask)
    mask: np.ndarray  # bool [R, n]
    counts: np.ndarray  # int64 [R, 256]: keys at each distance
    mass: np.ndarray  # float64 [R, 256]: softmax mass at each distance
    neg_entropy: np.ndarray  # float64 [R]: sum p log p per row

    @property
    def N(self) -> np.ndarray:
        """Valid keys per row."""
        return self.counts.sum(1)


def distance_histograms(logits, mask, scale: float) -> DistanceHistograms:
    """Quantize `logits` [R, n] with `scale` (row max on 127) and histogram each row's distances.

    `mask` (bool [R, n], None = every key valid) marks the keys that take part; every row must keep
    at least one (drop empty rows first: they carry no information).
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise InputError(f"logits must be [rows, n], got shape {logits.shape}")
    if not np.issubdtype(logits.dtype, np.floating):
        raise InputTypeError(f"logits must be float, got dtype {logits.dtype}")
    mask = np.ones(logits.shape, bool) if mask is None else check_mask(mask, logits.shape, exact=True)
    if not mask.any(axis=1).all():
        raise InputError("every row needs at least one valid key; drop empty rows first")
    if not np.isfinite(scale) or scale <= 0:
        raise InputError(f"scale must be finite and > 0, got {scale}")
    R = logits.shape[0]
    x = np.where(mask, logits, 0.0).astype(np.float64)
    q = quantize_logits(x, scale, mask=mask)
    d = np.where(mask, np.int16(127) - q.astype(np.int16), 0).astype(np.int16)  # row max sits on 127
    p = softmax(x, mask=mask)
    flat = (np.arange(R)[:, None] * N_DIST + d)[mask]
    counts = np.bincount(flat, minlength=R * N_DIST).reshape(R, N_DIST).astype(np.int64)
    mass = np.bincount(flat, weights=p[mask], minlength=R * N_DIST).reshape(R, N_DIST)
    return DistanceHistograms(p=p, d=d, mask=mask, counts=counts, mass=mass, neg_entropy=plogp(p).sum(1))
