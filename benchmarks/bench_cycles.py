"""Cycle-model validation against published figures, and the modelled throughput table.

Run: .venv/bin/python benchmarks/bench_cycles.py   (every figure is an emulator estimate)
"""
import argparse

from hccs_lab.aie.cycles import estimate, machine_for
from hccs_lab.aie.kernels import reference_kernel
from hccs_lab.viz.aie import print_throughput
from hccs_lab.aie.published import (PAPER_GELEM, bf16_baseline, fastest, paper_table_crosscheck,
                                     throughput_table, validation_checks)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clock-ghz", type=float, default=1.25)
    ap.add_argument("--tiles", type=int, default=184)
    a = ap.parse_args()

    print("== cycle model vs published figures ==")
    for c in validation_checks(a.clock_ghz):
        print(c.line())
    print("\n-- cross-check, not a target: the paper's throughput table as cycles per row --")
    for arch in ("aie-ml", "aie-mlv2"):
        for line in paper_table_crosscheck(arch, a.clock_ghz):
            print(f"{arch:<8} {line}")

    for arch in ("aie-ml", "aie-mlv2"):
        print(f"\n== modelled throughput, {arch}, {a.clock_ghz} GHz, G elements/s (paper's figure in brackets) ==")
        rows = throughput_table(arch, clock_ghz=a.clock_ghz)
        ns = sorted({r["n"] for r in rows})
        print_throughput(rows)

        print(f"\n-- fastest bit-exact u8-clb vs the modelled AMD bf16 reference ({bf16_baseline(arch)}) --")
        for n in ns:
            best = fastest(arch, "u8-clb", n, a.clock_ghz)
            ref = estimate(reference_kernel(bf16_baseline(arch), n, arch), clock_ghz=a.clock_ghz)
            pub = PAPER_GELEM.get((arch, n), {}).get("u8-clb")
            line = (f"n={n:<4} {best.schedule:<9} {best.gelem_per_s:5.2f} G/s, {best.cycles_per_row:6.1f} cycles/row, "
                    f"speedup over bf16 ref {best.gelem_per_s / ref.gelem_per_s:5.1f}x")
            if pub:
                line += f", vs paper i8+CLB {pub} G/s: {best.gelem_per_s / pub:4.2f}x"
            print(line)
            if n == 128 and arch == "aie-ml":
                goal = 1.5 * pub
                print(f"   goal >= 1.5x paper i8+CLB at n=128 = {goal:.2f} G/s: "
                      f"{'MET' if best.gelem_per_s >= goal else 'MISSED'}")
        best = fastest(arch, "u8-clb", 128, a.clock_ghz)
        print(f"   {a.tiles}-tile projection (n=128): {best.tiles(a.tiles):.0f} G elements/s "
              "(assumes independent rows per tile, no shared stream/DMA limit, linear scaling)")
    m = machine_for("aie-ml")
    print("\nmachine (aie-ml):", {k: v for k, v in vars(m).items() if k != "ports"})


if __name__ == "__main__":
    main()
