"""Fast, exact HCCS metrics for a fixed set of rows, through per-row histograms of int8 distances.

HCCS sees a row only through its int8 distances d = max - x in [0, 255], so for a fixed scale a row
is fully described by how many keys sit at each distance (`counts`) and how much softmax mass sits
there (`mass`). Every metric for any (B, S, D) and any variant then costs O(rows x 256) instead of
O(rows x n), and the KL map over all (S, D) for one B costs O(rows x 128 x 128) with prefix sums,
which is what keeps a slider move of the playground in a few milliseconds.

Definitions (the same as the direct computation with `hccs_lab.surrogate` and `hccs_lab.metrics`):
* reference p = softmax of the float logits over the valid keys;
* HCCS q = the chosen variant's integer output `hccs_int(int8(logits, scale), params, out, recip)`
  read as a probability (i16 / 32767, u8 / 255);
* KL = `metrics.kl(p, q, mask)` (q floored at 2**-16); Kendall tau-b = `metrics.kendall_tau(p, q, mask)`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import KL_FLOOR
from ..surrogate import INT16_MAX, U8_NUMER, HCCSParams, quantize_logits, softmax

NBINS = 256
VARIANTS = ("i16-div", "u8-div", "i16-clb", "u8-clb")
OUT_SCALE = {"i16": float(INT16_MAX), "u8": 255.0}


def split_variant(variant: str) -> tuple:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    out, recip = variant.split("-")
    return out, recip


def int8_distances(logits: np.ndarray, mask: np.ndarray, scale: float) -> np.ndarray:
    """max - x of the int8 view, as int16 in [0, 255] (0 under the mask)."""
    q = quantize_logits(logits, scale, mask=mask).astype(np.int16)
    mx = np.where(mask, q, -128).max(axis=1, keepdims=True)
    return np.where(mask, mx - q, 0).astype(np.int16)


@dataclass
class PointMetrics:
    """Per-row KL and tau plus the integer output per distance bin, for one (params, variant)."""

    kl_rows: np.ndarray  # [rows]
    tau_rows: np.ndarray  # [rows]
    out_bins: np.ndarray  # [rows, 256] integer output of a key at each distance
    prob_bins: np.ndarray  # [rows, 256] the same read as a probability

    @property
    def kl_mean(self) -> float:
        return float(self.kl_rows.mean())

    @property
    def kl_p95(self) -> float:
        return float(np.percentile(self.kl_rows, 95))

    @property
    def tau_mean(self) -> float:
        return float(self.tau_rows.mean())


class BinnedRows:
    """Rows of one head reduced to distance histograms for one int8 `scale`.

    `logits` float [rows, n], `mask` bool [rows, n]; rows without any valid key are refused (they
    carry no information and every metric leaves them out).
    """

    def __init__(self, logits: np.ndarray, mask: np.ndarray, scale: float):
        logits = np.asarray(logits)
        mask = np.asarray(mask, dtype=bool)
        if logits.ndim != 2 or logits.shape != mask.shape:
            raise ValueError(f"logits {logits.shape} and mask {mask.shape} must both be [rows, n]")
        if not mask.any(axis=1).all():
            raise ValueError("every row needs at least one valid key; drop empty rows first")
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be finite and > 0, got {scale}")
        self.scale = float(scale)
        self.mask = mask
        self.logits = np.where(mask, logits, 0.0).astype(np.float64)
        self.rows, self.n = mask.shape
        self.p = softmax(self.logits, mask=mask)  # [rows, n]
        self.d = int8_distances(self.logits, mask, self.scale)  # [rows, n]
        self.N = mask.sum(axis=1).astype(np.int64)  # valid keys per row
        flat = (np.arange(self.rows)[:, None] * NBINS + self.d)[mask]
        self.counts = np.bincount(flat, minlength=self.rows * NBINS).reshape(self.rows, NBINS).astype(np.int64)
        self.mass = np.bincount(flat, weights=self.p[mask], minlength=self.rows * NBINS).reshape(self.rows, NBINS)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.neg_entropy = np.where(self.p > 0, self.p * np.log(np.where(self.p > 0, self.p, 1.0)), 0.0).sum(1)
        self.untied_p = _untied_pairs_of_values(self.p, mask)
        # for the KL map: Cmin[r, D] = sum_d counts[r, d] * min(d, D), D = 0..127
        dd = np.arange(NBINS)
        self._min_dD = np.minimum(dd[:, None], np.arange(128)[None, :]).astype(np.float64)  # [256, 128]
        self.Cmin = self.counts.astype(np.float64) @ self._min_dD  # [rows, 128]
        cm = np.cumsum(self.mass, axis=1)
        self.tail = 1.0 - np.concatenate([np.zeros((self.rows, 1)), cm[:, :127]], axis=1)  # mass at d >= D
        self.tail = np.clip(self.tail, 0.0, 1.0)

    # -- one point ---------------------------------------------------------------------------------

    def point(self, params: HCCSParams, variant: str = "i16-div") -> PointMetrics:
        """Exact per-row metrics of one valid (B, S, D) and variant (raises ValueError when invalid)."""
        out, recip = split_variant(variant)
        params.validate(self.n)
        B, S, D = params.B, params.S, params.D
        s = (B - S * np.minimum(np.arange(NBINS), D)).astype(np.int64)  # score of a key at distance d
        Z = self.counts @ s  # [rows], >= B >= 1 since the max key sits at d = 0
        if recip == "div":
            rho = (INT16_MAX if out == "i16" else U8_NUMER) // Z
        else:
            k = np.frexp(Z.astype(np.float64))[1] - 1  # floor(log2 Z), exact for int32
            rho = (INT16_MAX >> k) if out == "i16" else (255 << (15 - k))
        prod = s[None, :] * rho[:, None]
        out_bins = np.minimum(prod, INT16_MAX) if out == "i16" else np.minimum(prod >> 15, 255)
        prob = out_bins / OUT_SCALE[out]
        kl_rows = self.neg_entropy - (self.mass * np.log(np.maximum(prob, KL_FLOOR))).sum(1)
        return PointMetrics(kl_rows, self._tau(out_bins), out_bins, prob)

    def _tau(self, out_bins: np.ndarray) -> np.ndarray:
        """Kendall tau-b of (p, q) per row.

        q is a non-increasing function of the int8 distance, and the int8 rounding is monotone, so no
        pair of keys is ever discordant: a pair is concordant exactly when q separates it (keys tied
        in p have equal logits, hence equal distance and equal q). tau-b = sqrt(untied_q / untied_p).
        """
        new_level = np.ones_like(out_bins, dtype=bool)
        new_level[:, 1:] = out_bins[:, 1:] != out_bins[:, :-1]
        level = np.cumsum(new_level, axis=1) - 1
        flat = (np.arange(self.rows)[:, None] * NBINS + level).ravel()
        per_level = np.bincount(flat, weights=self.counts.ravel(), minlength=self.rows * NBINS).reshape(self.rows, NBINS)
        untied_q = 0.5 * (self.N.astype(np.float64) ** 2 - (per_level**2).sum(1))
        den = np.sqrt(untied_q * self.untied_p)
        return np.where(den > 0, untied_q / np.where(den > 0, den, 1.0), 0.0)

    def key_output(self, pm: PointMetrics, row: int) -> tuple:
        """(integer output, probability) of every key of one row, in key order (0 under the mask)."""
        d = self.d[row]
        m = self.mask[row]
        return np.where(m, pm.out_bins[row, d], 0), np.where(m, pm.prob_bins[row, d], 0.0)

    def key_probs(self, pm: PointMetrics) -> np.ndarray:
        """HCCS probabilities of every key of every row [rows, n] (0 under the mask)."""
        return np.where(self.mask, np.take_along_axis(pm.prob_bins, self.d.astype(np.int64), axis=1), 0.0)

    # -- the whole (S, D) plane for one B, i16 + div --------------------------------------------

    def kl_map(self, B: int) -> np.ndarray:
        """Mean KL of the i16+div output over every (S, D) in 0..127 x 0..127 for base B; NaN where invalid.

        Exact and cheap because with division there is no saturation or flooring inside a row:
        q_d = s_d * rho / 32767 with s_d = B - S*min(d, D) and rho = 32767 // Z, so
        sum_d P_d log q_d = sum_{d<D} P_d log s_d + tail(D) log s_D + mass(s>0)(log rho - log 32767),
        and the first sum is a prefix sum over d for each S.
        """
        if isinstance(B, bool) or not isinstance(B, (int, np.integer)) or B < 1:
            raise ValueError(f"B must be a positive integer, got {B!r}")
        B = int(B)
        out = np.full((128, 128), np.nan)
        if self.n * B > INT16_MAX:
            return out
        S_all, D_all = np.meshgrid(np.arange(128), np.arange(128), indexing="ij")
        ok = S_all * D_all <= B
        S, D = S_all[ok], D_all[ok]  # only the valid combinations (about 1,500 of 16,384 for B = 255)
        # every term but log(rho) is linear in the row's mass, so it only needs the mean histogram
        mass_bar = self.mass.mean(axis=0)[:128]
        tail_bar = self.tail.mean(axis=0)  # [D]
        d = np.arange(128)
        s_Sd = B - np.arange(128)[:, None] * d[None, :]  # [S, d]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_s = np.where(s_Sd > 0, np.log(np.where(s_Sd > 0, s_Sd, 1)), 0.0)
        G = np.concatenate([np.zeros((128, 1)), np.cumsum(mass_bar[None, :] * log_s, axis=1)[:, :127]], axis=1)  # [S, D]
        sD = B - S * D
        zero_tail = sD == 0
        log_sD = np.log(np.where(sD > 0, sD, 1))
        # log(rho) per row and combination; 32767 / Z in float64 floors exactly (Z <= 32767)
        Z = B * self.N[:, None].astype(np.float64) - S[None, :] * self.Cmin[:, D]  # [rows, K]
        log_rho = np.log(np.floor(INT16_MAX / Z))
        mean_log_rho = log_rho.mean(axis=0)
        tail_log_rho = (self.tail[:, D] * log_rho).mean(axis=0)
        cross = (
            G[S, D]
            + np.where(zero_tail, 0.0, tail_bar[D] * log_sD)
            + mean_log_rho
            - np.where(zero_tail, tail_log_rho, 0.0)
            - (1.0 - np.where(zero_tail, tail_bar[D], 0.0)) * np.log(INT16_MAX)
            + np.where(zero_tail, tail_bar[D] * np.log(KL_FLOOR), 0.0)
        )
        out[S, D] = self.neg_entropy.mean() - cross
        return out


def _untied_pairs_of_values(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pairs of valid keys with different values, per row: (N^2 - sum over tie groups g^2) / 2."""
    v = np.where(mask, values, np.inf)
    srt = np.sort(v, axis=1)
    valid_sorted = np.isfinite(srt)
    new = np.ones_like(srt, dtype=bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]
    grp = np.cumsum(new, axis=1) - 1
    rows, n = v.shape
    flat = (np.arange(rows)[:, None] * n + grp)[valid_sorted]
    g = np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)
    N = mask.sum(1).astype(np.float64)
    return 0.5 * (N**2 - (g**2).sum(1))
