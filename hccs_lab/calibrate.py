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
* Scale. Each head's int8 step comes from `surrogate.choose_scale` at the 99th percentile (the
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

The search then runs branch and bound over the whole candidate set (every valid (B, S, D) for
seq_len, `surrogate.valid_region`): since 32767 // Z <= 32767 / Z, each candidate's objective is
bounded by its floor-free ("continuous") value, which depends on the rows only through
F_D(u) = sum_r w_r log(N_r - u T_r(D)), u = S/B; F_D is concave in u, so its chord between knots
of a u-grid bounds it from below. Every candidate gets this O(1) bound from a coarse grid (5 knots
per D); the 128 most promising are evaluated exactly to get an incumbent; the candidates whose bound
still beats it get a finer chord (33 knots per D, only the knots in use); then the rest are
evaluated exactly, most promising first, until no bound can beat the best (vectorised over
candidates x rows). Pruned candidates are provably no better, so the result is the true optimum of
the set; the tests check it against looping every candidate through hccs_int + metrics.kl. On the
minilm-l6 heads (1,624 rows each at 64 texts) about 0.2% of the 218,957 candidates get evaluated.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .atomic import write_text
from .surrogate import (
    INT16_MAX,
    HCCSParams,
    choose_scale,
    max_base,
    quantize_logits,
    softmax,
)

SCHEMA_VERSION = 1
SCHEMA_NAME = "hccs-lab/calibration"
GRANULARITIES = ("head", "layer", "global")
METHODS = ("grid", "gradient")
SCALE_PERCENTILE = 99.0
LOG_KL_FLOOR = -16.0 * math.log(2.0)  # log of metrics.KL_FLOOR
LOG_T = math.log(INT16_MAX)
N_DIST = 256  # raw distances 0..255 after centering the row max on 127
N_CLIP = 128  # D in 0..127
U_COARSE = 4  # chord pieces per D for the first bound of F_D (every D)
U_FINE = 32  # chord pieces for the clips that survive the first bound
_MARGIN = 1e-9  # KL slack for float rounding in the bounds: prune only what is clearly worse


def default_params(seq_len: int) -> HCCSParams:
    """The uncalibrated "before" set: the widest ReLU-like ramp the int8 range allows.

    D = 127 uses every distance a clip can reach, B = S*D makes it max(0, D - d) (the paper's special
    case), and S is the largest slope with n*B <= 32767 so the Q15 output has the finest resolution.
    It needs no data beyond the per-head scale that int8 quantization needs anyway, which is what
    "no calibration" means here. For n=128: (254, 2, 127).
    """
    S = max(1, max_base(seq_len) // 127)
    return HCCSParams(S * 127, S, 127)


# ---------------------------------------------------------------------------------------------
# sufficient statistics of a set of rows


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
    """Quantize rows with `scale` and reduce them to the objective's sufficient statistics."""
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be [rows, n], got shape {logits.shape}")
    if not np.issubdtype(logits.dtype, np.floating):
        raise TypeError(f"logits must be float, got dtype {logits.dtype}")
    if mask is None:
        mask = np.ones(logits.shape, bool)
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise TypeError(f"mask must be boolean (True = key takes part), got dtype {mask.dtype}")
    if mask.shape != logits.shape:
        raise ValueError(f"mask shape {mask.shape} differs from logits shape {logits.shape}")
    keep = mask.any(-1)
    logits, mask = logits[keep], mask[keep]
    R, n = logits.shape
    if R == 0:
        raise ValueError("no row has a valid key: nothing to calibrate on")
    q = quantize_logits(logits, scale, mask)
    e = np.int64(127) - q.astype(np.int64)  # row max sits on 127
    p = softmax(logits.astype(np.float64), mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    idx = (np.arange(R)[:, None] * N_DIST + e)[mask]
    counts = np.bincount(idx, minlength=R * N_DIST).reshape(R, N_DIST)
    mass = np.bincount(idx, weights=p[mask], minlength=R * N_DIST).reshape(R, N_DIST)
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
        neg_entropy=float(plogp.sum()),
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
        raise ValueError("nothing to pool")
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


# ---------------------------------------------------------------------------------------------
# exact grid search (branch and bound over every valid candidate)


@dataclass
class SearchResult:
    params: HCCSParams
    kl: float
    candidates: int  # size of the candidate set
    evaluated: int  # how many were evaluated exactly
    seconds: float


@dataclass
class _Region:
    """The candidate set for one B range and everything about it that no head changes (cached).

    Candidates are ordered by S, then B, then D. The aggregate part of the bound needs, per
    candidate, the prefix sum over d < D of mass[d] * log(B - S*d): the logs of every (S, B, d) that
    some candidate reaches sit in one flat array, one segment per (S, B), so a single cumsum per
    head serves all candidates.
    """

    top: int
    cands: np.ndarray  # int64 [K, 3]
    L_flat: np.ndarray  # log(B - S*d) (0 where <= 0) per (S, B, d <= Dmax(S))
    d_flat: np.ndarray  # d of each flat entry
    seg_start: np.ndarray  # per candidate: its (S, B) segment start in the flat arrays
    L_clip: np.ndarray  # per candidate: log(B - S*D), 0 where B == S*D
    log_B: np.ndarray  # per candidate
    pos: np.ndarray  # per candidate: u * D in [0, 1], where its chord is read
    seg_clip: np.ndarray  # seg_start + D: where the prefix sum over d < D ends
    coarse_at: np.ndarray  # flat index D*(U_COARSE+1) + k of the coarse chord's left knot
    coarse_fr: np.ndarray  # position between the coarse knots
    zero: np.ndarray  # indices of candidates with B == S*D (S > 0)
    blocks: tuple = ()  # per S: (flat offset, rows = top, cols = Dmax + 1) of its [B, d] block


@lru_cache(maxsize=4)
def _region(top: int) -> _Region:
    cand, Lf, df, seg, blocks, at = [], [], [], [], [], 0
    Bs = np.arange(1, top + 1)
    for S in range(128):
        Dmax = 127 if S == 0 else min(127, top // S)
        Dv = np.arange(Dmax + 1)
        valid = Bs[:, None] >= np.maximum(1, S * Dv)[None, :]
        bi, Di = np.nonzero(valid)
        if len(bi) == 0:
            continue
        s = Bs[:, None] - S * Dv[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            L = np.where(s > 0, np.log(np.where(s > 0, s, 1)), 0.0)
        Lf.append(L.ravel())
        df.append(np.tile(Dv, top))
        seg.append(at + bi * (Dmax + 1))
        blocks.append((at, top, Dmax + 1))
        cand.append(np.stack([Bs[bi], np.full(len(bi), S), Di], 1))
        at += L.size
    cands = np.concatenate(cand).astype(np.int64)
    B, S, D = cands[:, 0], cands[:, 1], cands[:, 2]
    s_clip = B - S * D
    pos = np.where(D > 0, S * D / B, 0.0)
    pc = pos * U_COARSE
    kc = np.minimum(pc.astype(np.int64), U_COARSE - 1)
    seg_start = np.concatenate(seg)
    return _Region(
        seg_clip=seg_start + D,
        coarse_at=D * (U_COARSE + 1) + kc,
        coarse_fr=pc - kc,
        top=top,
        cands=cands,
        L_flat=np.concatenate(Lf),
        d_flat=np.concatenate(df),
        seg_start=seg_start,
        L_clip=np.where(s_clip > 0, np.log(np.maximum(s_clip, 1)), 0.0),
        log_B=np.log(B),
        pos=pos,
        zero=np.flatnonzero((S > 0) & (s_clip == 0)),
        blocks=tuple(blocks),
    )


def _knots(groups, D: np.ndarray, u: np.ndarray, weights: str = "w") -> np.ndarray:
    """Lower bounds of F_D(u) = sum_r w_r log(N_r - u T_r(D)) at the points (D[i], u[i]).

    With weights="wz" the weights are w - tail(D) (a B = S*D candidate's rho weights). The logs
    run in float32 (numpy vectorises them; float64 logs cost ~10x more). Arguments are formed in
    float64 and are >= 1 for every u <= 1/D (the row max alone keeps N - T/D >= 1), so each float32
    log is off by < 4 ulp of |log| <= 10.4, i.e. < 4e-6; loosening by 1e-5 per unit of weight
    keeps every value a lower bound.
    """
    D = np.asarray(D, np.int64)
    u = np.asarray(u, np.float64)
    out = np.zeros(len(D))
    if len(D) == 0:
        return out
    same_rows = all(g[0] is groups[0][0] for g in groups)
    slack = 0.0
    if same_rows:
        N0, _, w0, _ = groups[0]
        T = groups[0][1].base if groups[0][1].base is not None and groups[0][1].base.shape == (N_CLIP, len(N0)) else np.stack([g[1] for g in groups])
        step = max(1, (1 << 21) // max(1, len(N0)))
        for i in range(0, len(D), step):
            Dc, uc = D[i:i + step], u[i:i + step]
            lg = np.log((N0[None, :] - uc[:, None] * T[Dc]).astype(np.float32))
            if weights == "w":
                out[i:i + step] = np.einsum("kr,r->k", lg, w0, dtype=np.float64)
            else:
                tl = np.stack([groups[d][3] for d in Dc])
                out[i:i + step] = np.einsum("kr,kr->k", lg.astype(np.float64), w0[None, :] - tl)
        slack = 1e-5 * float(np.abs(w0).sum())
    else:
        for i in range(len(D)):
            N, T, w, tl = groups[D[i]]
            lg = np.log((N - u[i] * T).astype(np.float32)).astype(np.float64)
            out[i] = lg @ (w if weights == "w" else w - tl)
            slack = max(slack, 1e-5 * float(np.abs(w).sum()))
    return out - slack - 1e-9 * np.abs(out)


def grid_search(stats: RowStats, seq_len: int, B_max: int | None = None, dedupe: bool | None = None,
                subset=None) -> SearchResult:
    """The candidate in `valid_region(seq_len, B_max)` with the lowest exact mean KL, with proof by bound.

    `subset(cands) -> bool mask` restricts the search to part of the set (the gradient polish uses
    it for a neighbourhood); the result is then that part's exact optimum.
    """
    t0 = time.perf_counter()
    if stats.max_keys > seq_len:
        raise ValueError(f"rows have up to {stats.max_keys} keys, more than seq_len={seq_len}")
    top = max_base(seq_len) if B_max is None else min(max_base(seq_len), int(B_max))
    if top < 1:
        raise ValueError(f"B_max={B_max} leaves no valid base")
    dedupe = False if dedupe is None else dedupe  # merging rows costs more than it saves (measured)
    groups = stats.groups(dedupe)
    Wtot = float(stats.w.sum())
    Wz = Wtot - stats.tail.sum(1)  # [128]: mass that gets a rho when B = S*D
    mass = stats.mass_hist[:N_CLIP]
    tailh = stats.tail_hist
    region = _region(top)
    cands = region.cands
    K = len(cands)
    D = cands[:, 2]
    z = region.zero

    # pass 1: a lower bound of every candidate's KL (an upper bound of its cross sum):
    # sum_r w (log(32767 // Z) - log 32767) <= -Wtot log B - F_D(S/B) <= -Wtot log B - chord
    # prefix sums within each (S, B) segment only, so their rounding stays at the segment's scale
    prod = region.L_flat * mass[region.d_flat]
    for at, rows_, cols in region.blocks:
        blk = prod[at:at + rows_ * cols].reshape(rows_, cols)
        np.cumsum(blk, axis=1, out=blk)
    before_D = np.where(D > 0, prod[np.maximum(region.seg_clip - 1, 0)], 0.0)  # sum over d < D
    agg = before_D + tailh[D] * region.L_clip
    agg[z] += tailh[D[z]] * LOG_KL_FLOOR  # B == S*D: the clip bucket scores 0, charged log 2**-16

    def chord(rows, U):
        """Chord of F_D between the U-grid knots around each candidate's u (only knots in use)."""
        p = region.pos[rows] * U
        k = np.minimum(p.astype(np.int64), U - 1)
        at = D[rows] * (U + 1) + k
        used = np.zeros(N_CLIP * (U + 1), bool)
        used[at] = True
        used[at + 1] = True
        kidx = np.flatnonzero(used)
        kd, kk = kidx // (U + 1), kidx % (U + 1)
        table = np.zeros(N_CLIP * (U + 1))
        table[kidx] = _knots(groups, kd, kk / (U * np.maximum(kd, 1)))
        left, right = table[at], table[at + 1]
        fr = p - k
        return left * (1 - fr) + right * fr

    kd = np.repeat(np.arange(N_CLIP), U_COARSE + 1)
    kk = np.tile(np.arange(U_COARSE + 1), N_CLIP)
    coarse = _knots(groups, kd, kk / (U_COARSE * np.maximum(kd, 1)))
    fr = region.coarse_fr
    ub = agg - Wtot * region.log_B - (coarse[region.coarse_at] * (1 - fr) + coarse[region.coarse_at + 1] * fr)
    # B == S*D: the clip bucket's mass takes no rho, and u = 1/D exactly
    Dz_all = np.arange(1, N_CLIP)
    Fz = np.zeros(N_CLIP)
    Fz[1:] = _knots(groups, Dz_all, 1.0 / Dz_all, weights="wz")
    ub[z] = agg[z] - Wz[D[z]] * region.log_B[z] - Fz[D[z]]
    lb = (stats.neg_entropy - ub) / stats.n_rows
    if subset is not None:
        lb[~np.asarray(subset(cands), bool)] = np.inf
        if not np.isfinite(lb).any():
            raise ValueError("the subset holds no valid candidate")

    # a first incumbent from the most promising candidates, then finer chords where still needed
    seed = np.argpartition(lb, 127)[:128] if K > 128 else np.arange(K)
    seed = seed[np.isfinite(lb[seed])]
    seed_kl = exact_kl(stats, cands[seed], groups if dedupe else None)
    j = int(np.argmin(seed_kl))
    best_kl, best_i, evaluated = float(seed_kl[j]), int(seed[j]), len(seed)
    open_rows = np.flatnonzero(lb <= best_kl + _MARGIN)
    open_rows = open_rows[cands[open_rows, 1] * D[open_rows] != cands[open_rows, 0]]  # zero ones are exact in u
    if len(open_rows):
        ub2 = agg[open_rows] - Wtot * region.log_B[open_rows] - chord(open_rows, U_FINE)
        lb[open_rows] = np.maximum(lb[open_rows], (stats.neg_entropy - ub2) / stats.n_rows)
    lb[seed] = np.inf  # done

    # pass 2: exact evaluation, most promising first, until no bound can beat the incumbent
    ex_groups = groups if dedupe else None
    todo = np.flatnonzero(lb <= best_kl + _MARGIN)
    batch = 256
    while len(todo):
        if len(todo) > batch:
            pick = np.argpartition(lb[todo], batch - 1)[:batch]
        else:
            pick = np.arange(len(todo))
        blk = todo[pick]
        kl = exact_kl(stats, cands[blk], ex_groups)
        evaluated += len(blk)
        j = int(np.argmin(kl))
        if kl[j] < best_kl or (kl[j] == best_kl and blk[j] < best_i):
            best_kl, best_i = float(kl[j]), int(blk[j])
        rest = np.ones(len(todo), bool)
        rest[pick] = False
        todo = todo[rest]
        todo = todo[lb[todo] <= best_kl + _MARGIN]
        batch = min(4096, batch * 2)
    B, S, D = (int(v) for v in cands[best_i])
    return SearchResult(HCCSParams(B, S, D), best_kl, K, evaluated, time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# gradient: a continuous relaxation optimised with torch, then rounded and polished exactly


@dataclass
class Relaxed:
    """Real-valued optimum of one parameter group: slope u = S/B per quantized step, clip D in steps."""

    u: float
    D: float
    kl_float: float


def relax(groups: Sequence[RowStats], steps: int = 100, lr: float = 0.08) -> list[Relaxed]:
    """Fit a real-valued (u, D) per group of rows with Adam: the continuous relaxation of (B, S, D).

    The model is the real-valued HCCS on the int8 grid (`hccs_float` of the dequantized logits, B = 1
    since only S/B and D matter after normalisation): s(e) = 1 - u*min(e, D) for a key e steps below
    its row max, with D real. It is parameterised so every point is valid: D = 127*sigmoid(a),
    u = sigmoid(b)/D (so 1 - u*D > 0). Through the row statistics its KL costs O(rows + 256) per
    evaluation instead of O(rows * n): with Pbar the summed mass histogram,

        sum_r cross_r = sum_e Pbar[e] log s(e) - sum_r w_r log(N_r - u T_r(D)),

    and T_r(D) is linear in D between integers (min(e, D) is, for integer e), so interpolating the
    integer T table is exact. The 2**-16 floor is applied to log(s(e)/Zbar) with Zbar the mean
    normaliser (the per-row floor would cost O(rows * 256)); the exact integer polish that follows
    uses the true objective. The scale is not a free variable: in the float model it only rescales u
    and D, so the head's int8 scale stays and D absorbs the rest (D <= 127 is the integer limit).
    Each group starts from the best point of a small (D, u*D) grid, then Adam runs on all groups in
    one batched pass.
    """
    import torch

    G = len(groups)
    R = max(g.n_rows for g in groups)
    e = torch.arange(N_DIST, dtype=torch.float64)
    P = torch.tensor(np.stack([g.mass_hist for g in groups]))  # [G, 256]
    N = torch.zeros(G, R, dtype=torch.float64)
    w = torch.zeros(G, R, dtype=torch.float64)
    T = torch.zeros(G, N_CLIP + 1, R, dtype=torch.float64)
    for i, g in enumerate(groups):
        N[i, :g.n_rows] = torch.from_numpy(g.N.astype(np.float64))
        w[i, :g.n_rows] = torch.from_numpy(g.w)
        T[i, :N_CLIP, :g.n_rows] = torch.from_numpy(g.T.astype(np.float64))
        # T(128) for interpolation up to D = 127 exactly (never reached: D < 127 strictly)
        T[i, N_CLIP, :g.n_rows] = T[i, N_CLIP - 1, :g.n_rows]
    N = torch.where(N > 0, N, torch.ones_like(N))  # padded rows carry w = 0
    negent = torch.tensor([g.neg_entropy for g in groups], dtype=torch.float64)
    rows = torch.tensor([g.n_rows for g in groups], dtype=torch.float64)
    floor = math.log(2.0 ** -16)
    gi = torch.arange(G)

    def kl_of(D, u):  # D, u: [G] or [G, M] -> KL per entry
        shape = D.shape
        D2, u2 = D.reshape(G, -1), u.reshape(G, -1)
        j = D2.detach().floor().clamp(0, N_CLIP - 1).long()
        fr = D2 - j
        Tj = T[gi[:, None], j]  # [G, M, R]
        Tj1 = T[gi[:, None], j + 1]
        Tr = Tj + fr[..., None] * (Tj1 - Tj)
        Z = N[:, None, :] - u2[..., None] * Tr  # [G, M, R]
        logZ = torch.log(Z)
        zbar = ((w[:, None, :] * logZ).sum(-1) / w.sum(-1, keepdim=True)).detach()
        s = 1 - u2[..., None] * torch.minimum(e, D2[..., None])  # [G, M, 256]
        logs = torch.clamp(torch.log(s.clamp(min=1e-300)), min=floor + zbar[..., None])
        cross = (P[:, None, :] * logs).sum(-1) - (w[:, None, :] * logZ).sum(-1)
        return ((negent[:, None] - cross) / rows[:, None]).reshape(shape)

    with torch.no_grad():  # starting points: a small grid in (D, u*D)
        Dg = torch.tensor([2.0, 4, 8, 16, 32, 64, 100, 126], dtype=torch.float64)
        fg = torch.tensor([0.2, 0.5, 0.8, 0.95], dtype=torch.float64)
        DD, FF = torch.meshgrid(Dg, fg, indexing="ij")
        DD, FF = DD.reshape(-1), FF.reshape(-1)
        k0 = kl_of(DD.expand(G, -1).contiguous(), (FF / DD).expand(G, -1).contiguous())
        best = k0.argmin(1)
        D0, f0 = DD[best], FF[best]
    a = torch.logit(D0 / 127).clone().requires_grad_(True)
    b = torch.logit(f0).clone().requires_grad_(True)
    opt = torch.optim.Adam([a, b], lr=lr)

    def params():
        D = 127 * torch.sigmoid(a)
        return D, torch.sigmoid(b) / D

    for _ in range(steps):
        opt.zero_grad()
        D, u = params()
        kl_of(D[:, None], u[:, None]).sum().backward()
        opt.step()
    with torch.no_grad():
        D, u = params()
        k = kl_of(D[:, None], u[:, None])[:, 0]
    return [Relaxed(float(u[i]), float(D[i]), float(k[i])) for i in range(G)]


def polish(stats: RowStats, seq_len: int, u: float, D: float, B_max: int | None = None, max_rounds: int = 50) -> SearchResult:
    """Round a relaxed (u, D) to integers and improve it by exact local search.

    First the exact optimum (by the grid's bound) of the integer points along the relaxed shape:
    every B with S within 1.5 of u*B and D within 3 of the relaxed clip; then coordinate moves of
    +-1 in (B, S, D) until none helps.
    """
    t0 = time.perf_counter()
    top = max_base(seq_len) if B_max is None else min(max_base(seq_len), int(B_max))
    D0 = min(max(D, 0.0), 127.0)

    def near(c):
        return (np.abs(c[:, 2] - D0) <= 3.0) & (np.abs(c[:, 1] - u * c[:, 0]) <= 1.5)

    first = grid_search(stats, seq_len, B_max=B_max, subset=near)
    best, best_kl, evaluated = np.array([first.params.B, first.params.S, first.params.D]), first.kl, first.evaluated
    moves = np.array([(dB, dS, dD) for dB in (-1, 0, 1) for dS in (-1, 0, 1) for dD in (-1, 0, 1) if (dB, dS, dD) != (0, 0, 0)])
    for _ in range(max_rounds):
        nb = best[None, :] + moves
        nb = nb[_valid_mask(nb, seq_len, top)]
        if len(nb) == 0:
            break
        kl = exact_kl(stats, nb)
        evaluated += len(nb)
        j = int(np.argmin(kl))
        if kl[j] >= best_kl:
            break
        best, best_kl = nb[j], float(kl[j])
    return SearchResult(HCCSParams(*(int(v) for v in best)), best_kl, first.candidates, evaluated, time.perf_counter() - t0)


def _valid_mask(c: np.ndarray, seq_len: int, top: int) -> np.ndarray:
    B, S, D = c[:, 0], c[:, 1], c[:, 2]
    return (B >= 1) & (B <= top) & (S >= 0) & (S <= 127) & (D >= 0) & (D <= 127) & (B - S * D >= 0) & (B * seq_len <= INT16_MAX)


# ---------------------------------------------------------------------------------------------
# array-in / array-out front door


def calibrate_rows(logits, mask, seq_len: int, method: str = "grid", scale: float | None = None,
                   scale_multipliers: Sequence[float] = (1.0,), B_max: int | None = None):
    """Calibrate one head from its rows: returns (HCCSParams, scale, mean KL).

    `scale` defaults to `choose_scale(logits, mask, 99)`; every multiple of it in
    `scale_multipliers` is tried and the best (scale, params) is kept.
    """
    _check_method(method)
    base = choose_scale(logits, mask, percentile=SCALE_PERCENTILE) if scale is None else float(scale)
    best = None
    for mult in scale_multipliers:
        sc = base * float(mult)
        stats = row_stats(logits, mask, sc)
        if method == "grid":
            res = grid_search(stats, seq_len, B_max=B_max)
        else:
            rel = relax([stats])[0]
            res = polish(stats, seq_len, rel.u, rel.D, B_max=B_max)
        if best is None or res.kl < best[2]:
            best = (res.params, sc, res.kl)
    return best


def _check_method(method):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _check_granularity(granularity):
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")


def fingerprint_texts(texts: Iterable[str]) -> str:
    """sha256 over the calibration texts (length-prefixed, in order): which data a calibration saw."""
    h = hashlib.sha256()
    for t in texts:
        b = str(t).encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return "sha256:" + h.hexdigest()


# ---------------------------------------------------------------------------------------------
# the result and its JSON form


@dataclass(frozen=True)
class HeadCalibration:
    layer: int
    head: int
    B: int
    S: int
    D: int
    scale: float
    kl_before: float
    kl_after: float

    @property
    def params(self) -> HCCSParams:
        return HCCSParams(self.B, self.S, self.D)


_META_TYPES = {
    "model": str,
    "seq_len": int,
    "n_layers": int,
    "n_heads": int,
    "samples": int,
    "rows": int,
    "data_fingerprint": str,
    "method": str,
    "granularity": str,
    "hccs_lab_version": str,
    "created": str,
    "seconds": float,
    "candidates": int,
}
_HEAD_KEYS = ("layer", "head", "B", "S", "D", "scale", "kl_before", "kl_after")


@dataclass(frozen=True)
class Calibration:
    """Per-(layer, head) HCCS parameters and int8 scales, with their KL before/after and provenance.

    `before` is the parameter set the "before" KL is measured with (`default_params(seq_len)`, at
    each head's own scale); `rows` counts the query rows the objective averaged over, per head summed.
    """

    model: str
    seq_len: int
    n_layers: int
    n_heads: int
    samples: int
    rows: int
    data_fingerprint: str
    method: str
    granularity: str
    hccs_lab_version: str
    created: str
    seconds: float
    candidates: int
    before: HCCSParams
    heads: tuple  # of HeadCalibration, ordered by (layer, head)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        _validate(self)

    # -- lookups
    def entry(self, layer: int, head: int) -> HeadCalibration:
        if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
            raise ValueError(f"(layer, head) = ({layer}, {head}) outside {self.n_layers} layers x {self.n_heads} heads")
        return self.heads[layer * self.n_heads + head]

    def params(self, layer: int, head: int) -> HCCSParams:
        return self.entry(layer, head).params

    def scale(self, layer: int, head: int) -> float:
        return self.entry(layer, head).scale

    def kl_grid(self, which: str = "after") -> np.ndarray:
        """[layers, heads] array of kl_before or kl_after."""
        if which not in ("before", "after"):
            raise ValueError(f"which must be 'before' or 'after', got {which!r}")
        v = np.array([getattr(h, "kl_" + which) for h in self.heads])
        return v.reshape(self.n_layers, self.n_heads)

    @property
    def mean_kl_before(self) -> float:
        return float(self.kl_grid("before").mean())

    @property
    def mean_kl_after(self) -> float:
        return float(self.kl_grid("after").mean())

    def table(self) -> list[dict]:
        """One summary row per layer: mean KL before/after, worst head, parameter ranges."""
        out = []
        for layer in range(self.n_layers):
            hs = self.heads[layer * self.n_heads:(layer + 1) * self.n_heads]
            after = np.array([h.kl_after for h in hs])
            out.append({
                "layer": layer,
                "kl_before": float(np.mean([h.kl_before for h in hs])),
                "kl_after": float(after.mean()),
                "worst_head": int(after.argmax()),
                "worst_kl": float(after.max()),
                "B": _span([h.B for h in hs]),
                "S": _span([h.S for h in hs]),
                "D": _span([h.D for h in hs]),
            })
        return out

    def format_table(self) -> str:
        rows = self.table()
        head = f"{'layer':>5}  {'KL before':>9}  {'KL after':>9}  {'worst head':>10}  {'B':>9}  {'S':>7}  {'D':>9}"
        lines = [head, "-" * len(head)]
        for r in rows:
            lines.append(f"{r['layer']:>5}  {r['kl_before']:>9.4f}  {r['kl_after']:>9.4f}  "
                         f"{r['worst_head']:>4} {r['worst_kl']:>5.3f}  {r['B']:>9}  {r['S']:>7}  {r['D']:>9}")
        lines.append(f"{'all':>5}  {self.mean_kl_before:>9.4f}  {self.mean_kl_after:>9.4f}")
        return "\n".join(lines)

    # -- JSON
    def to_dict(self) -> dict:
        d = {"schema": SCHEMA_NAME, "schema_version": self.schema_version}
        for k in _META_TYPES:
            d[k] = getattr(self, k)
        d["before"] = self.before.as_dict()
        d["heads"] = [{k: getattr(h, k) for k in _HEAD_KEYS} for h in self.heads]
        return d

    def to_json(self, path) -> Path:
        """Write atomically: a temp file in the same folder, then os.replace."""
        return write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")

    @classmethod
    def from_dict(cls, d, source: str = "calibration") -> "Calibration":
        if not isinstance(d, dict):
            raise ValueError(f"{source}: top level must be a JSON object, got {type(d).__name__}")
        if d.get("schema") != SCHEMA_NAME:
            raise ValueError(f"{source}: not an hccs-lab calibration (schema {d.get('schema')!r}, expected {SCHEMA_NAME!r})")
        ver = d.get("schema_version")
        if not _is_int(ver) or ver != SCHEMA_VERSION:
            raise ValueError(f"{source}: unsupported schema_version {ver!r} (this hccs_lab reads {SCHEMA_VERSION})")
        meta = {}
        for k, t in _META_TYPES.items():
            if k not in d:
                raise ValueError(f"{source}: missing field {k!r}")
            meta[k] = _typed(d[k], t, f"{source}: field {k!r}")
        before = _params_from(d.get("before"), f"{source}: field 'before'")
        heads_raw = d.get("heads")
        if not isinstance(heads_raw, list):
            raise ValueError(f"{source}: field 'heads' must be a list, got {type(heads_raw).__name__}")
        heads = []
        for i, h in enumerate(heads_raw):
            where = f"{source}: heads[{i}]"
            if not isinstance(h, dict):
                raise ValueError(f"{where} must be an object, got {type(h).__name__}")
            missing = [k for k in _HEAD_KEYS if k not in h]
            if missing:
                raise ValueError(f"{where} is missing {', '.join(missing)}")
            vals = {}
            for k in _HEAD_KEYS:
                vals[k] = _typed(h[k], int if k in ("layer", "head", "B", "S", "D") else float, f"{where}.{k}")
            heads.append(HeadCalibration(**vals))
        heads.sort(key=lambda h: (h.layer, h.head))
        try:
            return cls(**meta, before=before, heads=tuple(heads), schema_version=ver)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None

    @classmethod
    def from_json(cls, path) -> "Calibration":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"calibration file {path} does not exist")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not valid JSON (truncated or corrupt?): {e}") from None
        return cls.from_dict(d, source=str(path))


def _span(v) -> str:
    lo, hi = min(v), max(v)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _typed(v, t, where):
    if t is int:
        if not _is_int(v):
            raise ValueError(f"{where} must be an integer, got {v!r}")
        return v
    if t is float:
        if _is_int(v):
            v = float(v)
        if not isinstance(v, float) or not math.isfinite(v):
            raise ValueError(f"{where} must be a finite number, got {v!r}")
        return v
    if not isinstance(v, t):
        raise ValueError(f"{where} must be a {t.__name__}, got {v!r}")
    return v


def _params_from(d, where) -> HCCSParams:
    if not isinstance(d, dict) or any(k not in d for k in ("B", "S", "D")):
        raise ValueError(f"{where} must be an object with B, S, D")
    return HCCSParams(*(_typed(d[k], int, f"{where}.{k}") for k in ("B", "S", "D")))


def _validate(c: Calibration) -> None:
    for k, t in _META_TYPES.items():
        v = getattr(c, k)
        if t is float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{k} must be a finite number, got {v!r}")
        elif t is int:
            if not _is_int(v):
                raise ValueError(f"{k} must be an integer, got {v!r}")
        elif not isinstance(v, t):
            raise ValueError(f"{k} must be a {t.__name__}, got {v!r}")
    for k in ("seq_len", "n_layers", "n_heads", "samples", "rows", "candidates"):
        if getattr(c, k) < 1:
            raise ValueError(f"{k} must be >= 1, got {getattr(c, k)}")
    if c.method not in METHODS:
        raise ValueError(f"method {c.method!r} is not one of {METHODS}")
    if c.granularity not in GRANULARITIES:
        raise ValueError(f"granularity {c.granularity!r} is not one of {GRANULARITIES}")
    if c.schema_version != SCHEMA_VERSION:
        raise ValueError(f"unsupported schema_version {c.schema_version!r} (this hccs_lab reads {SCHEMA_VERSION})")
    if not isinstance(c.before, HCCSParams):
        raise ValueError("before must be HCCSParams")
    bad = c.before.violations(c.seq_len)
    if bad:
        raise ValueError(f"'before' params invalid for seq_len={c.seq_len}: {'; '.join(bad)}")
    if not isinstance(c.heads, tuple) or not all(isinstance(h, HeadCalibration) for h in c.heads):
        raise ValueError("heads must be a tuple of HeadCalibration")
    seen = set()
    for h in c.heads:
        key = (h.layer, h.head)
        if not (0 <= h.layer < c.n_layers and 0 <= h.head < c.n_heads):
            raise ValueError(f"head entry (layer {h.layer}, head {h.head}) outside {c.n_layers} layers x {c.n_heads} heads")
        if key in seen:
            raise ValueError(f"duplicate entry for layer {h.layer}, head {h.head}")
        seen.add(key)
        bad = h.params.violations(c.seq_len)
        if bad:
            raise ValueError(f"layer {h.layer}, head {h.head}: params (B={h.B}, S={h.S}, D={h.D}) invalid for seq_len={c.seq_len}: {'; '.join(bad)}")
        if not (h.scale > 0 and math.isfinite(h.scale)):
            raise ValueError(f"layer {h.layer}, head {h.head}: scale must be finite and > 0, got {h.scale!r}")
        for k in ("kl_before", "kl_after"):
            v = getattr(h, k)
            if not (math.isfinite(v) and v >= -1e-9):
                raise ValueError(f"layer {h.layer}, head {h.head}: {k} must be a finite KL >= 0, got {v!r}")
    want = {(l, h) for l in range(c.n_layers) for h in range(c.n_heads)}
    missing = sorted(want - seen)
    if missing:
        shown = ", ".join(f"(layer {l}, head {h})" for l, h in missing[:5])
        raise ValueError(f"{len(missing)} head(s) missing: {shown}{' ...' if len(missing) > 5 else ''}")
    if list(c.heads) != sorted(c.heads, key=lambda h: (h.layer, h.head)):
        raise ValueError("heads must be ordered by (layer, head)")
    if c.granularity != "head":
        groups = {}
        for h in c.heads:
            groups.setdefault(h.layer if c.granularity == "layer" else 0, set()).add((h.B, h.S, h.D))
        for g, ps in groups.items():
            if len(ps) > 1:
                where = f"layer {g}" if c.granularity == "layer" else "the model"
                raise ValueError(f"granularity {c.granularity!r} but {where} has {len(ps)} different parameter sets")


# ---------------------------------------------------------------------------------------------
# the bank adapter


def calibrate(bank, seq_len: int | None = None, granularity: str = "head", method: str = "grid",
              samples: int | None = None, progress: bool = True, scale_multipliers: Sequence[float] = (1.0,),
              data_fingerprint: str | None = None, B_max: int | None = None) -> Calibration:
    """Calibrate every head of a LogitBank; one entry per head whatever the granularity.

    `layer` and `global` choose one parameter set for the pooled rows of a layer / the model (each
    head keeps its own int8 scale), with the same objective; `kl_after` is then each head's own
    mean KL under the shared set. `samples` is recorded (default: bank.n_texts).
    """
    from tqdm.auto import tqdm

    from . import __version__

    _check_granularity(granularity)
    _check_method(method)
    if method == "gradient" and len(tuple(scale_multipliers)) > 1:
        raise ValueError("scale_multipliers search is only supported with method='grid'")
    t0 = time.perf_counter()
    L, H = int(bank.n_layers), int(bank.n_heads)
    seq_len = int(getattr(bank, "seq_len")) if seq_len is None else seq_len
    if not _is_int(seq_len) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
    samples = int(getattr(bank, "n_texts")) if samples is None else samples
    if not _is_int(samples) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if data_fingerprint is None:
        data_fingerprint = getattr(bank, "fingerprint", None) or getattr(bank, "data_fingerprint", None)
        if data_fingerprint is None and getattr(bank, "texts", None) is not None:
            data_fingerprint = fingerprint_texts(bank.texts)
        data_fingerprint = data_fingerprint or "unknown"
    before = default_params(seq_len)
    mults = tuple(float(m) for m in scale_multipliers)
    if not mults or any(not (m > 0 and math.isfinite(m)) for m in mults):
        raise ValueError(f"scale_multipliers must be positive numbers, got {scale_multipliers!r}")
    if granularity != "head" and len(mults) > 1:
        raise ValueError("scale_multipliers search is only supported for granularity='head'")

    keys = [(l, h) for l in range(L) for h in range(H)]
    bar = tqdm(total=len(keys) * (2 if granularity != "head" else 1), desc=f"calibrate {granularity}/{method}",
               disable=not progress, leave=False)
    base_scale, stats = {}, {}
    rows_total = 0
    rows_of = {}
    for key in keys:
        hr = bank[key[0], key[1]]
        logits, mask = np.asarray(hr.logits), np.asarray(hr.mask)
        if logits.shape[-1] > seq_len:
            raise ValueError(f"layer {key[0]} head {key[1]}: rows have {logits.shape[-1]} keys, more than seq_len={seq_len}")
        base_scale[key] = choose_scale(logits, mask, percentile=SCALE_PERCENTILE)
        rows_of[key] = (logits, mask)
        if granularity != "head":
            stats[key] = row_stats(logits, mask, base_scale[key])
            rows_total += stats[key].n_rows
            bar.update(1)

    result = {}  # key -> (params, scale, stats at that scale)
    candidates = len(_region(max_base(seq_len) if B_max is None else min(max_base(seq_len), B_max)).cands)
    if granularity == "head":
        if method == "gradient":
            sts = [row_stats(*rows_of[k], base_scale[k]) for k in keys]
            rel = relax(sts)
            for k, r, st in zip(keys, rel, sts):
                res = polish(st, seq_len, r.u, r.D, B_max=B_max)
                result[k] = (res.params, base_scale[k], st)
                rows_total += st.n_rows
                bar.update(1)
        else:
            for k in keys:
                best = None
                for m in mults:
                    sc = base_scale[k] * m
                    st = row_stats(*rows_of[k], sc)
                    res = grid_search(st, seq_len, B_max=B_max)
                    if best is None or res.kl < best[0]:
                        best = (res.kl, res.params, sc, st)
                result[k] = (best[1], best[2], best[3])
                rows_total += best[3].n_rows
                bar.update(1)
    else:
        pools = {}
        for k in keys:
            pools.setdefault(k[0] if granularity == "layer" else 0, []).append(k)
        pooled_stats = [pool_stats([stats[k] for k in ks]) for ks in pools.values()]
        if method == "gradient":
            rel = relax(pooled_stats)
        for i, (g, ks) in enumerate(pools.items()):
            pooled = pooled_stats[i]
            if method == "grid":
                res = grid_search(pooled, seq_len, B_max=B_max)
            else:
                res = polish(pooled, seq_len, rel[i].u, rel[i].D, B_max=B_max)
            for k in ks:
                result[k] = (res.params, base_scale[k], stats[k])
            bar.update(len(ks))
    bar.close()

    heads = []
    for k in keys:
        params, sc, st = result[k]
        st_before = st if sc == base_scale[k] else row_stats(*rows_of[k], base_scale[k])
        kl = exact_kl(st, [[params.B, params.S, params.D]])[0]
        kl0 = exact_kl(st_before, [[before.B, before.S, before.D]])[0]
        heads.append(HeadCalibration(k[0], k[1], params.B, params.S, params.D, float(sc), float(kl0), float(kl)))
    return Calibration(
        model=str(getattr(bank, "model_name", "unknown")),
        seq_len=seq_len,
        n_layers=L,
        n_heads=H,
        samples=samples,
        rows=int(rows_total),
        data_fingerprint=str(data_fingerprint),
        method=method,
        granularity=granularity,
        hccs_lab_version=str(__version__),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=float(time.perf_counter() - t0),
        candidates=int(candidates),
        before=before,
        heads=tuple(heads),
    )
