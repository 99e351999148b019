"""Emulator speed: M elements/s per HCCS kernel on [256 rows, 128], and a whole minilm-l6 attention.

Goals (issue 5): >= 50 M elements/s per head on [256, 128]; 72 heads x 128 rows x 128 keys in <= 0.5 s.
Run: .venv/bin/python benchmarks/bench_emulator.py
"""
import time

import numpy as np

from hccs_lab.core import HCCSParams
from hccs_lab.aie.emulator import Emulator
from hccs_lab.aie.kernels import HCCS_SCHEDULES, HCCS_VARIANTS, hccs_kernel


def best_of(fn, reps=7):
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(256, 128)).astype(np.int8)
    p = HCCSParams(200, 3, 40)
    print("== per head, [256 rows, 128] (goal >= 50 M elements/s) ==")
    worst = float("inf")
    for v in HCCS_VARIANTS:
        for s in HCCS_SCHEDULES:
            em = Emulator(hccs_kernel(p, v, "aie-ml", 128, s))
            em.run(x)
            dt = best_of(lambda: em.run(x), reps=20)
            rate = x.size / dt / 1e6
            worst = min(worst, rate)
            print(f"{v:<8} {s:<9} {dt * 1e3:7.3f} ms  {rate:7.1f} M elements/s")
    print(f"slowest: {worst:.1f} M elements/s -> goal {'MET' if worst >= 50 else 'MISSED'}")

    print("\n== per head with per-row valid lengths, and aie4ml's kernels as IR, [256 rows, 128] ==")
    from hccs_lab.aie.aie4ml import aie4ml_kernel

    vl = rng.integers(0, 129, size=len(x))
    for v in HCCS_VARIANTS:
        em = Emulator(hccs_kernel(p, v, "aie-ml", 128, valid_len=True))
        dt = best_of(lambda: em.run(x, vl), reps=20)
        line = f"{v:<8} valid_len {dt * 1e3:7.3f} ms  {x.size / dt / 1e6:7.1f} M elements/s"
        for layout in ("linear", "tiled"):
            ea = Emulator(aie4ml_kernel(p, v, "aie-ml", 128, layout))
            dt = best_of(lambda: ea.run(x), reps=20)
            line += f"   aie4ml-{layout} {x.size / dt / 1e6:7.1f} M elements/s"
        print(line)

    print("\n== whole minilm-l6 attention: 72 heads x 128 rows x 128 keys, one kernel per head (goal <= 0.5 s) ==")
    heads = [HCCSParams(int(b), int(s), int(d)) for b, s, d in zip(rng.integers(100, 256, 72),
                                                                    rng.integers(1, 4, 72), rng.integers(10, 33, 72))]
    xs = rng.integers(-128, 128, size=(72, 128, 128)).astype(np.int8)

    def whole(build: bool):
        kernels = [hccs_kernel(h, "u8-clb", "aie-ml", 128) for h in heads] if build else cached
        for k, xh in zip(kernels, xs):
            Emulator(k).run(xh)

    cached = [hccs_kernel(h, "u8-clb", "aie-ml", 128) for h in heads]
    with_build = best_of(lambda: whole(True), reps=5)
    run_only = best_of(lambda: whole(False), reps=5)
    n_el = xs.size
    print(f"building 72 kernels + emulating: {with_build:.3f} s ({n_el / with_build / 1e6:.1f} M elements/s)")
    print(f"emulating 72 prebuilt kernels:   {run_only:.3f} s ({n_el / run_only / 1e6:.1f} M elements/s)")
    print(f"goal <= 0.5 s: {'MET' if with_build <= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
