"""AI Engine side of hccs_lab: kernel IR, C++ emitter, bit-exact emulator, cycle model.

    from hccs_lab.aie import generate, emulate
    gen = generate(HCCSParams(200, 3, 40), "u8-clb", "aie-ml", 128, out_dir="k/")
    probs, report = emulate(gen.kernel, x_int8)

Every cycle figure is an emulator estimate, not a hardware measurement.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import HCCSParams
from .aie4ml import LAYOUTS as AIE4ML_LAYOUTS, aie4ml_kernel
from .cycles import AIE_ML, AIE_MLV2, CycleReport, Machine, estimate, machine_for, slot_view
from .emit import FORMAT, FORMAT_VERSION, Emitted, emit, write_kernel_dir
from .emulator import Emulator, emulate_kernel
from .ir import Kernel
from .kernels import (ARCHS, FASTEST_SCHEDULE, HCCS_SCHEDULES, HCCS_VARIANTS, REFERENCE_VARIANTS,
                      check_seq_len, fastest_schedule, hccs_kernel, reference_kernel)
from .machine import ASSUMPTIONS, RULES
from ..errors import InputError, MissingError


@dataclass
class Generated:
    kernel: Kernel
    emitted: Emitted
    out_dir: Path | None

    @property
    def source(self) -> str:
        return self.emitted.files[self.emitted.manifest["files"]["source"]]

    @property
    def header(self) -> str:
        return self.emitted.files["hccs_params.h"]

    @property
    def manifest(self) -> dict:
        return self.emitted.manifest


def generate(params: HCCSParams, variant: str, arch: str, seq_len: int, schedule: str | None = None,
             out_dir=None, valid_len: bool = False) -> Generated:
    """Build one head's kernel (fastest bit-exact schedule unless `schedule`; with `valid_len`,
    one that takes a per-row valid length), emit C++, optionally write it."""
    k = hccs_kernel(params, variant, arch, seq_len, schedule, valid_len)
    em = emit(k)
    out = write_kernel_dir(em, out_dir) if out_dir is not None else None
    return Generated(k, em, out)


def load_kernel_dir(path) -> Kernel:
    """Rebuild the IR of a kernel directory written by `generate` (its kernel.json is the contract)."""
    d = Path(path)
    if not d.is_dir():
        raise MissingError(f"kernel directory {d} does not exist")
    mf = d / "kernel.json"
    if not mf.exists():
        raise InputError(f"{d} is not an hccs-lab kernel directory: no kernel.json (generate one with `hccs-lab kernel`)")
    try:
        m = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{mf} is not valid JSON: {e}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise InputError(f"{mf} is not an hccs-lab kernel manifest (format {m.get('format') if isinstance(m, dict) else None!r})")
    if m.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{mf} has format_version {m.get('format_version')!r}; this hccs-lab reads {FORMAT_VERSION}")
    try:
        p = m["params"]
        params = HCCSParams(p["B"], p["S"], p["D"])
        k = hccs_kernel(params, m["variant"], m["arch"], m["seq_len"], m["schedule"], bool(m.get("valid_len", False)))
    except KeyError as e:
        raise InputError(f"{mf} lacks the field {e}") from None
    src = d / m.get("files", {}).get("source", "")
    if not src.is_file():
        raise InputError(f"{d}: kernel source {src.name} named in kernel.json is missing")
    return k


def emulate(kernel: Kernel, x: np.ndarray, clock_ghz: float | None = None,
            valid_len=None) -> tuple[np.ndarray, CycleReport]:
    """Outputs bit-exact as the kernel computes them, plus the cycle-model estimate."""
    y = Emulator(kernel).run(x, valid_len)
    return y, estimate(kernel, clock_ghz=clock_ghz)


def attention_breakdown(n: int, d_head: int, arch: str = "aie-ml", variant: str = "u8-clb", clock_ghz: float = 1.25):
    """Cycles of QK^T, softmax and P.V for one head (see hccs_lab.aie.mha)."""
    from .mha import attention_breakdown as _ab

    return _ab(n, d_head, arch, variant, clock_ghz)


def validation_points(clock_ghz: float = 1.25):
    """Every published point with the model's figure (see hccs_lab.aie.published)."""
    from .published import validation_points as _vp

    return _vp(clock_ghz)


__all__ = ["generate", "emulate", "load_kernel_dir", "estimate", "slot_view", "hccs_kernel", "aie4ml_kernel",
           "AIE4ML_LAYOUTS", "attention_breakdown", "validation_points", "fastest_schedule", "RULES", "ASSUMPTIONS",
           "reference_kernel", "emulate_kernel", "machine_for", "Machine", "AIE_ML", "AIE_MLV2",
           "HCCS_VARIANTS", "HCCS_SCHEDULES", "REFERENCE_VARIANTS", "ARCHS", "FASTEST_SCHEDULE",
           "Generated", "Kernel", "check_seq_len"]
