"""Published figures the cycle model is checked against, and the modelled throughput table."""
from __future__ import annotations

from dataclasses import dataclass

from ..core import HCCSParams, max_base
from .cycles import estimate
from .kernels import HCCS_SCHEDULES, HCCS_VARIANTS, REFERENCE_VARIANTS, hccs_kernel, reference_kernel

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
BANDS = {"tutorial": 0.20, "paper_clb": 0.25}


def typical_params(n: int) -> HCCSParams:
    """A valid mid-range head for n (cycle counts do not depend on the values, only on the path)."""
    return HCCSParams(min(200, max_base(n)), 2, 40)


@dataclass
class PublishedCheck:
    """One cycle-model figure next to the published one it must reproduce, within a band."""

    name: str
    model: float
    published: float
    band: float

    @property
    def ratio(self) -> float:
        return self.model / self.published

    @property
    def ok(self) -> bool:
        return abs(self.ratio - 1) <= self.band

    def line(self) -> str:
        return (f"{self.name:<52} model {self.model:8.1f}  published {self.published:8.1f}  "
                f"ratio {self.ratio:5.2f}  band +-{self.band:.0%}  {'OK' if self.ok else 'MISSED'}")


def validation_checks(clock_ghz: float = 1.25) -> list[PublishedCheck]:
    tut = estimate(reference_kernel("bf16-bittrick", 2048, "aie-ml"), clock_ghz=clock_ghz)
    out = [PublishedCheck("AMD AIE-ML bf16 softmax tutorial, 2048 classes (cycles)", tut.cycles_per_row,
                 TUTORIAL_CYCLES_2048, BANDS["tutorial"])]
    for n, pub in PAPER_CLB_CYCLES.items():
        r = estimate(hccs_kernel(typical_params(n), "u8-clb", "aie-ml", n, "paper"), clock_ghz=clock_ghz)
        out.append(PublishedCheck(f"paper-style u8-clb, 32 lanes, 3 passes, n={n} (cycles/row)", r.cycles_per_row,
                         pub, BANDS["paper_clb"]))
    return out


def paper_table_crosscheck(arch: str = "aie-ml", clock_ghz: float = 1.25) -> list[str]:
    """The paper-style kernels against the cycles per row that the paper's throughput table implies.

    Not an acceptance check: the paper gives no clock (paper.md §4.5), so the implied figure
    assumes `clock_ghz`, and the table may include per-call overheads the cycle counts do not.
    """
    lines = []
    for (a, n), figs in sorted(PAPER_GELEM.items()):
        if a != arch:
            continue
        for variant in ("u8-clb", "i16-div"):
            implied = n * clock_ghz / figs[variant]
            r = estimate(hccs_kernel(typical_params(n), variant, arch, n, "paper"), clock_ghz=clock_ghz)
            lines.append(f"paper-style {variant:<7} n={n:<4} model {r.cycles_per_row:6.1f} cycles/row; "
                         f"the paper's {figs[variant]:.2f} G/s implies {implied:6.1f} at {clock_ghz} GHz; "
                         f"ratio {r.cycles_per_row / implied:4.2f}")
    return lines


def throughput_table(arch: str = "aie-ml", ns=(32, 64, 128, 256), clock_ghz: float = 1.25) -> list[dict]:
    """Modelled G elements/s for every HCCS variant x schedule and every reference, by n."""
    rows = []
    for n in ns:
        p = typical_params(n)
        for v in HCCS_VARIANTS:
            for s in HCCS_SCHEDULES:
                r = estimate(hccs_kernel(p, v, arch, n, s), clock_ghz=clock_ghz)
                rows.append({"arch": arch, "n": n, "kernel": f"{v} / {s}", "variant": v, "schedule": s,
                             "cycles_per_row": r.cycles_per_row, "gelem_per_s": r.gelem_per_s})
        for ref in REFERENCE_VARIANTS:
            if (ref == "bf16-exp2") != (arch == "aie-mlv2"):
                continue
            r = estimate(reference_kernel(ref, n, arch), clock_ghz=clock_ghz)
            rows.append({"arch": arch, "n": n, "kernel": f"{ref} (reference)", "variant": ref,
                         "schedule": "reference", "cycles_per_row": r.cycles_per_row, "gelem_per_s": r.gelem_per_s})
    for row in rows:
        row["paper_gelem_per_s"] = PAPER_GELEM.get((arch, row["n"]), {}).get(
            {"i16-div": "i16-div", "u8-clb": "u8-clb"}.get(row["variant"], "bf16" if row["schedule"] == "reference" else "-"))
    return rows


def bf16_baseline(arch: str) -> str:
    """The modelled AMD reference the paper compares against on each generation."""
    return "bf16-lut" if arch == "aie-ml" else "bf16-exp2"


def fastest(arch: str, variant: str, n: int, clock_ghz: float = 1.25):
    best = None
    for s in HCCS_SCHEDULES:
        r = estimate(hccs_kernel(typical_params(n), variant, arch, n, s), clock_ghz=clock_ghz)
        if best is None or r.cycles_per_row < best.cycles_per_row:
            best = r
    return best
