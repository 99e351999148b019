"""Per-head calibration of HCCS: exact integer grid search, a gradient relaxation, Calibration <-> JSON.

The objective (the paper's): for one head, the mean over its rows of

    KL( softmax(float logits, mask)  ||  hccs_int(quantize_logits(logits, scale), params, "i16", "div", mask) / 32767 )

computed with `hccs_lab.metrics.kl`. Conventions, stated once:

* HCCS zeros. `metrics.kl` floors q at 2**-16 (half a Q15 step): an integer 0 means "below the
  output's resolution" and is charged as log(2**-16) instead of infinity. With exact division the
  reciprocal rho = 32767 // Z is >= 1 (Z <= n*B <= 32767), so a key's output is 0 only when its score
  is 0, i.e. when B == S*D and the key sits at the clip. Every other output is >= 1/32767 > 2**-16.
* Rows. A row is one query of one text; rows whose keys are all masked carry no information and are
  dropped before the mean (`metrics.kl` would give them 0).
* Scale. Each head's int8 step comes from `hccs_lab.core.relaxed.choose_scale` at the 99th percentile (the
  default there): 99% of the distances below a row's max span the 127 steps a clip D <= 127 can use,
  so the clip is free to sit anywhere over the range that actually carries softmax mass, and the
  rare far-out keys (softmax mass ~ e^-(many)) are clipped anyway. `scale_multipliers` can search a
  few scales around it per head; the chosen scale is part of the result.

Why the grid search is exact and fast. After quantization a row's keys sit at integer distances
e = 127 - q in [0, 255] below the row max (which lands on 127). With clip D a key scores
s(d) = B - S*d with d = min(e, D), so the row's i16 output for every key at clipped distance d is
s(d) * rho with rho = 32767 // Z and Z = B*N - S*T(D), N the number of valid keys and
T(D) = sum_i min(e_i, D). Writing P[d] for the softmax mass at clipped distance d,

    KL(row) = sum p log p  -  sum_{d: s(d)>0} P[d] (log s(d) + log rho - log 32767)  -  P[s=0] log 2**-16.

The first sum does not depend on the parameters; the middle part splits into an aggregate over rows
(sum_d Pbar[d] log s(d), with Pbar the mass histogram summed over rows) and a per-row part
W_r * log(32767 // Z_r) that couples B, S and D through the integer floor. So each row reduces to a
histogram over 256 distances (counts and mass) plus, per D, the two numbers N and T(D); nothing
else about it matters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from ..core.histograms import N_DIST, DistanceHistograms, distance_histograms
from ..core.params import INT16_MAX, HCCSParams, max_base
from ..errors import InputError

LOG_KL_FLOOR = -16.0 * math.log(2.0)  # log of metrics.KL_FLOOR = 2**-16
LOG_T = math.log(INT16_MAX)
N_CLIP = 128  # D in 0..127


def default_params(seq_len: int) -> HCCSParams:
    """The uncalibrated "before" set: the widest ReLU-like ramp the int8 range allows.

    D = 127 uses every distance a clip can reach, B = S*D makes it max(0, D - d) (the paper's special
    case), and S is the largest slope with n*B <= 32767 so the Q15 output has the finest resolution.
    It needs no data beyond the per-head scale that int8 quantization needs anyway, which is what
    "no calibration" means here. For n=128: (254, 2, 127); past n = 258 the clip shrinks with the
    largest allowed base (n=512: (63, 1, 63)).
    """
    D = min(127, max_base(seq_len))  # rows longer than 258 keys allow no base as large as 127
    S = max(1, max_base(seq_len) // D)
    return HCCSParams(S * D, S, D)




@dataclass
class RowStats:
    """What the objective needs from a set of quantized rows (see the module docstring).

    Per clip D: `groups[D] = (N, T, w, tail)` arrays over (possibly merged) rows: key count N,
    clipped distance sum T(D), softmax mass w, and the mass at distance >= D. Rows with equal
    (N, T(D)) may be merged by summing w and tail; the objective is linear in both.
    """

    n_rows: int
    neg_entropy: float  # sum over rows of sum p log p
    mass_hist: np.ndarray  # float64 [256]: softmax mass at each raw distance, summed over rows
    N: np.ndarray  # int64 [R]
    T: np.ndarray  # int64 [128, R]
    w: np.ndarray  # float64 [R]
    tail: np.ndarray  # float64 [128, R]
    max_keys: int  # the longest row (N <= seq_len is required)

    @property
    def tail_hist(self) -> np.ndarray:
        """Mass at distance >= D for D = 0..127, summed over rows."""
        return np.cumsum(self.mass_hist[::-1])[::-1][:N_CLIP]

    def groups(self, dedupe: bool = False):
        """Per D, the (N, T, w, tail) arrays; merged on equal (N, T(D)) when `dedupe`."""
        out = []
        for D in range(N_CLIP):
            if not dedupe:
                out.append((self.N, self.T[D], self.w, self.tail[D]))
                continue
            key = self.N * (N_DIST * N_CLIP * 4) + self.T[D]
            uniq, inv = np.unique(key, return_inverse=True)
            w = np.bincount(inv, weights=self.w, minlength=len(uniq))
            tl = np.bincount(inv, weights=self.tail[D], minlength=len(uniq))
            out.append((uniq // (N_DIST * N_CLIP * 4), uniq % (N_DIST * N_CLIP * 4), w, tl))
        return out


def row_stats(logits, mask, scale: float) -> RowStats:
    """Quantize rows with `scale` and reduce them to the objective's sufficient statistics.

    Rows without any valid key are dropped (they carry no information).
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise InputError(f"logits must be [rows, n], got shape {logits.shape}")
    if mask is None:
        mask = np.ones(logits.shape, bool)
    mask = np.asarray(mask)
    if mask.shape == logits.shape and mask.dtype == np.bool_:
        keep = mask.any(-1)
        logits, mask = logits[keep], mask[keep]
    if logits.shape[0] == 0:
        raise InputError("no row has a valid key: nothing to calibrate on")
    return stats_from_histograms(distance_histograms(logits, mask, scale))


def stats_from_histograms(h: DistanceHistograms) -> RowStats:
    """The objective's statistics of rows already reduced to distance histograms."""
    counts, mass = h.counts, h.mass
    R = counts.shape[0]
    N = counts.sum(1)
    # T(D) = sum_{e<D} c[e] e + D * (keys at e >= D), from prefix sums over the first 128 distances
    c_lt = np.zeros((R, N_CLIP), np.int64)
    e_lt = np.zeros((R, N_CLIP), np.int64)
    np.cumsum(counts[:, :N_CLIP - 1], axis=1, out=c_lt[:, 1:])
    np.cumsum(counts[:, :N_CLIP - 1] * np.arange(N_CLIP - 1), axis=1, out=e_lt[:, 1:])
    T = (e_lt + np.arange(N_CLIP) * (N[:, None] - c_lt)).T.copy()  # [128, R]
    tail = np.cumsum(mass[:, ::-1], axis=1)[:, ::-1][:, :N_CLIP].T.copy()  # [128, R]
    return RowStats(
        n_rows=R,
        neg_entropy=float(h.neg_entropy.sum()),
        mass_hist=mass.sum(0),
        N=N,
        T=T,
        w=mass.sum(1),
        tail=tail,
        max_keys=int(N.max()),
    )


def pool_stats(parts: Sequence[RowStats]) -> RowStats:
    """One RowStats over the rows of several (a layer's or the model's heads, each with its own scale)."""
    if not parts:
        raise InputError("nothing to pool")
    return RowStats(
        n_rows=sum(p.n_rows for p in parts),
        neg_entropy=float(sum(p.neg_entropy for p in parts)),
        mass_hist=np.sum([p.mass_hist for p in parts], axis=0),
        N=np.concatenate([p.N for p in parts]),
        T=np.concatenate([p.T for p in parts], axis=1),
        w=np.concatenate([p.w for p in parts]),
        tail=np.concatenate([p.tail for p in parts], axis=1),
        max_keys=max(p.max_keys for p in parts),
    )


# ---------------------------------------------------------------------------------------------
# the exact objective


@lru_cache(maxsize=1)
def _log_rho_table() -> np.ndarray:
    """log(32767 // Z) for Z = 0..32767 (Z = 0 never occurs: the max key alone scores B >= 1)."""
    Z = np.arange(INT16_MAX + 1)
    Z[0] = 1
    return np.log(INT16_MAX // Z).astype(np.float64)


def _cross_aggregate(stats: RowStats, B, S, D) -> np.ndarray:
    """sum over rows of sum_d P[d] log s(d) (+ P[s=0] log 2**-16), for candidate arrays B, S, D."""
    B, S, D = (np.asarray(a, np.int64) for a in (B, S, D))
    d = np.arange(N_CLIP)
    mass = stats.mass_hist[:N_CLIP]
    weight = np.where(d[None, :] < D[:, None], mass[None, :], 0.0)
    weight[np.arange(len(D)), D] = stats.tail_hist[D]
    s = B[:, None] - S[:, None] * d[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(s > 0, np.log(np.where(s > 0, s, 1)), LOG_KL_FLOOR)
    return np.where(weight > 0, weight * logs, 0.0).sum(1)


def exact_kl(stats: RowStats, cands, groups=None, chunk_elems: int = 1 << 21) -> np.ndarray:
    """The mean KL of every candidate (rows of an int [K, 3] array of (B, S, D)), exactly.

    `groups` (from `stats.groups(dedupe=True)`) evaluates on merged rows; by default every row is
    used as it is.
    """
    cands = np.asarray(cands, np.int64).reshape(-1, 3)
    out = np.empty(len(cands))
    if len(cands) == 0:
        return out
    G = _log_rho_table()
    if groups is None:  # one row set for every D: all candidates in one vectorised pass
        N = stats.N.astype(np.int32)
        step = max(1, chunk_elems // max(1, stats.n_rows))
        for i in range(0, len(cands), step):
            blk = cands[i:i + step]
            Bc, Sc, Dc = blk[:, 0], blk[:, 1], blk[:, 2]
            Z = Bc.astype(np.int32)[:, None] * N[None, :] - Sc.astype(np.int32)[:, None] * stats.T[Dc].astype(np.int32)
            rho_part = G[Z]
            rp = rho_part @ stats.w - LOG_T * stats.w.sum()
            zero = np.flatnonzero(Bc == Sc * Dc)  # the clip bucket scores 0: its mass gets no rho
            if len(zero):
                rp[zero] -= np.einsum("kr,kr->k", rho_part[zero] - LOG_T, stats.tail[Dc[zero]])
            cross = _cross_aggregate(stats, Bc, Sc, Dc) + rp
            out[i:i + step] = (stats.neg_entropy - cross) / stats.n_rows
        return out
    order = np.argsort(cands[:, 2], kind="stable")  # group by D: one (N, T) set per D
    c_sorted = cands[order]
    starts = np.flatnonzero(np.r_[True, c_sorted[1:, 2] != c_sorted[:-1, 2]])
    ends = np.r_[starts[1:], len(c_sorted)]
    for a, b in zip(starts, ends):
        D = int(c_sorted[a, 2])
        N, T, w, tl = groups[D]
        step = max(1, chunk_elems // max(1, len(N)))
        for i in range(a, b, step):
            blk = c_sorted[i:min(b, i + step)]
            Bc, Sc = blk[:, 0:1], blk[:, 1:2]
            Z = Bc * N[None, :] - Sc * T[None, :]
            rho_part = G[Z] - LOG_T
            zero = (Bc[:, 0] == Sc[:, 0] * D)
            Wfull = rho_part @ w
            Wzero = rho_part @ tl
            rp = np.where(zero, Wfull - Wzero, Wfull)
            cross = _cross_aggregate(stats, blk[:, 0], blk[:, 1], blk[:, 2]) + rp
            out[order[i:min(b, i + step)]] = (stats.neg_entropy - cross) / stats.n_rows
    return out


def objective(stats: RowStats, params: HCCSParams) -> float:
    return float(exact_kl(stats, [[params.B, params.S, params.D]])[0])


