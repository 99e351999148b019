"""Fidelity of a surrogate to softmax, per row over the last axis (numpy arrays in, arrays out).

Conventions shared by every function:

* `mask` is boolean `[..., n]`, True where a key takes part; masked keys are ignored.
* KL zeros: HCCS can give a key exactly 0 (B = S*D, or a Q15 output that floors to 0) where
  softmax gives it mass. `kl` floors q at `KL_FLOOR` = 2**-16, half of one Q15 step (1/32767):
  an integer 0 means "below the output's resolution", so it is charged as half a step rather than
  as infinity. q is not renormalised after flooring. Terms with p == 0 contribute 0.
* All-masked rows: KL and JS are 0, tau and spearman are NaN-free 0.0, top-k overlap is 1.0;
  they carry no information and `rank_preservation` leaves them out of its means.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

KL_FLOOR = 2.0 ** -16


def _pair(p, q, mask=None):
    p = _as_float(p, "p")
    q = _as_float(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    if p.ndim < 1 or p.shape[-1] == 0:
        raise ValueError(f"rows need at least one key, got shape {p.shape}")
    if mask is not None:
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), p.shape)
    return p, q, mask


def _as_float(a, name):
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        rows = int((~np.isfinite(a)).reshape(-1, a.shape[-1]).any(-1).sum()) if a.ndim else 1
        raise ValueError(f"{name} contains NaN or inf in {rows} row(s)")
    return a


def kl(p, q, mask=None, floor: float = KL_FLOOR) -> np.ndarray:
    """KL(p || q) per row, p the reference (softmax), q the surrogate; never NaN (see module doc)."""
    p, q, mask = _pair(p, q, mask)
    if mask is not None:
        p = np.where(mask, p, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = p * (np.log(np.where(p > 0, p, 1.0)) - np.log(np.maximum(q, floor)))
    return np.where(p > 0, t, 0.0).sum(-1)


def js(p, q, mask=None) -> np.ndarray:
    """Jensen-Shannon divergence per row (natural log, bounded by ln 2); symmetric, needs no floor."""
    p, q, mask = _pair(p, q, mask)
    if mask is not None:
        p, q = np.where(mask, p, 0.0), np.where(mask, q, 0.0)
    mid = 0.5 * (p + q)

    def part(a):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = a * (np.log(np.where(a > 0, a, 1.0)) - np.log(np.where(mid > 0, mid, 1.0)))
        return np.where(a > 0, t, 0.0).sum(-1)

    return 0.5 * part(p) + 0.5 * part(q)


def kendall_tau(a, b, mask=None) -> np.ndarray:
    """Kendall's tau-b per row (ties in either row handled), vectorised over all leading axes.

    Counts over ordered key pairs with boolean [.., n, n] comparisons, so memory is n*n bytes per
    row: fine for attention rows (n <= 512). A row where either side is constant has tau 0.
    """
    a, b, mask = _pair(a, b, mask)
    n = a.shape[-1]
    lead = a.shape[:-1]
    a = a.reshape(-1, n)
    b = b.reshape(-1, n)
    m = None if mask is None else mask.reshape(-1, n)
    out = np.empty(a.shape[0])
    step = max(1, (1 << 24) // (n * n))  # bound the temporaries to ~16 MB per array
    for i in range(0, a.shape[0], step):
        out[i:i + step] = _tau_b(a[i:i + step], b[i:i + step], None if m is None else m[i:i + step])
    return out.reshape(lead)


def _tau_b(a, b, m):
    ga = a[:, :, None] > a[:, None, :]  # ga[r, i, j]: key i above key j in a
    gb = b[:, :, None] > b[:, None, :]
    if m is not None:
        pair = m[:, :, None] & m[:, None, :]
        ga &= pair
        gb &= pair
    # An untied pair sits in exactly one of ga, ga^T: counting over ordered pairs counts it once.
    conc = np.count_nonzero(ga & gb, axis=(1, 2)).astype(np.float64)
    disc = np.count_nonzero(ga & gb.transpose(0, 2, 1), axis=(1, 2)).astype(np.float64)
    untied_a = np.count_nonzero(ga, axis=(1, 2)).astype(np.float64)  # n0 - n1 in tau-b's notation
    untied_b = np.count_nonzero(gb, axis=(1, 2)).astype(np.float64)
    den = np.sqrt(untied_a * untied_b)
    return np.where(den > 0, (conc - disc) / np.where(den > 0, den, 1.0), 0.0)


def spearman(a, b, mask=None) -> np.ndarray:
    """Spearman's rho per row (average ranks for ties); 0 for a constant row."""
    from scipy.stats import rankdata

    a, b, mask = _pair(a, b, mask)
    if mask is not None:
        # masked keys sink to the bottom of both rankings and are then dropped from the moments
        a = np.where(mask, a, -np.inf)
        b = np.where(mask, b, -np.inf)
    ra = rankdata(a, axis=-1)
    rb = rankdata(b, axis=-1)
    w = np.ones_like(ra) if mask is None else mask.astype(np.float64)
    cnt = np.maximum(w.sum(-1, keepdims=True), 1.0)
    ra = (ra - (ra * w).sum(-1, keepdims=True) / cnt) * w
    rb = (rb - (rb * w).sum(-1, keepdims=True) / cnt) * w
    den = np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
    return np.where(den > 0, (ra * rb).sum(-1) / np.where(den > 0, den, 1.0), 0.0)


def topk_overlap(a, b, k: int, mask=None) -> np.ndarray:
    """Fraction of a's top-k keys that b also ranks in its top k, per row.

    a is the reference; its top k is taken with ties broken by key index. b's top k includes every
    key tied with b's k-th largest value, because a clipped surrogate ties keys by design and
    picking among equals by index would be an arbitrary verdict. k is capped at the valid keys.
    """
    a, b, mask = _pair(a, b, mask)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    n = a.shape[-1]
    if mask is not None:
        a = np.where(mask, a, -np.inf)
        b = np.where(mask, b, -np.inf)
        kk = np.minimum(mask.sum(-1), k)
    else:
        kk = np.full(a.shape[:-1], min(k, n))
    kmax = min(k, n)
    top_a = np.argsort(-a, axis=-1, kind="stable")[..., :kmax]
    b_sorted = -np.sort(-b, axis=-1)
    thresh = np.take_along_axis(b_sorted, np.maximum(kk - 1, 0)[..., None], axis=-1)
    in_b = np.take_along_axis(b, top_a, axis=-1) >= thresh
    if mask is not None:
        in_b &= np.take_along_axis(mask, top_a, axis=-1)
    used = np.arange(kmax) < kk[..., None]
    hits = (in_b & used).sum(-1)
    return np.where(kk > 0, hits / np.maximum(kk, 1), 1.0)


@dataclass
class RankPreservation:
    """Means over the rows that have at least one valid key."""

    kendall_tau: float
    top1: float
    topk: float
    k: int
    rows: int

    def as_dict(self) -> dict:
        return asdict(self)


def rank_preservation(ref, test, mask=None, k: int = 5) -> RankPreservation:
    """Kendall tau-b, top-1 agreement and top-k overlap of `test` against `ref`, averaged over rows."""
    ref, test, mask = _pair(ref, test, mask)
    n = ref.shape[-1]
    keep = np.ones(ref.shape[:-1], bool) if mask is None else mask.any(-1)
    r, t = ref[keep].reshape(-1, n), test[keep].reshape(-1, n)
    m = None if mask is None else mask[keep].reshape(-1, n)
    if r.shape[0] == 0:
        return RankPreservation(0.0, 0.0, 0.0, k, 0)
    return RankPreservation(
        kendall_tau=float(kendall_tau(r, t, m).mean()),
        top1=float(topk_overlap(r, t, 1, m).mean()),
        topk=float(topk_overlap(r, t, k, m).mean()),
        k=k,
        rows=int(r.shape[0]),
    )
