"""The whole attention head in the cycle model: int8 QK^T and P.V as mmul kernels, and softmax.

`attention_breakdown(n, d_head, arch, variant)` gives, for one head and n tokens, the modelled
cycles of S = Q K^T (int8 x int8 -> int8 scores), of softmax over the n rows of S (an HCCS
variant's fastest schedule, the paper's kernel, and the bf16 reference), and of O = P V, and
softmax's share of the head: the paper's motivating claim, measured in the model. Every figure
is an emulator estimate, not a hardware measurement.

The matrix multiplies follow the AIE API's `aie::mmul` (mmul_8_8.hpp): one native tile product
per VMAC, 4x8x8 on AIE-ML (256 MACs per cycle, AM020), 8x8x8 on AIE-MLv2. Each kernel step
computes a 2x2 block of output tiles (two A tiles and two B tiles loaded, four products), so the
loads (3 x 256 bits per product on AIE-ML) stay under the one vec slot; the k loop is flattened
while a block's products fit one software-pipelined trip (4 per step, II <= 40), the loop over
output blocks then being the pipelined row loop; a longer k loop stays the pipelined inner loop. The kernel IR is
the cycle model's subject only (the emulator does not run it).
"""
from __future__ import annotations

from .cycles import estimate
from .ir import Buffer, Carry, Kernel, Loop, VType
from .kernels import OpBuilder, check_seq_len, hccs_kernel, reference_kernel
from .machine import machine_for
from .published import bf16_baseline, typical_params
from .aie4ml import aie4ml_kernel
from ..errors import InputError



def mmul_kernel(M: int, K: int, N: int, arch: str, name: str = "mmul") -> Kernel:
    """C[M x N] = A[M x K] B[K x N], int8 in, int8 out (SRS), as blocks of 2 x 2 native tiles."""
    m = machine_for(arch)
    tm, tk, tn = m.mmul_shape
    bm, bn = 2 * tm, 2 * tn
    if M % bm or N % bn or K % tk:
        raise InputError(f"{name}: M={M}, N={N}, K={K} must be multiples of {bm}, {bn} and {tk} on {arch}")
    steps = K // tk
    a_t, b_t = VType("int8", tm * tk), VType("int8", tk * tn)
    acc = VType("int32", tm * tn, "acc32")
    b = OpBuilder()
    b.op("zero", "const", VType("int32", tm * tn), imm=(0,))
    b.op("acc0", "ups", acc, "zero")
    body = OpBuilder()
    carries = []
    for i in range(2):
        body.op(f"a{i}", "load", a_t, buf="amat")
        body.op(f"b{i}", "load", b_t, buf="bmat")
    for i in range(2):
        for j in range(2):
            carries.append(Carry(f"c{i}{j}", "mmul", "acc0", f"a{i}", f"b{j}"))
    flat = 4 * steps <= m.max_ii   # four products per step on the one vec slot
    b.ops.append(Loop(steps, tuple(body.ops), tuple(carries), flat, "kloop"))
    for i in range(2):
        for j in range(2):
            b.op(f"o{i}{j}", "srs", VType("int8", tm * tn), f"c{i}{j}", imm=(7,))
            b.op(None, "store", None, f"o{i}{j}", buf="cmat")
    blocks = (M // bm) * (N // bn)
    return Kernel(name=name, family="mmul", variant="int8-mmul", schedule=f"{tm}x{tk}x{tn} 2x2", arch=arch,
                  n=bm * bn, lanes=tm * tn,
                  buffers=(Buffer("amat", "int8", "in"), Buffer("bmat", "int8", "scratch"),
                           Buffer("cmat", "int8", "out")),
                  body=tuple(b.ops), saturation="saturate",
                  params={"M": M, "K": K, "N": N, "blocks": blocks, "macs": M * K * N},
                  notes=f"{blocks} blocks of {bm}x{bn} outputs, {steps} k-steps each")


def mmul_cycles(M: int, K: int, N: int, arch: str, clock_ghz: float = 1.25, name: str = "mmul") -> dict:
    k = mmul_kernel(M, K, N, arch, name)
    rep = estimate(k, clock_ghz=clock_ghz)
    blocks = k.params["blocks"]
    cyc = rep.total_cycles(blocks)
    return {"kernel": name, "M": M, "K": K, "N": N, "cycles": cyc, "macs": M * K * N,
            "macs_per_cycle": M * K * N / cyc, "cycles_per_block": rep.cycles_per_row,
            "pipelined": rep.row_loop_pipelined, "registers": rep.registers}


def _softmax_cycles(k: Kernel, n: int, clock_ghz: float) -> tuple[float, str]:
    rep = estimate(k, clock_ghz=clock_ghz)
    return rep.total_cycles(n), rep.schedule


def attention_breakdown(n: int, d_head: int, arch: str = "aie-ml", variant: str = "u8-clb",
                        clock_ghz: float = 1.25) -> dict:
    """Per head and n: cycles of QK^T, softmax and P.V on one tile, and softmax's share.

    `softmax` is `variant` with hccs-lab's fastest schedule; `paper_softmax` the paper's kernel
    (aie4ml's linear softmax_i8, same variant); `reference_softmax` AMD's bf16 reference
    (`bf16_baseline`). `total` and `softmax_share` use `softmax`; the `*_total` / `*_share`
    entries the alternatives. All cycles are emulator estimates.
    """
    check_seq_len(n)
    qk = mmul_cycles(n, d_head, n, arch, clock_ghz, "qk_t")
    pv = mmul_cycles(n, n, d_head, arch, clock_ghz, "p_v")
    p = typical_params(n)
    sm, sched = _softmax_cycles(hccs_kernel(p, variant, arch, n), n, clock_ghz)
    paper, _ = _softmax_cycles(aie4ml_kernel(p, variant, arch, n, "linear"), n, clock_ghz)
    ref_name = bf16_baseline(arch)
    ref, _ = _softmax_cycles(reference_kernel(ref_name, n, arch), n, clock_ghz)
    mm = qk["cycles"] + pv["cycles"]

    def share(x):
        return x / (mm + x)

    return {"n": n, "d_head": d_head, "arch": arch, "variant": variant, "clock_ghz": clock_ghz,
            "qk_cycles": qk["cycles"], "softmax_cycles": sm, "pv_cycles": pv["cycles"],
            "total": qk["cycles"] + sm + pv["cycles"], "softmax_share": share(sm), "softmax_schedule": sched,
            "paper_softmax_cycles": paper, "paper_total": mm + paper, "paper_share": share(paper),
            "reference": ref_name, "reference_softmax_cycles": ref, "reference_total": mm + ref,
            "reference_share": share(ref), "qk": qk, "pv": pv,
            "estimate": "emulator cycle-model estimate, not a hardware measurement"}
