"""Calibration methods compared by the accuracy they give: the exact grid, the gradient method, a coarse grid.

The exact grid and the gradient method are `hccs_lab.calibrate`'s. The coarse grid stands for the
kind of search the paper describes ("a grid search over a bounded integer parameter space", taking
seconds, grid not given): a hand-written grid of about ten values per parameter, every point
evaluated with the same objective (mean KL(softmax || HCCS int16) on the head's rows at its int8
scale, `calibrate.exact_kl`), the best point kept. Steps, and why:

* B in steps of 64 up to the largest base n*B <= 32767 allows (plus that largest base): only S/B and
  D shape the output after normalisation, so B mostly sets the output resolution; 64 is one int8
  step of the accumulator's top byte at n = 64, and gives 8 values there;
* S in powers of two, 1..32: the slope is a ratio, so a log-spaced grid covers its range evenly,
  and powers of two are what a person picks first;
* D in steps of 16, 16..112, plus 127: eight clips over the int8 distance range.

That is 8 x 6 x 8 = 384 points before the target's rules remove some: a grid a Python loop over
`hccs_int` on 64 calibration sentences evaluates in seconds per head, as the paper says its search
does. Each head keeps the int8 scale the other methods use (`choose_scale` at the 99th percentile).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..calibrate import SCALE_PERCENTILE, calibrate, exact_kl, row_stats
from ..core.params import HCCSParams, max_base, target_mask
from ..core.relaxed import choose_scale
from ..errors import InputError

CALIBRATION_METHODS = ("grid", "gradient", "coarse-grid")
COARSE_B_STEP = 64
COARSE_S = (1, 2, 4, 8, 16, 32)
COARSE_D = (16, 32, 48, 64, 80, 96, 112, 127)
METHOD_NOTES = {
    "grid": "exact integer grid: every valid (B, S, D) of the target, branch and bound (hccs_lab.calibrate)",
    "gradient": "continuous relaxation of (B, S, D) fitted with Adam, then an exact integer polish (hccs_lab.calibrate)",
    "coarse-grid": f"coarse grid like the paper's: B in steps of {COARSE_B_STEP} up to the largest allowed, "
                   f"S in {{{', '.join(map(str, COARSE_S))}}}, D in {{{', '.join(map(str, COARSE_D))}}}",
}


def coarse_candidates(seq_len: int, target: str) -> np.ndarray:
    """The coarse grid's (B, S, D) points [K, 3] that the target accepts for rows of `seq_len`."""
    top = max_base(seq_len)
    Bs = sorted(set(range(COARSE_B_STEP, top + 1, COARSE_B_STEP)) | {top})
    grid = np.array([(B, S, D) for B in Bs for S in COARSE_S for D in COARSE_D], dtype=np.int64)
    keep = grid[target_mask(grid, seq_len, target)]
    if len(keep) == 0:
        raise InputError(f"the coarse grid has no point valid under target {target} for seq_len={seq_len}")
    return keep


@dataclass(frozen=True)
class CoarseCalibration:
    """Per-head (B, S, D) and scale from the coarse grid; reads like a `Calibration` for `HCCSTables`."""

    n_layers: int
    n_heads: int
    heads: tuple  # ((B, S, D, scale, kl), ...) ordered by (layer, head)
    candidates: int
    seconds: float
    granularity: str = "head"
    method: str = "coarse-grid"

    def params(self, layer: int, head: int) -> HCCSParams:
        return HCCSParams(*self.heads[layer * self.n_heads + head][:3])

    def scale(self, layer: int, head: int) -> float:
        return self.heads[layer * self.n_heads + head][3]

    @property
    def mean_kl_after(self) -> float:
        return float(np.mean([h[4] for h in self.heads]))


def coarse_grid(bank, seq_len: int, target: str) -> CoarseCalibration:
    """Calibrate every head of a captured bank on the coarse grid (per head)."""
    t0 = time.perf_counter()
    cands = coarse_candidates(seq_len, target)
    heads = []
    for layer in range(int(bank.n_layers)):
        for head in range(int(bank.n_heads)):
            rows = bank[layer, head]
            scale = choose_scale(rows.logits, rows.mask, percentile=SCALE_PERCENTILE)
            kl = exact_kl(row_stats(rows.logits, rows.mask, scale), cands)
            best = int(np.argmin(kl))
            B, S, D = (int(v) for v in cands[best])
            heads.append((B, S, D, float(scale), float(kl[best])))
    return CoarseCalibration(int(bank.n_layers), int(bank.n_heads), tuple(heads), len(cands),
                             time.perf_counter() - t0)


def calibrate_with(bank, seq_len: int, method: str, granularity: str = "head", target: str = "aie4ml",
                   progress: bool = False):
    """A calibration of `bank` by one of CALIBRATION_METHODS (coarse-grid: per head only)."""
    if method not in CALIBRATION_METHODS:
        raise InputError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    if method == "coarse-grid":
        if granularity != "head":
            raise InputError("the coarse grid is compared per head only")
        return coarse_grid(bank, seq_len, target)
    return calibrate(bank, seq_len, granularity=granularity, method=method, progress=progress, target=target)
