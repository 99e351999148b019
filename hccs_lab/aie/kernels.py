"""Kernel builders: the four HCCS variants in several schedules, and AMD-style bf16 references.

HCCS schedules (all bit-exact with `hccs_lab.hccs_int`; the tests check every one):

* ``paper``: the authors' kernel as described in paper.md §4.3: 32-lane int8 vectors, three
  passes (max; sub/clamp/mac/sum with an int16 score row; multiply by the reciprocal and narrow),
  each pass a loop over the row's vectors, one row at a time.
* ``wide64``: our schedule: full 512-bit int8 vectors (64 lanes, the native AIE-ML width), every
  pass unrolled (n is a compile-time constant) so the row is straight-line code and the row loop
  itself is software-pipelined, and 4 rows interleaved per row-loop trip so that one row's
  reductions and scalar reciprocal hide behind the others' vector work.
* ``wide64x1``: the same without row interleaving (to show what interleaving buys).
* ``wide64s``: ``wide64`` whose 4 interleaved rows share the tails of their reduction trees: each
  row halves its max / sum privately down to a quarter of a register, the four partials are packed
  into one vector and reduced segment-wise with shuffles (the values are those of per-row
  reductions; the host build checks the shared code bit for bit).

References (float numerics are approximate; see each builder's docstring): ``bf16-lut`` (AIE-ML,
mlir-aie structure with a 4-way parallel LUT exp), ``bf16-bittrick`` (AIE-ML, the Vitis tutorial's
six-loop kernel with the bit-trick exp), ``bf16-exp2`` (AIE-MLv2, native exp2).
"""
from __future__ import annotations

from ..core.params import VARIANTS as HCCS_VARIANTS
from ..core.params import INT16_MAX, U8_NUMER, HCCSParams, split_variant
from ..core.reference import reciprocal
from ..errors import InputError, InputTypeError
from .ir import Buffer, Carry, Kernel, Loop, Op, VType, scalar

REFERENCE_VARIANTS = ("bf16-lut", "bf16-bittrick", "bf16-exp2")
ARCHS = ("aie-ml", "aie-mlv2")
HCCS_SCHEDULES = ("wide64s", "wide64", "wide64x1", "paper")
FASTEST_SCHEDULE = "wide64s"
MAX_N = 1024  # input, score and output rows must each fit one 64 KB tile with room to spare
# float constants are written as bf16 bit patterns (int16), the only immediates the IR carries
BF16_NEG_INF = -128      # 0xFF80
BF16_LOG2E = 0x3FB9      # 1.4453125 = bf16(log2 e)
BF16_185 = 0x4339        # 185.0, the tutorial's exp_S
BF16_16256 = 0x467E      # 16256.0, the tutorial's exp_B


def check_seq_len(n: int, lanes: int = 32) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise InputTypeError(f"seq_len must be an int, got {n!r}")
    if n < lanes or n % lanes or n > MAX_N:
        raise InputError(f"seq_len {n} not supported: it must be a multiple of {lanes} "
                         f"(the int8 vector width of the paper-style kernel) between {lanes} and {MAX_N}")
    return n


def rho_bound(params: HCCSParams, variant: str, n: int) -> int:
    """Largest reciprocal the kernel can ever broadcast: reached at the smallest possible Z.

    The smallest Z is one key at the max (score B) and n-1 keys at the floor (B - S*D).
    """
    z_min = params.B + (n - 1) * (params.B - params.S * params.D)
    return int(reciprocal(z_min, *split_variant(variant)))


class OpBuilder:
    """Appends ops to a kernel body and returns their names, so builders read like the code they emit."""

    def __init__(self):
        self.ops: list = []

    def op(self, dst, code, type_, *args, imm=(), buf=None, group=1):
        self.ops.append(Op(dst, code, type_, tuple(args), tuple(int(v) for v in imm), buf, group))
        return dst


def hccs_kernel(params: HCCSParams, variant: str, arch: str, n: int, schedule: str | None = None) -> Kernel:
    """One head's HCCS kernel as IR. `schedule` None picks the fastest bit-exact one."""
    if variant not in HCCS_VARIANTS:
        raise InputError(f"variant must be one of {HCCS_VARIANTS}, got {variant!r}")
    if arch not in ARCHS:
        raise InputError(f"arch must be one of {ARCHS}, got {arch!r}")
    schedule = FASTEST_SCHEDULE if schedule is None else schedule
    if schedule not in HCCS_SCHEDULES:
        raise InputError(f"schedule must be one of {HCCS_SCHEDULES}, got {schedule!r}")
    if not isinstance(params, HCCSParams):
        raise InputTypeError(f"params must be HCCSParams, got {type(params).__name__}")
    check_seq_len(n)
    params.validate(n)
    B, S, D = params.B, params.S, params.D
    out_kind, recip = split_variant(variant)

    group = 4 if schedule == "wide64s" else 1
    if schedule == "paper":
        # the authors' passes are plain loops (paper.md [C]: no chess_flatten_loop or
        # chess_unroll_loop, the pragmas UG1079 gives for flattening), so from n=64 on they stay
        # loops and the row loop around them is not software-pipelined
        lanes, unroll, rows = 32, False, 1
    else:
        lanes, unroll, rows = min(64, n), True, (1 if schedule == "wide64x1" else 4)
    T = n // lanes
    v8, u8v = VType("int8", lanes), VType("uint8", lanes)
    v16 = VType("int16", lanes)
    acc = VType("int32", lanes, "acc32")
    wide_rho = rho_bound(params, variant, n) > INT16_MAX
    rho_t = VType("int32" if wide_rho else "int16", lanes)
    prod_t = VType("int32", lanes, "acc64" if wide_rho else "acc32")
    out_elem = "int16" if out_kind == "i16" else "uint8"

    b = OpBuilder()
    # pass 1: running max over the row's vectors
    b.op("neg_inf", "const", v8, imm=(-128,))
    p1 = OpBuilder()
    p1.op("x1", "load", v8, buf="logits")
    b.ops.append(Loop(T, tuple(p1.ops), (Carry("vmax", "max", "neg_inf", "x1"),), unroll, "pass_max"))
    b.op("m", "reduce_max", scalar("int8"), "vmax", group=group)
    b.op("mb", "bcast", v8, "m")
    b.op("mbu", "cast", u8v, "mb")
    b.op("dmax", "const", u8v, imm=(D,))
    b.op("neg_s", "const", v8, imm=(-S,))
    b.op("base", "const", v16, imm=(B,))
    b.op("acc_base", "ups", acc, "base")
    b.op("zero16", "const", v16, imm=(0,))
    b.op("acc_zero", "ups", acc, "zero16")
    # pass 2: d = min(m - x, D) in uint8; s = B - S*d on the int8 MAC; running sum; int16 scores
    p2 = OpBuilder()
    p2.op("x2", "load", v8, buf="logits")
    p2.op("xu", "cast", u8v, "x2")
    p2.op("dist", "sub", u8v, "mbu", "xu")
    p2.op("dcl", "min", u8v, "dist", "dmax")
    p2.op("d8", "cast", v8, "dcl")
    p2.op("score", "mac", acc, "acc_base", "d8", "neg_s")
    p2.op("score16", "srs", v16, "score", imm=(0,))
    p2.op(None, "store", None, "score16", buf="scores")
    b.ops.append(Loop(T, tuple(p2.ops), (Carry("zacc", "add", "acc_zero", "score"),), unroll, "pass_score"))
    b.op("z", "reduce_add", scalar("int32"), "zacc", group=group)
    # reciprocal on the scalar unit
    if recip == "div":
        b.op("numer", "sconst", scalar("int32"), imm=(INT16_MAX if out_kind == "i16" else U8_NUMER,))
        b.op("rho", "sdiv", scalar("int32"), "numer", "z")
    else:
        b.op("k", "slog2", scalar("int32"), "z")  # 31 - clb(Z)
        if out_kind == "i16":
            b.op("numer", "sconst", scalar("int32"), imm=(INT16_MAX,))
            b.op("rho", "sshr", scalar("int32"), "numer", "k")
        else:
            b.op("c255", "sconst", scalar("int32"), imm=(255,))
            b.op("c15", "sconst", scalar("int32"), imm=(15,))
            b.op("sh", "ssub", scalar("int32"), "c15", "k")
            b.op("rho", "sshl", scalar("int32"), "c255", "sh")
    b.op("rhob", "bcast", rho_t, "rho")
    # pass 3: p = sat(s * rho >> shift)
    p3 = OpBuilder()
    p3.op("s3", "load", v16, buf="scores")
    p3.op("prod", "mul", prod_t, "s3", "rhob")
    p3.op("prob", "srs", VType(out_elem, lanes), "prod", imm=(0 if out_kind == "i16" else 15,))
    p3.op(None, "store", None, "prob", buf="probs")
    b.ops.append(Loop(T, tuple(p3.ops), (), unroll, "pass_norm"))

    name = f"hccs_{out_kind}_{recip}_{schedule}_n{n}"
    return Kernel(
        name=name, family="hccs", variant=variant, schedule=schedule, arch=arch, n=n, lanes=lanes,
        buffers=(Buffer("logits", "int8", "in"), Buffer("scores", "int16", "scratch"),
                 Buffer("probs", out_elem, "out")),
        body=tuple(b.ops), rounding="floor", saturation="saturate", rows_per_iter=rows,
        params={"B": B, "S": S, "D": D, "wide_rho": int(wide_rho)},
        notes=("reciprocal needs 32 bits (Z can fall below 256): int16 x int32 multiply into acc64"
               if wide_rho else "reciprocal fits int16: int16 x int16 multiply into acc32"),
    )


def reference_kernel(variant: str, n: int, arch: str | None = None) -> Kernel:
    """AMD-style bf16 softmax references (cycle-model subjects; float numerics approximate).

    * bf16-lut (AIE-ML): mlir-aie's AIE2 softmax: 16-lane bf16; max pass; exp by two 4-way
      parallel LUT lookups (integer part, 8-bit fraction) multiplied, summed in accfloat; scalar
      inverse; multiply pass. The emulator reads the tables as exact exp values rounded to bf16.
    * bf16-bittrick (AIE-ML): the Vitis tutorial's six loops over 16 lanes with stream input and
      output: read+running scalar max, subtract max, mac to the exponent domain, to_fixed + bounds,
      sum, inverse+multiply+write. exp(y) ~ bf16 bits floor(185*y + 16256) (error up to ~4%).
    * bf16-exp2 (AIE-MLv2): mlir-aie's AIE2P softmax: 32-lane bf16; max of x*log2e; exp2 of the
      difference (modelled as exact 2^x rounded to bf16, which the native unit is not); inverse.
    """
    if variant not in REFERENCE_VARIANTS:
        raise InputError(f"reference must be one of {REFERENCE_VARIANTS}, got {variant!r}")
    if variant == "bf16-exp2":
        arch, lanes = arch or "aie-mlv2", 32
    else:
        arch, lanes = arch or "aie-ml", 16
    if n % lanes or n < lanes:
        raise InputError(f"reference {variant} needs n a multiple of {lanes}, got {n}")
    T = n // lanes
    vb = VType("bf16", lanes)
    af = VType("float", lanes, "accfloat")
    fs = scalar("float")
    b = OpBuilder()
    if variant == "bf16-bittrick":
        b.op("ninf", "sconst", fs, imm=(BF16_NEG_INF,))
        l1 = OpBuilder()
        l1.op("raw", "load", VType("int16", lanes), buf="stream_in")
        l1.op("xin", "to_bf16", vb, "raw")
        l1.op("vm", "freduce_max", fs, "xin")
        l1.op(None, "store", None, "xin", buf="wbuf_a")
        b.ops.append(Loop(T, tuple(l1.ops), (Carry("mx", "fmax", "ninf", "vm"),), False, "read_max"))
        b.op("mxb", "bcast", vb, "mx")
        l2 = OpBuilder()
        l2.op("a2", "load", vb, buf="wbuf_a")
        l2.op("a2acc", "ups", af, "a2")
        l2.op("y", "fsub", af, "a2acc", "mxb")
        l2.op("yv", "fsrs", vb, "y")
        l2.op(None, "store", None, "yv", buf="wbuf_b")
        b.ops.append(Loop(T, tuple(l2.ops), (), False, "sub_max"))
        b.op("exp_s", "const", vb, imm=(BF16_185,))
        b.op("exp_b", "const", vb, imm=(BF16_16256,))
        b.op("exp_bacc", "ups", af, "exp_b")
        l3 = OpBuilder()
        l3.op("b3", "load", vb, buf="wbuf_b")
        l3.op("lin", "fmac", af, "exp_bacc", "b3", "exp_s")   # 185*y + 16256 in accfloat
        l3.op("linv", "fsrs", vb, "lin")
        l3.op(None, "store", None, "linv", buf="wbuf_a")
        b.ops.append(Loop(T, tuple(l3.ops), (), False, "exp_mac"))
        l4 = OpBuilder()
        l4.op("a4", "load", vb, buf="wbuf_a")
        l4.op("fix", "to_fixed", VType("int16", lanes), "a4")      # round per the kernel's mode
        l4.op("bnd", "zero_outside", VType("int16", lanes), "fix", imm=(0, 16256))  # lt/select/gt/select
        l4.op(None, "store", None, "bnd", buf="wbuf_i")
        b.ops.append(Loop(T, tuple(l4.ops), (), False, "exp_bounds"))
        b.op("fzero", "const", vb, imm=(0,))
        b.op("accz", "ups", af, "fzero")
        l5 = OpBuilder()
        l5.op("e5i", "load", VType("int16", lanes), buf="wbuf_i")
        l5.op("e5", "to_bf16", vb, "e5i")                          # the int16 bits read as bf16
        l5.op("e5acc", "ups", af, "e5")
        b.ops.append(Loop(T, tuple(l5.ops), (Carry("fsum", "fadd", "accz", "e5acc"),), False, "sum"))
        b.op("tot", "freduce_add", fs, "fsum")
        b.op("inv", "finv", fs, "tot")
        b.op("invb", "bcast", vb, "inv")
        l6 = OpBuilder()
        l6.op("e6i", "load", VType("int16", lanes), buf="wbuf_i")
        l6.op("e6", "to_bf16", vb, "e6i")
        l6.op("p6", "fmul", af, "e6", "invb")
        l6.op("o6", "fsrs", vb, "p6")
        l6.op(None, "store", None, "o6", buf="stream_out")
        b.ops.append(Loop(T, tuple(l6.ops), (), False, "scale_write"))
        bufs = (Buffer("stream_in", "int16", "in"), Buffer("wbuf_a", "bf16", "scratch"),
                Buffer("wbuf_b", "bf16", "scratch"), Buffer("wbuf_i", "int16", "scratch"),
                Buffer("stream_out", "bf16", "out"))
        rounding = "symmetric_inf"
    else:
        b.op("ninf", "const", vb, imm=(BF16_NEG_INF,))
        l1 = OpBuilder()
        l1.op("x1", "load", vb, buf="x")
        if variant == "bf16-exp2":
            b.op("log2e", "const", vb, imm=(BF16_LOG2E,))  # 1.4453125, as in mlir-aie
            l1.op("x1s", "fmul", af, "x1", "log2e")
            l1.op("x1v", "fsrs", vb, "x1s")
            val = "x1v"
        else:
            val = "x1"
        b.ops.append(Loop(T, tuple(l1.ops), (Carry("vmax", "fmax", "ninf", val),), False, "pass_max"))
        b.op("m", "freduce_max", fs, "vmax")
        b.op("mb", "bcast", vb, "m")
        b.op("fzero", "const", vb, imm=(0,))
        b.op("accz", "ups", af, "fzero")
        l2 = OpBuilder()
        l2.op("x2", "load", vb, buf="x")
        if variant == "bf16-exp2":
            l2.op("x2s", "fmul", af, "x2", "log2e")
            l2.op("y", "fsub", af, "x2s", "mb")
            l2.op("yv", "fsrs", vb, "y")
            l2.op("e", "exp2", vb, "yv")
        else:
            l2.op("x2a", "ups", af, "x2")
            l2.op("y", "fsub", af, "x2a", "mb")
            l2.op("yv", "fsrs", vb, "y")
            l2.op("e", "lut_exp", vb, "yv")
        l2.op("eacc", "ups", af, "e")
        l2.op(None, "store", None, "e", buf="ex")
        b.ops.append(Loop(T, tuple(l2.ops), (Carry("fsum", "fadd", "accz", "eacc"),), False, "pass_exp"))
        b.op("tot", "freduce_add", fs, "fsum")
        b.op("inv", "finv", fs, "tot")
        b.op("invb", "bcast", vb, "inv")
        l3 = OpBuilder()
        l3.op("e3", "load", vb, buf="ex")
        l3.op("p3", "fmul", af, "e3", "invb")
        l3.op("o3", "fsrs", vb, "p3")
        l3.op(None, "store", None, "o3", buf="y_out")
        b.ops.append(Loop(T, tuple(l3.ops), (), False, "pass_norm"))
        bufs = (Buffer("x", "bf16", "in"), Buffer("ex", "bf16", "scratch"), Buffer("y_out", "bf16", "out"))
        rounding = "conv_even"
    return Kernel(name="ref_" + variant.replace("-", "_") + f"_n{n}", family="reference", variant=variant,
                  schedule="reference", arch=arch, n=n, lanes=lanes, buffers=bufs, body=tuple(b.ops),
                  rounding=rounding, saturation="saturate")
