"""Speed of the HCCS integer reference and of the fidelity metrics (issue 2 goals).

    .venv/bin/python benchmarks/bench_core.py [--repeats 15]

Input: [72 heads, 256 rows, 128 keys] int8 logits (all-MiniLM-L6-v2 has 6 x 12 = 72 heads),
quantised from Gaussian logits with a per-head spread. numpy's float softmax runs on the same
int8 values cast to float32. The metrics run on one head sample [256, 128]: kl and
rank_preservation of HCCS (i16+div / 32767) against softmax. Timings are the best of
`--repeats` runs (the median is printed beside it): the machine may be shared.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from hccs_lab.metrics import kl, rank_preservation
from hccs_lab.core import HCCSParams, hccs_int, quantize_logits

SHAPE = (72, 256, 128)
GOAL_MELEM = 100.0  # hccs_int, M elements/s
GOAL_RATIO = 2.0  # hccs_int / numpy softmax
GOAL_METRICS_MS = 5.0  # kl + rank_preservation, one head sample


def timed(fn, repeats: int) -> tuple[float, float]:
    """(best, median) seconds of fn() over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def numpy_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def make_input(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(int8 logits [72, 256, 128], per-head scale [72, 1]): 4 standard deviations span 127 steps."""
    rng = np.random.default_rng(seed)
    spread = rng.uniform(1.0, 4.0, (SHAPE[0], 1, 1))  # broad and focused heads
    logits = rng.normal(0.0, 1.0, SHAPE) * spread
    scale = spread[..., 0] * 4.0 / 127.0
    return quantize_logits(logits, scale), scale


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)

    x, scale = make_input()
    xf = x.astype(np.float32)
    n_elem = x.size
    params = HCCSParams(B=200, S=3, D=60)  # a typical calibrated head at n=128
    params.validate(SHAPE[-1])

    print(f"input int8 {list(SHAPE)} = {n_elem / 1e6:.2f} M elements, params {params}")
    best_sm, med_sm = timed(lambda: numpy_softmax(xf), args.repeats)
    rate_sm = n_elem / best_sm / 1e6
    print(f"  numpy softmax (float32)   {best_sm * 1e3:7.2f} ms  (median {med_sm * 1e3:6.2f})  {rate_sm:7.1f} M elem/s")

    ok = True
    for out in ("i16", "u8"):
        for recip in ("div", "clb"):
            best, med = timed(lambda: hccs_int(x, params, out, recip), args.repeats)
            rate = n_elem / best / 1e6
            ratio = rate / rate_sm
            met = rate >= GOAL_MELEM and ratio >= GOAL_RATIO
            ok &= met
            print(f"  hccs_int {out}+{recip:<3}          {best * 1e3:7.2f} ms  (median {med * 1e3:6.2f})  "
                  f"{rate:7.1f} M elem/s  {ratio:4.1f}x softmax  "
                  f"goal >= {GOAL_MELEM:.0f} M/s and >= {GOAL_RATIO:.0f}x: {'met' if met else 'NOT met'}")

    # one head sample: softmax of the dequantised logits vs HCCS i16+div
    head = x[0]
    p = numpy_softmax(head.astype(np.float64) * scale[0, 0])
    q = hccs_int(head, params, "i16", "div") / 32767.0
    best, med = timed(lambda: (kl(p, q), rank_preservation(p, q)), args.repeats)
    met = best * 1e3 <= GOAL_METRICS_MS
    ok &= met
    rp = rank_preservation(p, q)
    print(f"metrics on one head sample {list(head.shape)}: kl + rank_preservation {best * 1e3:.2f} ms "
          f"(median {med * 1e3:.2f}); goal <= {GOAL_METRICS_MS:.0f} ms: {'met' if met else 'NOT met'}")
    print(f"  (mean kl {kl(p, q).mean():.4f}, tau {rp.kendall_tau:.3f}, top1 {rp.top1:.3f}, top{rp.k} {rp.topk:.3f})")
    print("all goals met" if ok else "some goals NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
