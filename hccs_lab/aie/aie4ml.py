"""aie4ml's HCCS kernels as IR, so the cycle model and the emulator see the kernels users run.

The authors' toolchain (`aie4ml[onnx]==0.2.1`, `templates/nnet_utils/softmax/softmax.{h,cpp}`)
has two HCCS kernels; their structure is rebuilt here from that source (loops and pragmas as
written, no code copied):

* ``linear`` (`softmax_i8`, the paper's kernel): whole rows of 32-lane int8 vectors, one row at a
  time. Pass 1 peels the first vector and runs `aie::max` over the rest, then `reduce_max`; pass 2
  per vector: d = min(u8(max) - u8(x), Dmax), an acc32 preset to B, `mac(acc, d, -S)`, a running
  acc32 sum, the score narrowed to int16 into one scratch row; `reduce_add` of the sum narrowed to
  int32; a scalar reciprocal (CLB shift or a `/` software division); pass 3 multiplies each score
  by the reciprocal broadcast as int16 and narrows with OUT_SHIFT. None of its loops has a pragma.
* ``tiled`` (`softmax_i8_tiled`, microtiles of 4 rows x 8 features, the variant aie4ml prefers):
  a band of 4 rows, 32 lanes = one microtile; per-row max by a segmented shuffle tree; the score
  written as c + S*max(x, lo) with lo = max(row_max - Dmax, -128) and c = B - S*row_max (per-row
  scalars spread over their lane group); Z = NB*c + S*sum(y) by a MAC chain; a segmented sum;
  reciprocals for the 4 rows at once (CLB shifts, or `batched_reciprocal`: a float `aie::inv`
  seed corrected to the exact quotient by integer steps); pass 3 as in the linear kernel.

Both equal `hccs_int` bit for bit inside aie4ml's rules (`target_violations(..., "aie4ml")`:
n*(B - S*D) >= 256 keeps the int16 reciprocal in range), which `aie4ml_kernel` enforces. The IR
is for the emulator and the cycle model; the C++ that runs is aie4ml's own (hccs_lab.export).
"""
from __future__ import annotations

from ..core.params import INT16_MAX, U8_NUMER, HCCSParams, split_variant, target_violations
from ..errors import InputError, InputTypeError
from .ir import Buffer, Carry, Kernel, Loop, VType, scalar
from .kernels import ARCHS, HCCS_VARIANTS, OpBuilder

LAYOUTS = ("linear", "tiled")
VEC = 32                       # SOFTMAX_I8_VEC_SIZE
MT_OUTER, MT_INNER = 4, 8      # aie4ml's preferred microtile (preferred_microtile: outer=4, inner=8)
INV_SHIFT = 15                 # DEFAULT_INV_SHIFT; aie4ml's rule for exact u8 output


def aie4ml_kernel(params: HCCSParams, variant: str, arch: str, n: int, layout: str = "linear") -> Kernel:
    """aie4ml's `softmax_i8` (layout "linear") or `softmax_i8_tiled` (layout "tiled", 4x8
    microtiles) for one head, as IR. Refuses parameters outside aie4ml's rules, naming them."""
    if variant not in HCCS_VARIANTS:
        raise InputError(f"variant must be one of {HCCS_VARIANTS}, got {variant!r}")
    if arch not in ARCHS:
        raise InputError(f"arch must be one of {ARCHS}, got {arch!r}")
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not isinstance(params, HCCSParams):
        raise InputTypeError(f"params must be HCCSParams, got {type(params).__name__}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputTypeError(f"n must be a positive int, got {n!r}")
    quantum = VEC if layout == "linear" else MT_INNER
    if n % quantum or n < VEC:
        raise InputError(f"aie4ml's {layout} kernel needs n a multiple of {quantum} and at least {VEC}, got {n}")
    bad = target_violations(params, n, "aie4ml")
    if bad:
        raise InputError(f"parameters outside aie4ml's rules: {'; '.join(bad)}")
    build = _linear if layout == "linear" else _tiled
    return build(params, variant, arch, n)


def _reciprocal(b: OpBuilder, variant: str, z: str, t: VType, batched: bool) -> str:
    out_kind, recip = split_variant(variant)
    numer = INT16_MAX if out_kind == "i16" else U8_NUMER
    if recip == "div":
        b.op("numer", "sconst", t, imm=(numer,))
        return b.op("inv", "sdiv_batched" if batched else "sdiv", t, "numer", z)
    b.op("k", "slog2", t, z)                      # 31 - clb(sum)
    if out_kind == "i16":
        b.op("c32767", "sconst", t, imm=(INT16_MAX,))
        return b.op("inv", "sshr", t, "c32767", "k")
    b.op("c255", "sconst", t, imm=(255,))
    b.op("cshift", "sconst", t, imm=(INV_SHIFT,))
    b.op("sh", "ssub", t, "cshift", "k")
    return b.op("inv", "sshl", t, "c255", "sh")


def _linear(params: HCCSParams, variant: str, arch: str, n: int) -> Kernel:
    B, S, D = params.B, params.S, params.D
    out_kind, recip = split_variant(variant)
    out_elem = "int16" if out_kind == "i16" else "uint8"
    vecs = n // VEC
    v8, u8v, v16 = VType("int8", VEC), VType("uint8", VEC), VType("int16", VEC)
    acc = VType("int32", VEC, "acc32")
    b = OpBuilder()
    # pass 1: vmax = first vector, then aie::max over the others; reduce_max
    b.op("vmax0", "load", v8, buf="logits")
    if vecs > 1:
        p1 = OpBuilder()
        p1.op("x1", "load", v8, buf="logits")
        b.ops.append(Loop(vecs - 1, tuple(p1.ops), (Carry("vmax", "max", "vmax0", "x1"),), False, "pass_max", 1))
    b.op("m", "reduce_max", scalar("int8"), "vmax" if vecs > 1 else "vmax0")
    b.op("mb", "bcast", v8, "m")
    b.op("max_u", "cast", u8v, "mb")
    b.op("dmax", "const", u8v, imm=(D,))            # min(d, (uint8)DMAX): the scalar broadcast
    b.op("neg_s", "const", v8, imm=(-S,))
    b.op("b32", "const", VType("int32", VEC), imm=(B,))
    b.op("acc_b", "ups", acc, "b32")                # acc.from_vector(broadcast<int32>(B)), loop-invariant
    b.op("z32", "const", VType("int32", VEC), imm=(0,))
    b.op("acc_zero", "ups", acc, "z32")             # aie::zeros<acc32, VEC>()
    p2 = OpBuilder()
    p2.op("x2", "load", v8, buf="logits")
    p2.op("xu", "cast", u8v, "x2")
    p2.op("dist", "sub", u8v, "max_u", "xu")
    p2.op("dcl", "min", u8v, "dist", "dmax")
    p2.op("d8", "cast", v8, "dcl")
    p2.op("score", "mac", acc, "acc_b", "d8", "neg_s")
    p2.op("score16", "srs", v16, "score", imm=(0,))
    p2.op(None, "store", None, "score16", buf="scratch")
    b.ops.append(Loop(vecs, tuple(p2.ops), (Carry("acc_sum", "add", "acc_zero", "score"),), False, "pass_score"))
    b.op("sumv", "srs", VType("int32", VEC), "acc_sum", imm=(0,))   # acc_sum.to_vector<int32_t>()
    b.op("z", "reduce_add", scalar("int32"), "sumv")
    inv = _reciprocal(b, variant, "z", scalar("int32"), False)
    b.op("inv_vec", "bcast", v16, inv)               # broadcast<int16>(inv_q0): truncating
    p3 = OpBuilder()
    p3.op("v", "load", v16, buf="scratch")
    p3.op("prod", "mul", acc, "v", "inv_vec")
    p3.op("o", "srs", VType(out_elem, VEC), "prod", imm=(0 if out_kind == "i16" else INV_SHIFT,))
    p3.op(None, "store", None, "o", buf="probs")
    b.ops.append(Loop(vecs, tuple(p3.ops), (), False, "pass_norm"))
    return Kernel(name=f"aie4ml_linear_{out_kind}_{recip}_n{n}", family="aie4ml", variant=variant,
                  schedule="aie4ml-linear", arch=arch, n=n, lanes=VEC,
                  buffers=(Buffer("logits", "int8", "in"), Buffer("scratch", "int16", "scratch"),
                           Buffer("probs", out_elem, "out")),
                  body=tuple(b.ops), rounding="floor", saturation="saturate",
                  params={"B": B, "S": S, "D": D, "wide_rho": 0},
                  notes="aie4ml 0.2.1 softmax_i8 (linear): the paper's kernel, structure from the wheel's source")


def _tiled(params: HCCSParams, variant: str, arch: str, n: int) -> Kernel:
    B, S, D = params.B, params.S, params.D
    out_kind, recip = split_variant(variant)
    out_elem = "int16" if out_kind == "i16" else "uint8"
    blk = MT_OUTER * MT_INNER
    nb = n // MT_INNER
    v8, v16 = VType("int8", blk), VType("int16", blk)
    acc = VType("int32", blk, "acc32")
    st32, st16 = VType("int32", MT_OUTER), VType("int16", MT_OUTER)   # per-row statistics of the band
    b = OpBuilder()
    b.op("s_v", "const", v8, imm=(S,))
    b.op("nb_v", "const", v16, imm=(nb,))
    b.op("neg_inf", "const", v8, imm=(-128,))
    p1 = OpBuilder()
    p1.op("x1", "load", v8, buf="band")
    b.ops.append(Loop(nb, tuple(p1.ops), (Carry("vmax", "max", "neg_inf", "x1"),), False, "pass_max"))
    b.op("row_max", "seg_reduce_max", st32, "vmax", imm=(MT_INNER,))
    # lo = max(row_max - DMAX, -128) and c = B - S*row_max, per row, on the scalar unit
    b.op("cd", "sconst", st32, imm=(D,))
    b.op("cmin", "sconst", st32, imm=(-128,))
    b.op("lo_raw", "ssub", st32, "row_max", "cd")
    b.op("lo16", "smax", st16, "lo_raw", "cmin")
    b.op("cs", "sconst", st32, imm=(S,))
    b.op("cb", "sconst", st32, imm=(B,))
    b.op("srm", "smul", st32, "cs", "row_max")
    b.op("c16", "ssub", st16, "cb", "srm")
    b.op("lo_s", "spread", v16, "lo16", imm=(MT_INNER,))
    b.op("lo_acc", "ups", acc, "lo_s")
    b.op("lo_v", "srs", v8, "lo_acc", imm=(0,))      # accum(spread).to_vector<int8>(0)
    b.op("c_v", "spread", v16, "c16", imm=(MT_INNER,))
    b.op("c_acc", "ups", acc, "c_v")
    b.op("zsum0", "mul", acc, "c_v", "nb_v")         # zsum = mul(c_v, nb_v)
    p2 = OpBuilder()
    p2.op("x2", "load", v8, buf="band")
    p2.op("y", "max", v8, "x2", "lo_v")
    p2.op("sc", "mac", acc, "c_acc", "y", "s_v")
    p2.op("sc16", "srs", v16, "sc", imm=(0,))
    p2.op(None, "store", None, "sc16", buf="scores")
    b.ops.append(Loop(nb, tuple(p2.ops), (Carry("zsum", "mac", "zsum0", "y", "s_v"),), False, "pass_score"))
    b.op("zv", "srs", VType("int32", blk), "zsum", imm=(0,))
    b.op("sums", "seg_reduce_add", st32, "zv", imm=(MT_INNER,))
    inv = _reciprocal(b, variant, "sums", st32, True)
    b.op("inv_v", "spread", v16, inv, imm=(MT_INNER,))  # (int16_t)invq[m] spread over the row's lanes
    p3 = OpBuilder()
    p3.op("s3", "load", v16, buf="scores")
    p3.op("prod", "mul", acc, "s3", "inv_v")
    p3.op("o", "srs", VType(out_elem, blk), "prod", imm=(0 if out_kind == "i16" else INV_SHIFT,))
    p3.op(None, "store", None, "o", buf="dst")
    b.ops.append(Loop(nb, tuple(p3.ops), (), False, "pass_norm"))
    return Kernel(name=f"aie4ml_tiled_{out_kind}_{recip}_n{n}", family="aie4ml", variant=variant,
                  schedule="aie4ml-tiled", arch=arch, n=n, lanes=blk,
                  buffers=(Buffer("band", "int8", "in"), Buffer("scores", "int16", "scratch"),
                           Buffer("dst", out_elem, "out")),
                  body=tuple(b.ops), rounding="floor", saturation="saturate", band=MT_OUTER,
                  params={"B": B, "S": S, "D": D, "wide_rho": 0},
                  notes="aie4ml 0.2.1 softmax_i8_tiled (4x8 microtiles), structure from the wheel's source")
