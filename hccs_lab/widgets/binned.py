"""Fast, exact HCCS metrics of one head's rows for the playground, from their int8-distance histograms.

HCCS sees a row only through its int8 distances below the row max
(`hccs_lab.core.histograms`), so for a fixed scale every metric of any (B, S, D) and variant costs
O(rows x 256) instead of O(rows x n), and the KL map over all (S, D) for one B is the calibration
objective (`hccs_lab.calibrate.objective.exact_kl`) over those candidates, which keeps a slider move
in a few milliseconds.

Definitions (the same as the direct computation with `hccs_lab.core` and `hccs_lab.core.metrics`):
* reference p = softmax of the float logits over the valid keys;
* HCCS q = the chosen variant's integer output `hccs_int(int8(logits, scale), params, out, recip)`
  read as a probability (i16 / 32767, u8 / 255);
* KL = `metrics.kl(p, q, mask)` (q floored at 2**-16); Kendall tau-b = `metrics.kendall_tau(p, q, mask)`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..calibrate.objective import exact_kl, stats_from_histograms
from ..core.histograms import N_DIST as NBINS
from ..core.histograms import distance_histograms
from ..core.metrics import KL_FLOOR
from ..core.params import INT16_MAX, HCCSParams, full_scale, split_variant
from ..core.reference import reciprocal
from ..errors import InputError


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
            raise InputError(f"logits {logits.shape} and mask {mask.shape} must both be [rows, n]")
        h = distance_histograms(logits, mask, scale)
        self.scale = float(scale)
        self.mask = mask
        self.rows, self.n = mask.shape
        self.p, self.d, self.counts, self.mass, self.neg_entropy = h.p, h.d, h.counts, h.mass, h.neg_entropy
        self.N = h.N
        self.untied_p = _untied_pairs_of_values(self.p, mask)
        self._hist = h
        self._stats = None  # the calibration objective's statistics, built on the first KL map

    # -- one point ---------------------------------------------------------------------------------

    def point(self, params: HCCSParams, variant: str = "i16-div") -> PointMetrics:
        """Exact per-row metrics of one valid (B, S, D) and variant (raises ValueError when invalid)."""
        out, recip = split_variant(variant)
        params.validate(self.n)
        B, S, D = params.B, params.S, params.D
        s = (B - S * np.minimum(np.arange(NBINS), D)).astype(np.int64)  # score of a key at distance d
        Z = self.counts @ s  # [rows], >= B >= 1 since the max key sits at d = 0
        rho = reciprocal(Z, out, recip)
        prod = s[None, :] * rho[:, None]
        out_bins = np.minimum(prod, INT16_MAX) if out == "i16" else np.minimum(prod >> 15, 255)
        prob = out_bins / float(full_scale(out))
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

        This is the calibration objective (`exact_kl`) on this head's rows, evaluated on the valid
        (S, D) of base B (about 1,500 of 16,384 for B = 255).
        """
        if isinstance(B, bool) or not isinstance(B, (int, np.integer)) or B < 1:
            raise InputError(f"B must be a positive integer, got {B!r}")
        B = int(B)
        out = np.full((128, 128), np.nan)
        if self.n * B > INT16_MAX:
            return out
        if self._stats is None:
            self._stats = stats_from_histograms(self._hist)
        S_all, D_all = np.meshgrid(np.arange(128), np.arange(128), indexing="ij")
        ok = S_all * D_all <= B
        S, D = S_all[ok], D_all[ok]
        out[S, D] = exact_kl(self._stats, np.stack([np.full_like(S, B), S, D], axis=1))
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
