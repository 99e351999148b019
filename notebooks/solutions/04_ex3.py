# Exercise 04.3: N-tile projection of the fastest u8-clb kernel at n=128.
from hccs_lab.aie.published import fastest

for arch in ("aie-ml", "aie-mlv2"):
    for ghz in (1.0, 1.25):
        best = fastest(arch, "u8-clb", 128, clock_ghz=ghz)
        print(f"{arch:<8} {ghz} GHz: {best.schedule} {best.gelem_per_s:.2f} G/s per tile -> "
              f"{best.tiles(184):.0f} G elements/s on 184 tiles (paper, AIE-MLv2 i8+CLB: 407)")
# Assumes rows are independent and every tile is fed at its own rate (no shared stream or DMA
# limit), so throughput scales linearly with tiles, as the paper's figure does.
