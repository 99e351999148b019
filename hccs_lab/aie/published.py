"""Published figures the cycle model is checked against, and the modelled throughput table.

Every published point (DESIGN.md "Anchors", reference/paper.md §4.5, reference/aie.md §3.3) is
compared with the model's figure for the kernel of known structure behind it:

* the paper's throughput table (18 figures): i16+Div and i8+CLB are the paper's kernel, which is
  aie4ml's linear `softmax_i8` (`aie4ml_kernel(..., "linear")`, u8-clb for i8+CLB); the bf16
  baseline is AMD's reference for each generation (`bf16_baseline`);
* the paper's 29 and 69 cycles per row (i8+CLB, n = 32 and 128; taken on AIE-ML);
* AMD's Vitis AIE-ML softmax tutorial: 8,083 cycles for 2048 classes (its six-loop kernel).

Nothing here is fitted: a point's ratio is what the rules in `machine.RULES` give.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..core import HCCSParams, max_base
from .aie4ml import aie4ml_kernel
from .cycles import estimate
from .kernels import HCCS_VARIANTS, REFERENCE_VARIANTS, hccs_kernel, reference_kernel, schedules_for

# Published anchors (reference/aie.md §3.3; reference/paper.md §4.5)
TUTORIAL_CYCLES_2048 = 8083          # Vitis AIE-ML softmax tutorial, 2048 classes, 16 lanes
PAPER_CLB_CYCLES = {32: 29, 128: 69}  # paper's CLB kernel, cycles per row
PAPER_GELEM = {  # (arch, n) -> {bf16, i16-div, u8-clb} in G elements/s, one tile
    ("aie-ml", 32): {"bf16": 0.09, "i16-div": 0.41, "u8-clb": 1.36},
    ("aie-ml", 64): {"bf16": 0.16, "i16-div": 0.78, "u8-clb": 2.19},
    ("aie-ml", 128): {"bf16": 0.25, "i16-div": 1.37, "u8-clb": 2.18},
    ("aie-mlv2", 32): {"bf16": 0.24, "i16-div": 0.41, "u8-clb": 1.46},
    ("aie-mlv2", 64): {"bf16": 0.46, "i16-div": 0.78, "u8-clb": 2.46},
    ("aie-mlv2", 128): {"bf16": 0.77, "i16-div": 1.41, "u8-clb": 2.21},
}
BAND = (0.80, 1.25)                  # issue 14's acceptance band on model / published
GEOMEAN_LIMIT = math.log(1.12)       # and on the geometric mean of |log ratio|
BANDS = {"tutorial": 0.25, "paper_clb": 0.25}   # kept for callers of the older checks


def typical_params(n: int) -> HCCSParams:
    """A valid mid-range head for n (cycle counts do not depend on the values, only on the path);
    it also satisfies aie4ml's rules, so the paper's kernel accepts it."""
    return HCCSParams(min(200, max_base(n)), 2, 40)


def bf16_baseline(arch: str) -> str:
    """The modelled AMD reference the paper compares against on each generation.

    AIE-ML (VEK280): AMD's own Versal AIE-ML softmax, the Vitis tutorial kernel (bf16 arithmetic
    with the bit-trick exp; the paper names no code, and mlir-aie's LUT kernel targets the Ryzen
    AI NPUs). AIE-MLv2: the native bf16 exp2 kernel ([S1]: "native bf16 exponential").
    """
    return "bf16-bittrick" if arch == "aie-ml" else "bf16-exp2"


@dataclass
class Point:
    """One published figure next to the model's figure for the same kernel."""

    name: str
    arch: str
    n: int
    kernel: str
    model: float
    published: float
    unit: str

    @property
    def ratio(self) -> float:
        return self.model / self.published

    @property
    def ok(self) -> bool:
        return BAND[0] <= self.ratio <= BAND[1]

    def as_dict(self) -> dict:
        return {"name": self.name, "arch": self.arch, "n": self.n, "kernel": self.kernel,
                "model": round(self.model, 4), "published": self.published, "unit": self.unit,
                "ratio": round(self.ratio, 4), "within_band": self.ok}


def validation_points(clock_ghz: float = 1.25) -> list[Point]:
    """Every published point: the paper's 18 throughput figures, its 29 / 69 cycles per row and
    AMD's 8,083-cycle tutorial, each with the model's figure (emulator estimates)."""
    pts = []
    for (arch, n), figs in PAPER_GELEM.items():
        p = typical_params(n)
        for key in ("bf16", "i16-div", "u8-clb"):
            if key == "bf16":
                k = reference_kernel(bf16_baseline(arch), n, arch)
                kname = bf16_baseline(arch)
            else:
                k = aie4ml_kernel(p, key, arch, n, "linear")
                kname = f"aie4ml-linear {key}"
            r = estimate(k, clock_ghz=clock_ghz)
            label = {"bf16": "bf16 reference", "i16-div": "i16+Div", "u8-clb": "i8+CLB"}[key]
            pts.append(Point(f"paper table {arch} n={n} {label}", arch, n, kname, r.gelem_per_s, figs[key],
                             "G elements/s"))
    for n, cyc in PAPER_CLB_CYCLES.items():
        r = estimate(aie4ml_kernel(typical_params(n), "u8-clb", "aie-ml", n, "linear"), clock_ghz=clock_ghz)
        pts.append(Point(f"paper CLB kernel n={n}", "aie-ml", n, "aie4ml-linear u8-clb", r.cycles_per_row, cyc,
                         "cycles/row"))
    tut = estimate(reference_kernel("bf16-bittrick", 2048, "aie-ml"), clock_ghz=clock_ghz)
    pts.append(Point("AMD AIE-ML bf16 softmax tutorial, 2048 classes", "aie-ml", 2048, "bf16-bittrick",
                     tut.cycles_per_row, TUTORIAL_CYCLES_2048, "cycles"))
    return pts


def summary(points: list[Point]) -> dict:
    logs = [abs(math.log(p.ratio)) for p in points]
    gm = sum(logs) / len(logs)
    return {"points": len(points), "within_band": sum(p.ok for p in points), "band": list(BAND),
            "mean_abs_log_ratio": round(gm, 4), "geomean_factor": round(math.exp(gm), 4),
            "limit_abs_log_ratio": round(GEOMEAN_LIMIT, 4), "geomean_ok": gm <= GEOMEAN_LIMIT,
            "misses": [p.name for p in points if not p.ok]}


# the rule each miss would need (printed with the table; a statement, not a fit)
MISS_NOTES = {
    "i8+CLB n=128": "the model pipelines the paper's row loop at n=128 at the pipeliner's limit (II 40, "
                    "3 stages); the measured 69-73 cycles sit between that and one unpipelined row (~100): "
                    "matching needs the measured compiler's II choice (chess, not documented), not a rule we can cite",
    "bf16": "the bf16 references are invoked once per row; the per-call cost (~20 cycles, an assumption) "
            "and the emulated float calls decide them; no source gives the paper's baseline code or call overhead",
}


def miss_note(p: Point) -> str:
    if p.n == 128 and ("i8+CLB" in p.name or "CLB kernel" in p.name):
        return MISS_NOTES["i8+CLB n=128"]
    if "bf16" in p.name:
        return MISS_NOTES["bf16"]
    return ""


def paper_table_crosscheck(arch: str = "aie-ml", clock_ghz: float = 1.25) -> list[str]:
    """The paper's kernel (aie4ml linear) against the cycles per row the paper's table implies at
    `clock_ghz` (the paper states no clock; 1.25 GHz makes its n=32 figure its 29 cycles)."""
    lines = []
    for (a, n), figs in sorted(PAPER_GELEM.items()):
        if a != arch:
            continue
        for variant in ("u8-clb", "i16-div"):
            implied = n * clock_ghz / figs[variant]
            r = estimate(aie4ml_kernel(typical_params(n), variant, arch, n, "linear"), clock_ghz=clock_ghz)
            lines.append(f"aie4ml-linear {variant:<7} n={n:<4} model {r.cycles_per_row:6.1f} cycles/row; "
                         f"the paper's {figs[variant]:.2f} G/s implies {implied:6.1f} at {clock_ghz} GHz; "
                         f"ratio {r.cycles_per_row / implied:4.2f}")
    return lines


def throughput_table(arch: str = "aie-ml", ns=(32, 64, 128, 256), clock_ghz: float = 1.25) -> list[dict]:
    """Modelled G elements/s for every HCCS variant x schedule, aie4ml's two kernels, and every
    reference of the generation, by n."""
    rows = []
    for n in ns:
        p = typical_params(n)
        for v in HCCS_VARIANTS:
            for s in schedules_for(n):
                r = estimate(hccs_kernel(p, v, arch, n, s), clock_ghz=clock_ghz)
                rows.append({"arch": arch, "n": n, "kernel": f"{v} / {s}", "variant": v, "schedule": s,
                             "cycles_per_row": r.cycles_per_row, "gelem_per_s": r.gelem_per_s,
                             "pipelined": r.row_loop_pipelined, "registers": r.registers})
            for layout in ("linear", "tiled"):
                r = estimate(aie4ml_kernel(p, v, arch, n, layout), clock_ghz=clock_ghz)
                rows.append({"arch": arch, "n": n, "kernel": f"{v} / aie4ml-{layout}", "variant": v,
                             "schedule": f"aie4ml-{layout}", "cycles_per_row": r.cycles_per_row,
                             "gelem_per_s": r.gelem_per_s, "pipelined": r.row_loop_pipelined,
                             "registers": r.registers})
        for ref in REFERENCE_VARIANTS:
            if (ref == "bf16-exp2") != (arch == "aie-mlv2") and ref != "bf16-bittrick":
                continue
            r = estimate(reference_kernel(ref, n, arch), clock_ghz=clock_ghz)
            rows.append({"arch": arch, "n": n, "kernel": f"{ref} (reference)", "variant": ref,
                         "schedule": "reference", "cycles_per_row": r.cycles_per_row, "gelem_per_s": r.gelem_per_s,
                         "pipelined": False, "registers": r.registers})
    for row in rows:
        key = {"i16-div": "i16-div", "u8-clb": "u8-clb"}.get(row["variant"])
        if row["schedule"] == "reference":
            key = "bf16" if row["variant"] == bf16_baseline(arch) else None
        row["paper_gelem_per_s"] = PAPER_GELEM.get((arch, row["n"]), {}).get(key) if key else None
    return rows


def fastest(arch: str, variant: str, n: int, clock_ghz: float = 1.25, valid_len: bool = False):
    """The fastest bit-exact register-feasible hccs-lab schedule's report for (arch, variant, n)."""
    best = None
    for s in schedules_for(n):
        r = estimate(hccs_kernel(typical_params(n), variant, arch, n, s, valid_len), clock_ghz=clock_ghz)
        if r.registers.startswith("does NOT fit"):
            continue
        if best is None or r.cycles_per_row < best.cycles_per_row:
            best = r
    return best
