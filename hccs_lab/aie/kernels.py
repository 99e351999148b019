"""Kernel builders: the four HCCS variants in several schedules, and AMD-style bf16 references.

HCCS schedules (all bit-exact with `hccs_lab.hccs_int`, with or without a per-row valid length;
the tests check every one):

* ``paper``: the authors' structure (paper.md §4.3, aie4ml's `softmax_i8`): 32-lane int8
  vectors, three passes (max; sub/clamp/mac/sum with an int16 score row; multiply by the
  reciprocal and narrow), each a plain loop (no pragma), one row at a time. The exact aie4ml
  kernels, as the wheel writes them, are `aie4ml.aie4ml_kernel`.
* ``wide64x1``: our schedule: full 512-bit int8 vectors (64 lanes), every pass flattened
  (chess_unroll_loop), one row per trip of a software-pipelined row loop, two scratch copies
  alternated by trip (a row's score stores need not wait for the previous row's loads), the
  running sum started from the B-filled accumulator the MAC already holds, and for u8-clb no
  reciprocal at all: sat((s*255) >> k) equals the paper's sat((s * (255 << (15-k))) >> 15).
* ``wide64``: the same with 4 rows interleaved per trip (to hide reductions behind other rows).
* ``wide64s``: ``wide64`` whose 4 rows share the tails of their reduction trees (each row halves
  its max / sum privately, the partials are packed into one vector and reduced segment-wise).

The cycle model decides which is fastest (`fastest_schedule`): with the pipeliner's II limit and
the register files, the interleaved schedules only pay off where one row is short.

References (float numerics are approximate; see each builder's docstring): ``bf16-lut`` (AIE-ML,
mlir-aie structure with a 4-way parallel LUT exp), ``bf16-bittrick`` (AIE-ML, the Vitis tutorial's
six-loop kernel with the bit-trick exp), ``bf16-exp2`` (AIE-MLv2, native exp2).
"""
from __future__ import annotations

from dataclasses import dataclass

from functools import lru_cache

from ..core.params import VARIANTS as HCCS_VARIANTS
from ..core.params import INT16_MAX, U8_NUMER, HCCSParams, split_variant
from ..core.reference import reciprocal
from ..errors import InputError, InputTypeError
from .ir import Buffer, Carry, Kernel, Loop, Op, VType, scalar

REFERENCE_VARIANTS = ("bf16-lut", "bf16-bittrick", "bf16-exp2")
ARCHS = ("aie-ml", "aie-mlv2")
HCCS_SCHEDULES = ("wide64x1", "wide64s", "wide64", "paper")
FASTEST_SCHEDULE = None  # the default schedule is chosen per (variant, arch, n) by the cycle model
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


def rho_bound(params: HCCSParams, variant: str, n: int, valid_len: bool = False) -> int:
    """Largest reciprocal the kernel can ever broadcast: reached at the smallest possible Z.

    The smallest Z is one key at the max (score B) and n-1 keys at the floor (B - S*D); with a
    valid length it is B alone (one valid key; the kernel raises an empty row's Z to B as well).
    """
    z_min = params.B if valid_len else params.B + (n - 1) * (params.B - params.S * params.D)
    return int(reciprocal(z_min, *split_variant(variant)))


class OpBuilder:
    """Appends ops to a kernel body and returns their names, so builders read like the code they emit."""

    def __init__(self):
        self.ops: list = []

    def op(self, dst, code, type_, *args, imm=(), buf=None, group=1):
        self.ops.append(Op(dst, code, type_, tuple(args), tuple(int(v) for v in imm), buf, group))
        return dst


def _check_args(params, variant, arch, n):
    if variant not in HCCS_VARIANTS:
        raise InputError(f"variant must be one of {HCCS_VARIANTS}, got {variant!r}")
    if arch not in ARCHS:
        raise InputError(f"arch must be one of {ARCHS}, got {arch!r}")
    if not isinstance(params, HCCSParams):
        raise InputTypeError(f"params must be HCCSParams, got {type(params).__name__}")
    check_seq_len(n)
    params.validate(n)


def hccs_kernel(params: HCCSParams, variant: str, arch: str, n: int, schedule: str | None = None,
                valid_len: bool = False) -> Kernel:
    """One head's HCCS kernel as IR. `schedule` None picks the fastest bit-exact one (by the cycle
    model, registers included). `valid_len`: the kernel takes a per-row valid length; keys at or
    past it get exactly 0 and take no part in the max or in Z (`hccs_int(..., valid_len=)`)."""
    _check_args(params, variant, arch, n)
    if schedule is None:
        schedule = fastest_schedule(variant, arch, n, valid_len, rho_bound(params, variant, n, valid_len) > INT16_MAX)
    if schedule not in HCCS_SCHEDULES:
        raise InputError(f"schedule must be one of {HCCS_SCHEDULES}, got {schedule!r}")
    if schedule not in schedules_for(n):
        raise InputError(f"schedule {schedule} works on 64-lane vectors: n={n} is not a multiple of 64 "
                         f"(use one of {schedules_for(n)})")
    B, S, D = params.B, params.S, params.D
    out_kind, recip = split_variant(variant)
    if schedule == "paper":
        # the authors' structure: 32-lane passes as plain loops (no pragma; the cycle model
        # decides whether the compiler unrolls them), one row at a time, one scratch row
        lanes, unroll, rows, slots = 32, False, 1, 1
    else:
        # our schedules flatten every pass (chess_unroll_loop) and rotate two scratch copies, so a
        # row's score stores need not wait for the previous row's loads
        lanes, unroll, rows, slots = min(64, n), True, (1 if schedule == "wide64x1" else 4), 2
    sh = _Shape(lanes, n // lanes, unroll, 4 if schedule == "wide64s" else 1, valid_len)
    b = OpBuilder()
    if valid_len:
        b.op("vlen", "row_arg", scalar("int32"), buf="valid_len")
    _pass_max(b, sh)
    _pass_score(b, sh, params)
    z = _score_sum(b, sh, B)
    shift_form = variant == "u8-clb" and schedule != "paper"
    wide_rho = rho_bound(params, variant, n, valid_len) > INT16_MAX and not shift_form
    _pass_norm(b, sh, z, out_kind, recip, shift_form, wide_rho)

    out_elem = "int16" if out_kind == "i16" else "uint8"
    name = f"hccs_{out_kind}_{recip}_{schedule}_n{n}" + ("_vl" if valid_len else "")
    bufs = [Buffer("logits", "int8", "in"), Buffer("scores", "int16", "scratch", slots),
            Buffer("probs", out_elem, "out")]
    if valid_len:
        bufs.append(Buffer("valid_len", "int32", "rowarg"))
    return Kernel(
        name=name, family="hccs", variant=variant, schedule=schedule, arch=arch, n=n, lanes=lanes,
        buffers=tuple(bufs), body=tuple(b.ops), rounding="floor", saturation="saturate", rows_per_iter=rows,
        params={"B": B, "S": S, "D": D, "wide_rho": int(wide_rho)}, valid_len=valid_len,
        notes=("reciprocal needs 32 bits (Z can fall below 256): int16 x int32 multiply into acc64"
               if wide_rho else "reciprocal fits int16: int16 x int16 multiply into acc32"),
    )


@dataclass(frozen=True)
class _Shape:
    """How a schedule covers a row: lanes per vector, trips per pass, flattened or not, rows sharing
    reduction tails, and whether the kernel takes a valid length."""

    lanes: int
    trips: int
    unroll: bool
    group: int
    valid_len: bool

    def v(self, elem: str, acc: str | None = None) -> VType:
        return VType(elem, self.lanes, acc)


def _pass_max(b: OpBuilder, sh: _Shape) -> None:
    """Pass 1: running max over the row's vectors (keys past the valid length read as -128)."""
    v8 = sh.v("int8")
    b.op("neg_inf", "const", v8, imm=(-128,))
    p1 = OpBuilder()
    p1.op("x1", "load", v8, buf="logits")
    if sh.valid_len:
        p1.op("mk1", "lane_mask", v8, "vlen")
        p1.op("x1m", "select", v8, "neg_inf", "x1", "mk1")
    b.ops.append(Loop(sh.trips, tuple(p1.ops), (Carry("vmax", "max", "neg_inf", "x1m" if sh.valid_len else "x1"),),
                      sh.unroll, "pass_max"))
    b.op("m", "reduce_max", scalar("int8"), "vmax", group=sh.group)


def _pass_score(b: OpBuilder, sh: _Shape, params: HCCSParams) -> None:
    """Pass 2: d = min(m - x, D) in uint8; s = B - S*d on the int8 MAC; running sum; int16 scores."""
    v8, u8v, v16, acc = sh.v("int8"), sh.v("uint8"), sh.v("int16"), sh.v("int32", "acc32")
    b.op("mb", "bcast", v8, "m")
    b.op("mbu", "cast", u8v, "mb")
    b.op("dmax", "const", u8v, imm=(params.D,))
    b.op("neg_s", "const", v8, imm=(-params.S,))
    b.op("base", "const", v16, imm=(params.B,))
    b.op("acc_base", "ups", acc, "base")
    b.op("zero16", "const", v16, imm=(0,))
    p2 = OpBuilder()
    p2.op("x2", "load", v8, buf="logits")
    p2.op("xu", "cast", u8v, "x2")
    p2.op("dist", "sub", u8v, "mbu", "xu")
    p2.op("dcl", "min", u8v, "dist", "dmax")
    p2.op("d8", "cast", v8, "dcl")
    p2.op("score", "mac", acc, "acc_base", "d8", "neg_s")
    p2.op("score16", "srs", v16, "score", imm=(0,))
    if sh.valid_len:
        # keys past the valid length score exactly 0: they drop out of Z and their output is 0;
        # Z is summed in int16 lanes (every partial sum is at most Z <= n*B <= 32767)
        p2.op("mk2", "lane_mask", v8, "vlen")
        p2.op("sc16", "select", v16, "zero16", "score16", "mk2")
        p2.op(None, "store", None, "sc16", buf="scores")
        carry = Carry("zacc", "add", "zero16", "sc16")
    else:
        p2.op(None, "store", None, "score16", buf="scores")
        # the running sum starts from the B-filled accumulator the MAC already holds (no second
        # constant accumulator live); its lanes*B is taken off the scalar sum
        carry = Carry("zacc", "add", "acc_base", "score")
    b.ops.append(Loop(sh.trips, tuple(p2.ops), (carry,), sh.unroll, "pass_score"))


def _score_sum(b: OpBuilder, sh: _Shape, B: int) -> str:
    """The row's score sum Z as a scalar; returns its name."""
    if sh.valid_len:
        b.op("z", "reduce_add", scalar("int32"), "zacc", group=sh.group)
        # an empty row (Z = 0) takes Z = B: its scores are all 0, so any reciprocal gives 0
        b.op("bmin", "sconst", scalar("int32"), imm=(B,))
        b.op("zr", "smax", scalar("int32"), "z", "bmin")
        return "zr"
    b.op("zraw", "reduce_add", scalar("int32"), "zacc", group=sh.group)
    b.op("bsum", "sconst", scalar("int32"), imm=(sh.lanes * B,))
    b.op("z", "ssub", scalar("int32"), "zraw", "bsum")
    return "z"


def _pass_norm(b: OpBuilder, sh: _Shape, z: str, out_kind: str, recip: str, shift_form: bool, wide_rho: bool) -> None:
    """The reciprocal on the scalar unit, then pass 3: p = sat(s * rho >> shift)."""
    out_t = sh.v("int16" if out_kind == "i16" else "uint8")
    p3 = OpBuilder()
    p3.op("s3", "load", sh.v("int16"), buf="scores")
    if shift_form:
        # sat_u8((s * (255 << (15 - k))) >> 15) == sat_u8((s * 255) >> k) for 0 <= k <= 15: one
        # multiply by a constant and an SRS whose shift is the scalar k (no reciprocal broadcast)
        b.op("k", "slog2", scalar("int32"), z)  # 31 - clb(Z)
        b.op("c255", "const", sh.v("int16"), imm=(255,))
        p3.op("prod", "mul", sh.v("int32", "acc32"), "s3", "c255")
        p3.op("prob", "srs_var", out_t, "prod", "k")
    else:
        if recip == "div":
            b.op("numer", "sconst", scalar("int32"), imm=(INT16_MAX if out_kind == "i16" else U8_NUMER,))
            b.op("rho", "sdiv", scalar("int32"), "numer", z)
        else:
            b.op("k", "slog2", scalar("int32"), z)  # 31 - clb(Z)
            if out_kind == "i16":
                b.op("numer", "sconst", scalar("int32"), imm=(INT16_MAX,))
                b.op("rho", "sshr", scalar("int32"), "numer", "k")
            else:
                b.op("c255", "sconst", scalar("int32"), imm=(255,))
                b.op("c15", "sconst", scalar("int32"), imm=(15,))
                b.op("sh", "ssub", scalar("int32"), "c15", "k")
                b.op("rho", "sshl", scalar("int32"), "c255", "sh")
        b.op("rhob", "bcast", sh.v("int32" if wide_rho else "int16"), "rho")
        p3.op("prod", "mul", sh.v("int32", "acc64" if wide_rho else "acc32"), "s3", "rhob")
        p3.op("prob", "srs", out_t, "prod", imm=(0 if out_kind == "i16" else 15,))
    p3.op(None, "store", None, "prob", buf="probs")
    b.ops.append(Loop(sh.trips, tuple(p3.ops), (), sh.unroll, "pass_norm"))


def schedules_for(n: int) -> tuple:
    """The schedules that cover a row of n: the 64-lane ones need n = 32 or a multiple of 64."""
    return HCCS_SCHEDULES if n == 32 or n % 64 == 0 else ("paper",)


@lru_cache(maxsize=None)
def fastest_schedule(variant: str, arch: str, n: int, valid_len: bool = False, wide_rho: bool = False) -> str:
    """The schedule the cycle model finds fastest for this variant, arch, n and reciprocal width
    (cycle counts depend on the head's parameters only through that width)."""
    from .cycles import estimate

    p = _params_with_width(variant, n, valid_len, wide_rho)
    def cost(s):
        rep = estimate(hccs_kernel(p, variant, arch, n, s, valid_len))
        return (rep.registers.startswith("does NOT fit"), rep.cycles_per_row, HCCS_SCHEDULES.index(s))

    return min(schedules_for(n), key=cost)


def _params_with_width(variant: str, n: int, valid_len: bool, wide: bool) -> HCCSParams:
    """A valid head for n whose reciprocal does (wide) or does not fit int16."""
    top = INT16_MAX // n
    for p in (HCCSParams(min(200, top), 2, 40), HCCSParams(top, 0, 0), HCCSParams(1, 0, 0), HCCSParams(2, 1, 2)):
        if p.is_valid(n) and (rho_bound(p, variant, n, valid_len) > INT16_MAX) == wide:
            return p
    raise InputError(f"no {'wide' if wide else 'narrow'}-reciprocal head exists for {variant} at n={n}")


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
    b = OpBuilder()
    build = _bittrick_reference if variant == "bf16-bittrick" else _exp_reference
    bufs, rounding = build(b, variant, n // lanes, lanes)
    return Kernel(name="ref_" + variant.replace("-", "_") + f"_n{n}", family="reference", variant=variant,
                  schedule="reference", arch=arch, n=n, lanes=lanes, buffers=bufs, body=tuple(b.ops),
                  rounding=rounding, saturation="saturate")


def _bittrick_reference(b: OpBuilder, variant: str, T: int, lanes: int):
    """The Vitis tutorial's six loops (stream in, running max, subtract, bit-trick exp, sum, scale)."""
    vb, af, fs = VType("bf16", lanes), VType("float", lanes, "accfloat"), scalar("float")
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
    return bufs, "symmetric_inf"


def _exp_reference(b: OpBuilder, variant: str, T: int, lanes: int):
    """mlir-aie's three passes: max, exp (LUT on AIE-ML, exp2 on AIE-MLv2) with the sum, scale."""
    vb, af, fs = VType("bf16", lanes), VType("float", lanes, "accfloat"), scalar("float")
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
    return bufs, "conv_even"
