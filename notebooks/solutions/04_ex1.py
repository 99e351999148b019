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
# The division is a ~74-cycle software routine on the scalar unit, and a call inside the row loop
# stops software pipelining: at n=32 it dominates the row. With 4 rows per trip the four
# divisions still serialise on the scalar slot, but each row's vector work hides under the
# others' divisions, so wide64 gains more for div than for clb (which is already pipelined);
# wide64s also shares the reduction-tree tails of its 4 rows, which helps both.
