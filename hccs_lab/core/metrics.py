"""Fidelity of a surrogate to softmax, per row over the last axis (numpy arrays in, arrays out).

Conventions shared by every function:

* `mask` is boolean `[..., n]`, True where a key takes part; masked keys are ignored.
* KL zeros: HCCS can give a key exactly 0 (B = S*D, or a Q15 output that floors to 0) where
  softmax gives it mass. `kl` floors q at `KL_FLOOR` = 2**-16, half of one Q15 step (1/32767):
  an integer 0 means "below the output's resolution", so it is charged as half a step rather than
  as infinity. q is not renormalised after flooring. Terms with p == 0 contribute 0.
* All-masked rows: KL and JS are 0, tau and spearman are NaN-free 0.0, top-k overlap is 1.0;
  they carry no information and `rank_preservation` leaves them out of its means.
* A row that is constant on either side (or has fewer than two valid keys) has tau and spearman
  0.0, where scipy.stats says NaN.
* Inputs may be numpy arrays or torch tensors (detached, as float64); NaN or inf anywhere is a
  ValueError naming how many rows hold them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError, InputTypeError
from .masks import check_mask

KL_FLOOR = 2.0 ** -16


def _pair(p, q, mask=None):
    p = _as_float(p, "p")
    q = _as_float(q, "q")
    if p.shape != q.shape:
        raise InputError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    if p.ndim < 1 or p.shape[-1] == 0:
        raise InputError(f"rows need at least one key, got shape {p.shape}")
    if mask is not None:
        mask = check_mask(mask, p.shape)
    return p, q, mask


def _as_float(a, name):
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise InputTypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        rows = int((~np.isfinite(a)).reshape(-1, a.shape[-1]).any(-1).sum()) if a.ndim else 1
        raise InputError(f"{name} contains NaN or inf in {rows} row(s)")
    return a


def plogp(p: np.ndarray) -> np.ndarray:
    """p * log(p) elementwise with 0 log 0 = 0 (negative entropy terms; sum over keys for a row's)."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)


def entropy(p: np.ndarray) -> np.ndarray:
    """-sum p log p per row (nats)."""
    return -plogp(p).sum(-1)


def kl(p, q, mask=None, floor: float = KL_FLOOR) -> np.ndarray:
    """KL(p || q) per row, p the reference (softmax), q the surrogate; never NaN (see module doc)."""
    p, q, mask = _pair(p, q, mask)
    if mask is not None:
        p = np.where(mask, p, 0.0)
    return (plogp(p) - np.where(p > 0, p * np.log(np.maximum(q, floor)), 0.0)).sum(-1)


def js(p, q, mask=None) -> np.ndarray:
    """Jensen-Shannon divergence per row (natural log, bounded by ln 2); symmetric, needs no floor."""
    p, q, mask = _pair(p, q, mask)
    if mask is not None:
        p, q = np.where(mask, p, 0.0), np.where(mask, q, 0.0)
    mid = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_mid = np.log(np.where(mid > 0, mid, 1.0))
    return 0.5 * (plogp(p) - p * log_mid).sum(-1) + 0.5 * (plogp(q) - q * log_mid).sum(-1)


def kendall_tau(a, b, mask=None) -> np.ndarray:
    """Kendall's tau-b per row (ties in either row handled), vectorised over all leading axes.

    tau-b = (C - D) / sqrt((n0 - n1) * (n0 - n2)) over the valid keys, with n0 pairs, n1 / n2 pairs
    tied in a / b, C concordant and D discordant pairs. Knight's method, vectorised over rows: sort
    the keys by (a, b); then D is the number of strict inversions of b in that order and
    C = n0 - n1 - n2 + n3 - D (n3 pairs tied in both). The inversions are counted level by level
    as in a merge sort, with one integer sort per level: O(n log^2 n) per row, no n*n memory.
    A row where either side is constant (or with fewer than two valid keys) has tau 0.
    """
    a, b, mask = _pair(a, b, mask)
    n = a.shape[-1]
    lead = a.shape[:-1]
    a = a.reshape(-1, n)
    b = b.reshape(-1, n)
    if mask is not None:
        # masked keys sink below every valid key in both rows (tied with each other): they add
        # no inversion, and the pairs they make are taken out of the counts below
        m = mask.reshape(-1, n)
        a = np.where(m, a, -np.inf)
        b = np.where(m, b, -np.inf)
        nm = n - m.sum(-1)
    else:
        nm = np.zeros(a.shape[0], np.int64)
    tau = np.empty(a.shape[0])
    step = max(1, _TAU_CHUNK // n)  # bounds the [levels, rows, n] sort of the inversion count
    for i in range(0, a.shape[0], step):
        tau[i:i + step] = _tau_b(a[i:i + step], b[i:i + step], nm[i:i + step])
    return tau.reshape(lead)


_TAU_CHUNK = 1 << 18  # keys per chunk of rows


def _tau_b(a: np.ndarray, b: np.ndarray, nm: np.ndarray) -> np.ndarray:
    """tau-b of rows [r, n] whose nm masked keys hold -inf on both sides."""
    n = a.shape[-1]
    # sort by a; dense ranks of a in that order, tied pairs in a
    order_a = np.argsort(a, axis=-1)
    rank_a, ties_a = _runs(np.take_along_axis(a, order_a, -1))
    # dense ranks of b (in key order), tied pairs in b
    rank_b, ties_b = _dense_ranks(b)
    # sort by (a, b): equal keys are exactly the pairs tied in both
    wide = np.int32 if (n + 1) ** 2 < 2**31 else np.int64
    key = rank_a.astype(wide) * (n + 1) + np.take_along_axis(rank_b, order_a, -1)
    key.sort(axis=-1)
    _, ties_ab = _runs(key)
    disc = _strict_inversions(key % (n + 1))

    masked_pairs = nm * (nm - 1) // 2
    nv = n - nm
    n0 = nv * (nv - 1) // 2
    n1 = ties_a - masked_pairs
    n2 = ties_b - masked_pairs
    n3 = ties_ab - masked_pairs
    conc = n0 - n1 - n2 + n3 - disc
    den = np.sqrt((n0 - n1).astype(np.float64) * (n0 - n2))
    return np.where(den > 0, (conc - disc) / np.where(den > 0, den, 1.0), 0.0)


def _runs(sorted_rows: np.ndarray):
    """For rows sorted ascending: (dense rank 0.. of each position as int32, tied pairs per row)."""
    r, n = sorted_rows.shape
    new = np.empty((r, n), bool)
    new[:, :1] = False
    np.not_equal(sorted_rows[:, 1:], sorted_rows[:, :-1], out=new[:, 1:])
    dense = np.cumsum(new, axis=-1, dtype=np.int32)
    new[:, 0] = True
    start = np.maximum.accumulate(new * np.arange(n, dtype=np.int32), axis=-1)  # where each run starts
    # the key at sorted position j is tied with the j - start_j earlier keys of its run
    return dense, n * (n - 1) // 2 - start.sum(-1, dtype=np.int64)


def _dense_ranks(v: np.ndarray):
    """Dense ranks 0..levels-1 per row (equal values share a rank) and tied pairs per row."""
    order = np.argsort(v, axis=-1)
    dense, ties = _runs(np.take_along_axis(v, order, -1))
    ranks = np.empty(v.shape, np.int32)
    np.put_along_axis(ranks, order, dense, -1)
    return ranks, ties


def _strict_inversions(r: np.ndarray) -> np.ndarray:
    """#{i < j : r_i > r_j} per row of small non-negative integers.

    Every pair i < j is split at exactly one level of a merge sort: the level whose blocks of 2w
    keys hold i in the left half and j in the right. Within a block, sorting the keys with the
    half as a tie-breaking low bit (left first) puts a right key r at merged position
    #{left <= r} + #{right keys before it}, so the block's inversions are
    w*w - (sum of the right keys' merged positions - w*(w-1)/2). One sort per level, all rows and
    blocks at once (the block index is the key's high part).
    """
    rows, n = r.shape
    size = 1 << max(0, (n - 1).bit_length())
    top = int(r.max()) + 1 if r.size else 1
    if size > n:  # pad with keys above every value at the end: they invert with nothing
        r = np.concatenate([r, np.full((rows, size - n), top, r.dtype)], axis=1)
    dtype = np.int32 if size * (top + 2) < 2**31 else np.int64
    pos = np.arange(size)
    w = 1 << np.arange(size.bit_length() - 1)[:, None]  # half-block widths 1, 2, 4, ..., size/2
    block_and_half = ((pos // (2 * w)) * (2 * top + 2) + (pos // w) % 2).astype(dtype)  # [levels, size]
    merged = np.sort(r.astype(dtype)[None] * 2 + block_and_half[:, None], axis=-1)  # all levels at once
    merged &= 1  # 1 where a right-half key sits
    merged *= (pos % (2 * w)).astype(dtype)[:, None]  # its position inside its merged block
    per_level = (size // (2 * w)) * (w * w + w * (w - 1) // 2)  # blocks * (w*w + w*(w-1)/2)
    return int(per_level.sum()) - merged.sum(axis=(0, 2), dtype=np.int64)


def spearman(a, b, mask=None) -> np.ndarray:
    """Spearman's rho per row (average ranks for ties); 0 for a constant row."""
    a, b, mask = _pair(a, b, mask)
    if mask is not None:
        # masked keys sink to the bottom of both rankings and are then dropped from the moments
        a = np.where(mask, a, -np.inf)
        b = np.where(mask, b, -np.inf)
    ra = _average_ranks(a)
    rb = _average_ranks(b)
    w = np.ones_like(ra) if mask is None else mask.astype(np.float64)
    cnt = np.maximum(w.sum(-1, keepdims=True), 1.0)
    ra = (ra - (ra * w).sum(-1, keepdims=True) / cnt) * w
    rb = (rb - (rb * w).sum(-1, keepdims=True) / cnt) * w
    den = np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
    return np.where(den > 0, (ra * rb).sum(-1) / np.where(den > 0, den, 1.0), 0.0)


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1..n over the last axis, ties sharing the mean of the positions they span."""
    shape = v.shape
    v = v.reshape(-1, shape[-1])
    n = v.shape[1]
    order = np.argsort(v, axis=-1)
    sv = np.take_along_axis(v, order, -1)
    idx = np.arange(n)
    new = np.ones(sv.shape, bool)
    new[:, 1:] = sv[:, 1:] != sv[:, :-1]
    last = np.ones(sv.shape, bool)
    last[:, :-1] = new[:, 1:]
    start = np.maximum.accumulate(np.where(new, idx, 0), axis=-1)
    end = np.minimum.accumulate(np.where(last, idx, n - 1)[:, ::-1], axis=-1)[:, ::-1]
    ranks = np.empty(v.shape, np.float64)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, -1)
    return ranks.reshape(shape)


def topk_overlap(a, b, k: int, mask=None) -> np.ndarray:
    """Expected fraction of a's top-k keys that b also ranks in its top k, per row.

    Ties are broken uniformly at random, independently on each side, and the overlap is the
    expectation over those draws: a key strictly above a row's k-th largest value is in its top k
    with probability 1, and each of the e keys tied *at* the k-th value with probability
    (slots left)/e. So a surrogate that ties the max with three other keys scores top-1 = 1/4,
    not 1: a clipped surrogate's ties cost exactly what a random pick among them would.
    k is capped at the number of valid keys; a row without valid keys scores 1.0.
    """
    a, b, mask = _pair(a, b, mask)
    _check_k(k)
    return _topk_overlaps(a, b, (k,), mask)[0]


def _check_k(k) -> None:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")


def _topk_overlaps(a, b, ks, mask) -> list[np.ndarray]:
    """topk_overlap for each k in ks, sharing the row sorts."""
    n = a.shape[-1]
    if mask is not None:
        a = np.where(mask, a, -np.inf)
        b = np.where(mask, b, -np.inf)
        valid = mask.sum(-1)
    else:
        valid = np.full(a.shape[:-1], n)
    sorted_a = np.sort(a, axis=-1)
    sorted_b = np.sort(b, axis=-1)
    out = []
    for k in ks:
        kk = np.minimum(valid, k)[..., None]
        at_k = np.minimum(n - kk, n - 1)  # ascending position of the k-th largest value
        pa = _in_topk_probability(a, np.take_along_axis(sorted_a, at_k, -1), kk, mask)
        pb = _in_topk_probability(b, np.take_along_axis(sorted_b, at_k, -1), kk, mask)
        hits = (pa * pb).sum(-1)
        kk = kk[..., 0]
        out.append(np.where(kk > 0, hits / np.maximum(kk, 1), 1.0))
    return out


def _in_topk_probability(x, thresh, kk, mask):
    """P(key in the row's top kk) when ties at the threshold are broken uniformly at random."""
    above = x > thresh
    tied = x == thresh
    if mask is not None:
        above &= mask
        tied &= mask
    room = kk - above.sum(-1, keepdims=True)
    share = room / np.maximum(tied.sum(-1, keepdims=True), 1)
    return above + tied * share


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
    _check_k(k)
    n = ref.shape[-1]
    r, t, m = ref.reshape(-1, n), test.reshape(-1, n), None
    if mask is not None:
        keep = mask.reshape(-1, n).any(-1)
        r, t, m = r[keep], t[keep], mask.reshape(-1, n)[keep]
    if r.shape[0] == 0:
        return RankPreservation(0.0, 0.0, 0.0, k, 0)
    top1, topk = _topk_overlaps(r, t, (1, k), m)
    return RankPreservation(
        kendall_tau=float(kendall_tau(r, t, m).mean()),
        top1=float(top1.mean()),
        topk=float(topk.mean()),
        k=k,
        rows=int(r.shape[0]),
    )
