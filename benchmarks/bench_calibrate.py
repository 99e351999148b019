"""Calibration speed and quality: all 72 heads of minilm-l6, 64 Rotten Tomatoes texts, seq-len 128.

Goal (issue 4): `grid` at per-head granularity in <= 10 s on the 2-core machine, capture excluded
(reported separately). Prints the time per head, the candidates evaluated exactly against the size
of the set, mean KL per granularity with the gap of layer/global over per-head, and the gradient
method's KL and time next to grid's.

    .venv/bin/python benchmarks/bench_calibrate.py [--samples 64] [--seq-len 128] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exhaustive-heads", type=int, default=1,
                    help="also evaluate every candidate of this many heads exactly, to compare (default 1)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from hccs_lab import calibrate as C
    from hccs_lab.capture import capture_logits
    from hccs_lab.data import calibration_texts
    from hccs_lab.models import load
    from hccs_lab.core import choose_scale, max_base

    t = time.perf_counter()
    texts = calibration_texts(args.samples)
    loaded = load(args.model)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    bank = capture_logits(loaded, texts, max_len=args.seq_len, progress=False)
    t_capture = time.perf_counter() - t
    heads = bank.n_layers * bank.n_heads
    rows = bank[0, 0].logits.shape[0]
    print(f"model {args.model}: {bank.n_layers} layers x {bank.n_heads} heads, {args.samples} texts, "
          f"{rows} rows per head, seq_len {args.seq_len}")
    print(f"load {t_load:.2f} s, capture {t_capture:.2f} s (not counted below)")

    C.candidate_region(max_base(args.seq_len))  # candidate layout: built once per process, a fixed cost
    t = time.perf_counter()
    C.candidate_region.cache_clear()
    C.candidate_region(max_base(args.seq_len))
    t_region = time.perf_counter() - t

    # per-head grid, instrumented: the same work as calibrate(), timed per stage
    evaluated, candidates, t_stats, t_search = 0, 0, 0.0, 0.0
    for l in range(bank.n_layers):
        for h in range(bank.n_heads):
            r = bank[l, h]
            t = time.perf_counter()
            st = C.row_stats(r.logits, r.mask, choose_scale(r.logits, r.mask))
            t_stats += time.perf_counter() - t
            res = C.grid_search(st, args.seq_len)
            t_search += res.seconds
            evaluated += res.evaluated
            candidates += res.candidates

    results, cpu = {}, {}
    for gran in ("head", "layer", "global"):
        t, c = time.perf_counter(), time.process_time()
        results[gran] = C.calibrate(bank, args.seq_len, granularity=gran, progress=False)
        results[gran] = (results[gran], time.perf_counter() - t)
        cpu[gran] = time.process_time() - c
    t = time.perf_counter()
    grad = C.calibrate(bank, args.seq_len, method="gradient", progress=False)
    t_grad = time.perf_counter() - t

    cal, t_head = results["head"]
    print(f"\ncandidate set: every valid (B, S, D) for n={args.seq_len}: {candidates // heads:,} per head")
    print(f"evaluated exactly: {evaluated:,} of {candidates:,} ({evaluated / candidates:.2%}); "
          f"the rest pruned by a proven lower bound")
    print(f"candidate layout (once per process): {t_region:.2f} s")
    print(f"row statistics {t_stats:.2f} s + search {t_search:.2f} s = {(t_stats + t_search) / heads * 1e3:.1f} ms per head")
    goal = 10.0
    print(f"\ngrid, per head, all {heads} heads (calibrate(), incl. before/after KL): {t_head:.2f} s "
          f"= {t_head / heads * 1e3:.1f} ms/head; goal <= {goal:.0f} s: {'MET' if t_head <= goal else 'NOT MET'} "
          f"({goal / t_head:.2f}x margin)")
    # CPU seconds of this process: what the run costs when the machine is not shared (numpy here
    # is single-threaded, so on an idle machine wall ~ CPU)
    print(f"  CPU time of that run: {cpu['head']:.2f} s = {cpu['head'] / heads * 1e3:.1f} ms/head "
          f"(wall/CPU {t_head / max(cpu['head'], 1e-9):.2f}: >1 means the machine was busy)")
    base = cal.mean_kl_after
    print(f"\n{'granularity':>11}  {'mean KL':>8}  {'gap vs head':>11}  {'ratio':>6}  {'time s':>6}")
    for gran, (c, secs) in results.items():
        print(f"{gran:>11}  {c.mean_kl_after:>8.4f}  {c.mean_kl_after - base:>+11.4f}  {c.mean_kl_after / base:>6.2f}  {secs:>6.2f}")
    print(f"{'(default)':>11}  {cal.mean_kl_before:>8.4f}  {cal.mean_kl_before - base:>+11.4f}  "
          f"{cal.mean_kl_before / base:>6.2f}        (before: {cal.before.B}/{cal.before.S}/{cal.before.D})")
    same = sum(cal.params(h.layer, h.head) == h.params for h in grad.heads)
    worst = float(np.max(grad.kl_grid() - cal.kl_grid()))
    print(f"\ngradient (relax + polish): mean KL {grad.mean_kl_after:.5f} vs grid {base:.5f} "
          f"(gap {grad.mean_kl_after - base:+.5f}, worst head {worst:+.5f}), {t_grad:.2f} s vs {t_head:.2f} s; "
          f"{same}/{heads} heads identical")
    # the pruned search against evaluating all 218,957 candidates exactly (same vectorised objective)
    from hccs_lab.core import valid_region

    every_cands = valid_region(args.seq_len)
    for i in range(args.exhaustive_heads):
        l, h = divmod(i * 7 % heads, bank.n_heads)
        r = bank[l, h]
        st = C.row_stats(r.logits, r.mask, choose_scale(r.logits, r.mask))
        t = time.perf_counter()
        every = C.exact_kl(st, every_cands)
        t_every = time.perf_counter() - t
        res = C.grid_search(st, args.seq_len)
        print(f"exhaustive check layer {l} head {h}: all {len(every_cands):,} exactly {t_every:.1f} s -> min {every.min():.6f} "
              f"{tuple(int(v) for v in every_cands[every.argmin()])}; pruned grid {res.seconds:.3f} s -> {res.kl:.6f} {res.params} "
              f"({t_every / res.seconds:.0f}x faster, same optimum: {abs(every.min() - res.kl) < 1e-12})")
        assert abs(every.min() - res.kl) < 1e-12
    for g in ("layer", "global"):  # per head is the lowest for every head, by construction
        assert np.all(results["head"][0].kl_grid() <= results[g][0].kl_grid() + 1e-12)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
