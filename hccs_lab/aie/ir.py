"""A small kernel IR for AI Engine softmax kernels: the single source of truth.

One `Kernel` describes what one AIE tile does to one row of n logits. Three consumers read it:

* `emulator.py` executes it bit-exactly with numpy over all rows at once;
* `emit.py` prints it as AIE API C++ (aie::vector, aie::accum, aie::mac, ...);
* `cycles.py` (with `lowering.py`, `schedule.py`, `machine.py`) schedules it on a machine
  description and estimates cycles per row.

Values are SSA names. Ops outside a loop act on one row ("scalar" values or whole vectors);
ops inside a `Loop` act on the loop's vector index `i` (one lane-wide slice of the row per trip).
Values defined inside a loop stay inside it, except through a `Carry` (a running max or sum that
the loop reduces: that is the only loop-carried dependence the kernels need, and it is what lets
the emulator run every trip at once).

Every name that reaches C++ is checked against `IDENT` here, at construction time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

IDENT = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# reserved words of the emitted C++ and of the shim, which a kernel name must not shadow
_RESERVED = {"int", "char", "short", "long", "float", "double", "auto", "void", "return", "for",
             "if", "else", "const", "static", "inline", "aie", "std", "namespace", "class", "struct",
             "in", "out", "rows", "row", "i", "r", "new", "delete", "default", "case", "switch"}

ELEMS = {  # element type -> (bits, signed, numpy dtype name, C++ type)
    "int8": (8, True, "int8", "int8"),
    "uint8": (8, False, "uint8", "uint8"),
    "int16": (16, True, "int16", "int16"),
    "int32": (32, True, "int32", "int32"),
    "bf16": (16, True, "float32", "bfloat16"),
    "float": (32, True, "float32", "float"),
}
ACCS = {"acc32": 32, "acc64": 64, "accfloat": 32}
ROUNDING = ("floor", "symmetric_inf", "conv_even")
SATURATION = ("none", "saturate")


def check_ident(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not IDENT.match(name) or name in _RESERVED:
        raise ValueError(f"{what} {name!r} is not a valid kernel identifier "
                         f"(lowercase letter, then [a-z0-9_], at most 32 chars, not a C++ keyword)")
    return name


@dataclass(frozen=True)
class VType:
    """A vector of `lanes` elements (`acc` set: an accumulator with that tag)."""

    elem: str
    lanes: int
    acc: str | None = None

    def __post_init__(self):
        if self.elem not in ELEMS:
            raise ValueError(f"unknown element type {self.elem!r}")
        if self.acc is not None and self.acc not in ACCS:
            raise ValueError(f"unknown accumulator tag {self.acc!r}")
        if self.lanes not in (1, 2, 4, 8, 16, 32, 64, 128):
            raise ValueError(f"unsupported lane count {self.lanes}")

    @property
    def is_scalar(self) -> bool:
        return self.lanes == 1 and self.acc is None

    @property
    def bits(self) -> int:
        """Register bits the value occupies (what the cycle model charges by)."""
        per = ACCS[self.acc] if self.acc else ELEMS[self.elem][0]
        return per * self.lanes


def scalar(elem: str) -> VType:
    return VType(elem, 1)


# Op codes and their operand counts. `args` hold SSA names; `imm` holds compile-time integers.
OPCODES = {
    # memory
    "load": 0,        # imm: buffer name (attr), vector index = loop var or 0
    "store": 1,       # args: value
    # broadcasts and constants
    "const": 0,       # imm value broadcast to the type
    "bcast": 1,       # scalar -> vector
    "cast": 1,        # bit reinterpretation (int8 <-> uint8), same width
    # integer elementwise (wrap in the lane type, like the hardware ALU)
    "max": 2, "min": 2, "sub": 2, "add": 2,
    # accumulators
    "ups": 1,         # vector -> accumulator (acc.from_vector, shift 0)
    "mul": 2,         # vector * vector -> accumulator
    "mac": 3,         # acc + vector * vector -> accumulator
    "acc_add": 2,     # acc + acc
    "srs": 1,         # accumulator -> narrower vector: shift (imm or arg 2), kernel rounding/saturation
    "srs_var": 2,     # like srs with a runtime scalar shift
    # reductions (vector -> scalar)
    "reduce_max": 1, "reduce_add": 1,
    # per-row valid length: `row_arg` reads the row's int32 from a "rowarg" buffer; `lane_mask`
    # marks the lanes of this trip's slice whose key index is below it; `select` = mask ? b : a
    "row_arg": 0, "lane_mask": 1, "select": 3,
    # microtiled kernels (aie4ml's softmax_i8_tiled): per-row statistics of a band of rows held in
    # one vector, `imm` = (lanes per row group,): segmented reductions to one lane per row, and
    # the inverse, each row's statistic spread over its lane group
    "seg_reduce_max": 1, "seg_reduce_add": 1, "spread": 1,
    # scalar unit (a value with lanes > 1 here is a small per-row array, one scalar op per lane)
    "sconst": 0, "sdiv": 2, "slog2": 1, "sshl": 2, "sshr": 2, "ssub": 2, "smax": 2, "smin": 2, "smul": 2,
    "sdiv_batched": 2,  # aie4ml's batched_reciprocal: float inv seed + integer correction = floor(a/b)
    # int8 matrix multiply of one native tile (aie::mmul): acc[M x N] += A[M x K] * B[K x N], imm (M, K, N)
    "mmul": 3,
    # bf16 / float (AMD-style references)
    "to_bf16": 1,     # int16 lanes read as bf16 numbers (the input stream's reinterpretation)
    "fsub": 2, "fmul": 2, "fadd": 2, "fmac": 3, "fmax": 2,
    "fsrs": 1,        # accfloat -> bf16 vector (round per the kernel's mode)
    "lut_exp": 1,     # exp through two 4-way parallel LUT lookups (integer part, fraction)
    "exp2": 1,        # native aie::exp2 (AIE-MLv2)
    "to_fixed": 1,    # bf16 -> int16 (aie::to_fixed, rounded per the kernel's mode, saturating)
    "zero_outside": 1,  # lanes outside [imm0, imm1] -> 0 (two compares and two selects)
    "finv": 1,        # scalar reciprocal (emulated float on AIE-ML)
    "freduce_max": 1, "freduce_add": 1,
}


@dataclass(frozen=True)
class Op:
    dst: str | None
    code: str
    type: VType | None
    args: tuple = ()
    imm: tuple = ()
    buf: str | None = None
    # reductions only: the rows interleaved in one row-loop trip share the last levels of the
    # reduction tree (each row halves privately, the partials are packed into one vector and
    # reduced segment-wise). The values are those of a per-row reduction; only the code differs.
    group: int = 1

    def __post_init__(self):
        if self.code not in OPCODES:
            raise ValueError(f"unknown op code {self.code!r}")
        if self.group not in (1, 2, 4, 8) or (self.group > 1 and self.code not in ("reduce_max", "reduce_add")):
            raise ValueError(f"group {self.group} is only for integer reductions, with 1, 2, 4 or 8 rows")
        if self.dst is not None:
            check_ident(self.dst, "value name")
        for a in self.args:
            check_ident(a, "operand")
        if self.buf is not None:
            check_ident(self.buf, "buffer name")
        for v in self.imm:
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"immediates must be Python ints, got {v!r} in {self.code}")
        if len(self.args) < OPCODES[self.code]:
            raise ValueError(f"{self.code} needs {OPCODES[self.code]} operands, got {self.args}")


@dataclass(frozen=True)
class Carry:
    """A loop-carried reduction: `dst` = combine(init, value over every trip)."""

    dst: str
    combine: str  # "max" | "add" | "fmax" | "fadd" | "mac" (dst = init + sum(value * factor)) | "mmul"
    init: str
    value: str
    factor: str | None = None

    def __post_init__(self):
        for n in (self.dst, self.init, self.value):
            check_ident(n)
        if self.combine not in ("max", "add", "fmax", "fadd", "mac", "mmul"):
            raise ValueError(f"unknown carry combine {self.combine!r}")
        if (self.combine in ("mac", "mmul")) != (self.factor is not None):
            raise ValueError("a mac or mmul carry, and only those, names a factor")
        if self.factor is not None:
            check_ident(self.factor)


@dataclass(frozen=True)
class Loop:
    """`trips` iterations over lane-wide slices of the row; `unroll` asks the compiler to flatten it."""

    trips: int
    body: tuple
    carries: tuple = ()
    unroll: bool = False
    label: str = "loop"
    start: int = 0      # the first slice the loop visits (aie4ml's max pass starts after a peeled load)

    def __post_init__(self):
        if self.trips < 1:
            raise ValueError(f"loop trips must be >= 1, got {self.trips}")
        check_ident(self.label, "loop label")


@dataclass(frozen=True)
class Buffer:
    name: str
    elem: str
    role: str  # "in" | "out" | "scratch" | "rowarg" (one value per row: the valid length)
    # scratch only: copies the row loop rotates through (2 = double-buffered: a trip's stores
    # need not wait for the previous trip's loads of the same buffer)
    slots: int = 1

    def __post_init__(self):
        check_ident(self.name, "buffer name")
        if self.role not in ("in", "out", "scratch", "rowarg"):
            raise ValueError(f"unknown buffer role {self.role!r}")
        if self.elem not in ELEMS:
            raise ValueError(f"unknown buffer element {self.elem!r}")


@dataclass(frozen=True)
class Kernel:
    name: str
    family: str           # "hccs" | "reference" | "aie4ml" | "mmul"
    variant: str          # i16-div | u8-div | i16-clb | u8-clb | bf16-lut | bf16-bittrick | bf16-exp2
    schedule: str
    arch: str             # "aie-ml" | "aie-mlv2"
    n: int                # row length
    lanes: int
    buffers: tuple
    body: tuple
    rounding: str = "floor"
    saturation: str = "none"
    rows_per_iter: int = 1  # rows interleaved per row-loop iteration (hides reduction latency)
    params: dict = field(default_factory=dict)   # compile-time constants (B, S, D, ...)
    notes: str = ""
    # rows one execution of the body handles together (aie4ml's microtiled kernel works on bands
    # of 4 rows held as 4 x 8 microtiles); the body's "row" is then band * n elements
    band: int = 1
    valid_len: bool = False   # the kernel takes a per-row valid length (a "rowarg" buffer)

    def __post_init__(self):
        check_ident(self.name, "kernel name")
        if self.rounding not in ROUNDING:
            raise ValueError(f"rounding {self.rounding!r} not in {ROUNDING}")
        if self.saturation not in SATURATION:
            raise ValueError(f"saturation {self.saturation!r} not in {SATURATION}")
        validate(self)

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)

    @property
    def output(self) -> Buffer:
        return next(b for b in self.buffers if b.role == "out")

    @property
    def input(self) -> Buffer:
        return next(b for b in self.buffers if b.role == "in")


def validate(k: Kernel) -> None:
    """SSA, scoping and buffer checks: a kernel that passes can be emitted and emulated."""
    bufs = {b.name for b in k.buffers}
    if len(bufs) != len(k.buffers):
        raise ValueError("duplicate buffer names")
    if sum(b.role == "in" for b in k.buffers) != 1 or sum(b.role == "out" for b in k.buffers) != 1:
        raise ValueError("a kernel has exactly one input and one output buffer")
    if k.valid_len != any(b.role == "rowarg" for b in k.buffers):
        raise ValueError("a kernel with valid_len has exactly its rowarg buffer, and only it")
    outer: set[str] = set()
    seen: set[str] = set()
    for s in k.body:
        if isinstance(s, Loop):
            inner = set()
            for o in s.body:
                _check_op(o, outer | inner, bufs, seen)
                if o.dst:
                    inner.add(o.dst)
            for c in s.carries:
                if c.init not in outer:
                    raise ValueError(f"carry {c.dst}: init {c.init} must be defined before the loop")
                if c.value not in inner:
                    raise ValueError(f"carry {c.dst}: value {c.value} must be defined in the loop")
                if c.factor is not None and c.factor not in outer | inner:
                    raise ValueError(f"carry {c.dst}: factor {c.factor} is not defined here")
                if c.dst in seen:
                    raise ValueError(f"{c.dst} defined twice")
                seen.add(c.dst)
                outer.add(c.dst)
        else:
            _check_op(s, outer, bufs, seen)
            if s.dst:
                outer.add(s.dst)


def _check_op(o: Op, visible: set, bufs: set, seen: set) -> None:
    for a in o.args:
        if a not in visible:
            raise ValueError(f"{o.code} -> {o.dst}: operand {a} is not defined here")
    if o.code in ("load", "store", "row_arg") and o.buf not in bufs:
        raise ValueError(f"{o.code}: unknown buffer {o.buf}")
    if o.dst is not None:
        if o.dst in seen:
            raise ValueError(f"{o.dst} defined twice (SSA)")
        seen.add(o.dst)
