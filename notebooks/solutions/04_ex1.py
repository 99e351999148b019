# Exercise 04.1: i16-div vs u8-clb, modelled cycles per row by n and schedule.
from hccs_lab.aie import estimate, hccs_kernel, HCCS_SCHEDULES
from hccs_lab.core import HCCSParams, max_base

for n in (32, 64, 128, 256):
    p = HCCSParams(min(200, max_base(n)), 3, 40)
    cells = []
    for variant in ("i16-div", "u8-clb"):
        for schedule in HCCS_SCHEDULES:
            r = estimate(hccs_kernel(p, variant, "aie-ml", n, schedule))
            cells.append(f"{variant}/{schedule}: {r.cycles_per_row:6.1f}")
    print(f"n={n:<4}", " | ".join(cells))
# The division is a call to a 32-step software routine (about 45 cycles with call and return), and a
# call inside the row loop stops software pipelining: at n=32 it dominates the row. With 4 rows per
# trip the four divisions still serialise on the scalar slot, but each row's vector work hides
# under the others' divisions, so wide64 gains more for div than for clb (which pipelines anyway).
# The register files are the catch: from n=64 on the 4-row schedules would keep more live vectors
# and accumulators than AIE-ML has, so the model staggers their rows (or spills) until they fit
# (each report's `registers` note says which), and at n=128 the fastest feasible u8-clb schedule
# is the 1-row wide64x1.
for n in (64, 128):
    r = estimate(hccs_kernel(HCCSParams(min(200, max_base(n)), 3, 40), "u8-clb", "aie-ml", n, "wide64s"))
    print(n, r.registers)
