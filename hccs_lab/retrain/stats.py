"""Paired comparison of two classifiers on the same test sentences: the difference and its 95% interval.

Interval: a paired bootstrap over test sentences. Each resample draws n sentences with replacement
and takes the mean of (a correct) - (b correct) over them; the interval is the 2.5th and 97.5th
percentile of 10,000 such means (seed 0, so a file is reproducible). Since the mean of a resample
depends only on how many sentences of each kind it drew (a right and b wrong, a wrong and b right,
both the same), the resamples are drawn as multinomial counts of those three kinds, which is the
same distribution as resampling indices and costs nothing. McNemar's exact test on the discordant
pairs is given next to it (`p_mcnemar`): the probability, were both equally accurate, of a split of
the discordant sentences at least this uneven.

This interval covers the test-set sampling only: a QAT run repeated with another training seed
moves too, which `accuracy_per_seed` in the results (several `--repeats`) shows.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

RESAMPLES = 10_000
LEVEL = 0.95
METHOD = (f"paired bootstrap over test sentences ({RESAMPLES:,} resamples, percentile {int(100 * LEVEL)}% interval, "
          "seed 0); McNemar's exact test on the discordant sentences alongside")


def paired_difference(correct, reference, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Accuracy of `correct` minus that of `reference` (boolean per sentence), in points, with its 95% interval.

    Returns {"diff_pp", "ci95_pp": [lo, hi], "better": a right & b wrong, "worse": a wrong & b right,
    "p_mcnemar", "n"}.
    """
    a = np.asarray(correct, dtype=bool)
    b = np.asarray(reference, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise InputError(f"paired comparison needs two equal-length 1-d boolean arrays, got {a.shape} and {b.shape}")
    n = a.size
    better, worse = int(np.sum(a & ~b)), int(np.sum(~a & b))
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [better / n, worse / n, (n - better - worse) / n], size=resamples)
    diffs = 100.0 * (counts[:, 0] - counts[:, 1]) / n
    lo, hi = np.percentile(diffs, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return {"diff_pp": 100.0 * (better - worse) / n, "ci95_pp": [float(lo), float(hi)], "better": better,
            "worse": worse, "p_mcnemar": mcnemar_exact(better, worse), "n": n}


def mcnemar_exact(better: int, worse: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of `better` out of the discordant pairs at 1/2."""
    from scipy.stats import binomtest

    k = better + worse
    return 1.0 if k == 0 else float(binomtest(better, k, 0.5).pvalue)


def format_difference(d: dict | None) -> str:
    """"-0.4 [-1.2, +0.3]" (points), or "" when there is no comparison."""
    if not d:
        return ""
    lo, hi = d["ci95_pp"]
    return f"{d['diff_pp']:+.1f} [{lo:+.1f}, {hi:+.1f}]"
