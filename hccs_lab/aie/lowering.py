"""Lowering: each kernel IR op becomes the machine instructions the AIE API emits for it.

The rules (and their sources) are `machine.RULES`; the numbers come from the `Machine`. One
`Lowering` turns one row-loop trip (R interleaved rows of a kernel) into a flat list of `Instr`,
each on one VLIW slot with an issue count, a latency and its data dependences. Loop-invariant
values (constants, broadcasts of constants) are hoisted: they cost nothing per row but hold
registers for the whole loop, which the register-pressure check counts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .ir import ELEMS, Carry, Kernel, Loop, Op
from .machine import Machine
from ..errors import InputError

# instruction classes whose result feeds another of the class through the MOV bypass
VALU = "valu"


@dataclass
class Instr:
    label: str
    slot: str
    issues: int
    lat: int
    deps: list
    cls: str = ""
    acc_deps: list = field(default_factory=list)   # producers read as an accumulator operand
    chain_lat: int | None = None                   # latency into a consumer's accumulator operand
    call: bool = False       # a software routine: a scheduling barrier, blocks software pipelining
    noswp: bool = False      # control flow inside (branches): blocks software pipelining
    # (instr, delay): issue no earlier than `delay` cycles after that instruction's first issue
    after: list = field(default_factory=list)
    rf: str | None = None    # register file of the result: "v" (vector) | "a" (accumulator) | None
    units: int = 0           # 256-bit register units the result occupies
    sink: bool = False       # a load: may issue as late as its consumers allow
    buf: str | None = None   # memory ops: the buffer
    mem: str | None = None   # "ld" | "st" on a kernel buffer
    row: int | None = None   # which interleaved row of the trip (None: shared by all)
    seq: int = 0             # its position among that row's instructions


def edge_latency(p: Instr, c: Instr, pi: int, m: Machine) -> int:
    """Cycles from producer p's (last) issue until consumer c may issue."""
    if pi in c.acc_deps and p.chain_lat is not None:
        return p.chain_lat
    if p.cls == VALU and c.cls == VALU:
        return m.lat_valu_chained
    return p.lat


def _units(t) -> int:
    return 0 if t is None or (t.acc is None and t.lanes <= 4) else max(1, math.ceil(t.bits / 256))


def _rf(t) -> str | None:
    if t is None or (t.acc is None and t.lanes <= 4):
        return None
    return "a" if t.acc else "v"


def _ebits(t) -> int:
    return ELEMS[t.elem][0]


class Lowering:
    """IR ops -> instructions for one row-loop trip, tracking where each value is produced."""

    def __init__(self, k: Kernel, m: Machine, ir_types: dict):
        self.k, self.m = k, m
        self.instrs: list[Instr] = []
        self.where: dict = {}        # value name -> producing instr index (None: hoisted)
        self.types: dict = {}
        self.ir_types = ir_types
        self.hoisted: dict = {}      # hoisted value name -> its type
        self.used_hoisted: set = set()  # hoisted values an instruction reads: registers held all loop long
        self.last_store: dict = {}
        self.last_call: int | None = None
        self.carry_instrs: list[int] = []
        self.cur_row: int | None = None
        self.seq: dict = {}

    # -- helpers ------------------------------------------------------------------------------
    def dep(self, names):
        return [self.where[n] for n in names if self.where.get(n) is not None]

    def emit(self, label, slot, issues, lat, deps, *, cls="", acc_deps=(), chain_lat=None, call=False,
             noswp=False, t=None, sink=False, buf=None, mem=None) -> int:
        ins = Instr(label, slot, max(1, int(issues)), int(lat), [d for d in deps if d is not None], cls,
                    [d for d in acc_deps if d is not None], chain_lat, call, noswp, [], _rf(t), _units(t),
                    sink, buf, mem, self.cur_row, self.seq.get(self.cur_row, 0))
        self.seq[self.cur_row] = ins.seq + 1
        idx = len(self.instrs)
        if call:  # a call waits for everything before it has issued
            ins.after = [(j, self.instrs[j].issues) for j in range(idx)]
        elif self.last_call is not None:
            ins.after = [(self.last_call, self.instrs[self.last_call].issues)]
        self.instrs.append(ins)
        if call:
            self.last_call = idx
        return idx

    def valu(self, label, deps, regs=1, t=None):
        return self.emit(label, "mv", regs, self.m.lat_valu, deps, cls=VALU, t=t)

    def regs512(self, t) -> int:
        return max(1, math.ceil(t.bits / self.m.alu_bits))

    # -- ops ----------------------------------------------------------------------------------
    def op(self, o, tag: str):
        m, c, t = self.m, o.code, o.type
        if o.dst is not None and t is not None:
            self.types[o.dst] = t
        if c in ("const", "sconst") or (c in ("ups", "bcast", "cast", "spread") and o.args and all(
                self.where.get(a, "x") is None and a in self.hoisted for a in o.args)):
            self.hoisted[o.dst] = t
            self.where[o.dst] = None
            return
        self.used_hoisted.update(a for a in o.args if a in self.hoisted)
        deps = self.dep(o.args)
        lbl = f"{c} {o.dst or o.buf}{tag}"
        if c in ("cast", "to_bf16"):  # a bit reinterpretation: no instruction
            self.where[o.dst] = deps[0] if deps else None
            if not deps and o.args and o.args[0] in self.hoisted:
                self.hoisted[o.dst] = t
            return
        if c == "load":
            stream = o.buf.startswith("stream")
            d = [self.last_store[o.buf]] if o.buf in self.last_store else []
            if stream:
                r = self.emit(lbl, "stream_in", math.ceil(t.bits / m.stream_bits), m.lat_stream, d, t=t)
            else:
                r = self.emit(lbl, "ld", math.ceil(t.bits / m.mem_bits), m.lat_load, d, t=t, sink=True,
                              buf=o.buf, mem="ld")
            self.where[o.dst] = r
            return
        if c == "store":
            bits = self._type(o.args[0]).bits
            if o.buf.startswith("stream"):
                r = self.emit(lbl, "stream_out", math.ceil(bits / m.stream_bits), 1, deps)
            else:
                r = self.emit(lbl, "st", math.ceil(bits / m.mem_bits), m.lat_store_load, deps, buf=o.buf, mem="st")
            self.last_store[o.buf] = r
            return
        if c == "row_arg":  # the row's valid length: one scalar load
            r = self.emit(lbl, "ld", 1, m.lat_load, [])
        elif c == "bcast":
            r = self.emit(lbl, "mv", self.regs512(t), m.lat_bcast, deps, t=t)
        elif c in ("max", "min", "sub", "add", "select", "fmax") and not t.is_scalar:
            r = self.valu(lbl, deps, self.regs512(t), t)
        elif c == "lane_mask":  # t = clamp(L - i*lanes, 0, lanes) on the alu, broadcast, compare
            s = deps
            for step in ("sub", "max", "min"):
                s = [self.emit(f"{step} {o.dst}{tag}", "alu", 1, m.lat_scalar, s)]
            b = self.emit(f"bcast {o.dst}{tag}", "mv", 1, m.lat_bcast, s)
            r = self.valu(f"lt {o.dst}{tag}", [b])
        elif c == "ups":
            src = self._type(o.args[0])
            if t.acc == "accfloat":
                r = self.emit(lbl, "mv", math.ceil(t.lanes / m.fp_lanes), m.lat_conv, deps, t=t)
            else:
                r = self.emit(lbl, "mv", math.ceil(t.bits / m.acc_reg_bits), m.lat_ups, deps, t=t)
            del src
        elif c in ("mul", "mac"):
            ops = [self._type(a) for a in (o.args if c == "mul" else o.args[1:])]
            r = self.emit(lbl, "vec", math.ceil(t.lanes / self._mul_lanes(t, ops)), m.lat_mul, deps,
                          acc_deps=self.dep(o.args[:1]) if c == "mac" else (), chain_lat=m.lat_acc_chain, t=t)
        elif c == "mmul":
            M, K, N = o.imm
            per = (M * K * N) / (m.mmul_shape[0] * m.mmul_shape[1] * m.mmul_shape[2])
            r = self.emit(lbl, "vec", math.ceil(per), m.lat_mul, deps, acc_deps=self.dep(o.args[:1]),
                          chain_lat=m.lat_acc_chain, t=t)
        elif c == "acc_add":
            r = self.emit(lbl, "vec", math.ceil(t.bits / m.acc_reg_bits), m.lat_mul, deps, acc_deps=deps,
                          chain_lat=m.lat_acc_chain, t=t)
        elif c in ("srs", "srs_var"):
            src = self._type(o.args[0])
            per = min(m.alu_bits // _ebits(t), m.acc_reg_bits // (src.bits // src.lanes), t.lanes)
            r = self.emit(lbl, "st", math.ceil(t.lanes / per), m.lat_srs, deps, t=t)
        elif c in ("reduce_max", "reduce_add"):
            r = self._reduce(o, deps, tag)
        elif c in ("seg_reduce_max", "seg_reduce_add"):
            r = self._seg_reduce(o, deps, tag)
        elif c == "spread":
            g = t.lanes // o.imm[0]
            parts = [self.emit(f"bcast {o.dst}{tag}", "mv", 1, m.lat_bcast, deps) for _ in range(g)]
            r = parts[0]
            for p in parts[1:]:  # concat: one insert per further piece [assumption]
                r = self.valu(f"insert {o.dst}{tag}", [r, p], 1, t)
            self.instrs[r].rf, self.instrs[r].units = _rf(t), _units(t)
        elif c == "sdiv":
            r = deps
            for _ in range(max(1, t.lanes)):
                r = [self.emit(lbl, "alu", m.div_cycles, 1, r, call=True)]
            r = r[0]
        elif c == "sdiv_batched":
            r = self._batched_reciprocal(o, deps, tag)
        elif c in ("slog2", "sshl", "sshr", "ssub", "smax", "smin", "smul"):
            steps = 2 if c == "slog2" else 1  # clb, then 31 - clb
            r = deps
            for _ in range(steps):
                r = [self.emit(lbl, "alu", t.lanes, m.lat_smul if c == "smul" else m.lat_scalar, r)]
            r = r[0]
        else:
            r = self._float_op(o, deps, tag, lbl)
        self.where[o.dst] = r

    def _type(self, name):
        if name in self.types:
            return self.types[name]
        base = name.split("__")[0]
        if base in self.ir_types:
            return self.ir_types[base]
        return self.ir_types.get(base.rsplit("_", 1)[0])  # drop a trip suffix

    def _mul_lanes(self, t, ops) -> int:
        m = self.m
        if t.acc == "acc64":
            return m.mul_lanes_acc64_32 if any(o is not None and _ebits(o) == 32 for o in ops) else m.mul_lanes_acc64_16
        if t.acc == "accfloat":
            return m.fp_lanes
        return m.mul_lanes_acc32

    def _tree(self, r, rounds: int, regs: int, name: str, op: str):
        for _ in range(rounds):
            r = self.valu(f"shift {name}", [r], regs)
            r = self.valu(f"{op} {name}", [r], regs)
        return r

    def _reduce(self, o, deps, tag):
        """reduce_max / reduce_add as the AIE API lowers them (max_min_reduce.hpp, add_reduce.hpp)."""
        m = self.m
        src = self._type(o.args[0])
        name = f"{o.dst}{tag}"
        r = deps[0] if deps else None
        is_add = o.code == "reduce_add"
        if src.acc:  # halve in the accumulator file to one 512-bit half, one SRS, then a tree
            bits, lanes = src.bits, src.lanes
            while bits > m.alu_bits:
                r = self.emit(f"acc_add {name}", "vec", 1, m.lat_mul, [r], acc_deps=[r], chain_lat=m.lat_acc_chain)
                bits, lanes = bits // 2, lanes // 2
            r = self.emit(f"srs {name}", "st", 1, m.lat_srs, [r])
            if o.imm and o.imm[0] == 16:  # partial sums fit int16: the int16 reduce_add (mul/mac with ones)
                r = self._tree(r, int(lanes >= 16) + int(lanes == 32), 1, name, "add")
                mu = self.emit(f"mul {name}", "vec", 1, m.lat_mul, [r])
                sh = self.valu(f"shift {name}", [r])
                r = self.emit(f"mac {name}", "vec", 1, m.lat_mul, [sh, mu], acc_deps=[mu], chain_lat=m.lat_acc_chain)
                r = self.emit(f"srs {name}", "st", 1, m.lat_srs, [r])
            else:
                r = self._tree(r, int(math.log2(lanes)), 1, name, "add")
            return self.emit(f"extract {name}", "mv", 1, m.lat_bcast, [r])
        eb = _ebits(src)
        regs = self.regs512(src)
        for _ in range(regs - 1):  # registers combined pairwise first
            r = self.valu(f"{'add' if is_add else 'max'} {name}", [r])
        lanes = min(src.lanes, m.alu_bits // eb)
        if is_add and eb in (8, 16):  # up to two rounds, then a multiply-accumulate against ones
            full = m.alu_bits // eb
            r = self._tree(r, int(lanes >= full // 2) + int(lanes == full), 1, name, "add")
            mu = self.emit(f"mul {name}", "vec", 1, m.lat_mul, [r])
            sh = self.valu(f"shift {name}", [r])
            r = self.emit(f"mac {name}", "vec", 1, m.lat_mul, [sh, mu], acc_deps=[mu], chain_lat=m.lat_acc_chain)
            r = self.emit(f"srs {name}", "st", 1, m.lat_srs, [r])
        else:
            r = self._tree(r, int(math.log2(lanes)), 1, name, "add" if is_add else "max")
        return self.emit(f"extract {name}", "mv", 1, m.lat_bcast, [r])

    def _seg_reduce(self, o, deps, tag):
        """Per-row reduction of a band held in one vector: log2(group) rounds of shuffle_down + op
        on the whole vector, then one extract per row (aie4ml's tiled passes)."""
        m = self.m
        src = self._type(o.args[0])
        g = o.imm[0]
        name = f"{o.dst}{tag}"
        r = self._tree(deps[0] if deps else None, int(math.log2(g)), self.regs512(src), name,
                       "add" if o.code == "seg_reduce_add" else "max")
        ex = [self.emit(f"extract {name}", "mv", 1, m.lat_bcast, [r]) for _ in range(src.lanes // g)]
        return ex[-1]

    def _batched_reciprocal(self, o, deps, tag):
        """aie4ml's batched_reciprocal: a float aie::inv seed (aie_api aie2/elementary.hpp: magic
        subtract, then negmul / add / mul / negmul / mac / negmul, each narrowed by an SRS), to_fixed,
        then per row an integer correction: a 64-bit multiply and shift, and two while-loop tests
        [assumption: each test runs once, 4 ALU ops for a 64-bit multiply, an unfilled branch]."""
        m = self.m
        name = f"{o.dst}{tag}"
        r = self.emit(f"to_float {name}", "mv", 1, m.lat_conv, deps)
        r = self.valu(f"sub {name}", [r])
        for step in ("negmul", "add", "mul", "negmul", "mac", "negmul"):
            r = self.emit(f"{step} {name}", "vec", 1, m.lat_fp, [r])
            if step != "add":
                r = self.emit(f"srs {name}", "st", 1, m.lat_conv, [r])
        r = self.emit(f"to_fixed {name}", "vec", 1, m.lat_fp, [r])
        r = self.emit(f"srs {name}", "st", 1, m.lat_srs, [r])
        last = r
        for _ in range(o.type.lanes):
            x = self.emit(f"extract {name}", "mv", 1, m.lat_bcast, [r])
            x = self.emit(f"mul64 {name}", "alu", 4, m.lat_smul, [x])
            x = self.emit(f"shift64 {name}", "alu", 3, m.lat_scalar, [x])
            x = self.emit(f"clamp {name}", "alu", 2, m.lat_scalar, [x])
            for test in ("over", "under"):
                x = self.emit(f"mul64 {test} {name}", "alu", 4, m.lat_smul, [x])
                x = self.emit(f"cmp {test} {name}", "alu", 1, m.lat_scalar, [x])
                x = self.emit(f"branch {test} {name}", "alu", 1, 6, [x], noswp=True)
            last = x
        return last

    def _float_op(self, o, deps, tag, lbl):
        m, c, t = self.m, o.code, o.type
        if c in ("fsub", "fadd", "fmul", "fmac"):
            acc = self.dep(o.args[:1]) if c in ("fmac", "fsub", "fadd") and self._type(o.args[0]).acc else []
            return self.emit(lbl, "vec", math.ceil(t.lanes / m.fp_lanes), m.lat_fp, deps, acc_deps=acc,
                             chain_lat=m.lat_fp_chain, t=t)
        if c == "fmax":  # scalar float compare
            return self._soft(lbl, m.soft_fcmp_ops, deps)
        if c in ("fsrs", "to_fixed"):
            return self.emit(lbl, "st", math.ceil(t.lanes / m.fp_lanes), m.lat_conv, deps, t=t)
        if c in ("freduce_max", "freduce_add"):
            src = self._type(o.args[0])
            name = f"{o.dst}{tag}"
            r = deps[0] if deps else None
            for _ in range(int(math.log2(src.lanes))):
                r = self.valu(f"shift {name}", [r])
                if c == "freduce_max":
                    r = self.valu(f"max {name}", [r])
                else:
                    r = self.emit(f"fadd {name}", "vec", 1, m.lat_fp, [r])
            return self.emit(f"extract {name}", "mv", 1, m.lat_bcast, [r])
        if c == "zero_outside":  # lt, select, gt, select (the tutorial's bounds check)
            r = deps[0] if deps else None
            for step in ("lt", "select", "gt", "select"):
                r = self.valu(f"{step} {o.dst}{tag}", [r], 1, t)
            return r
        if c == "lut_exp":
            # to int16 fixed point (st), keep even lanes (mv); per table and 16 lanes
            # (aie2/parallel_lookup.hpp fetch): UPS, SRS to an int32 index, the out-of-range
            # policy, one load_lut_2x (both load units), shuffle, pack; the two factors are
            # multiplied (vec) and narrowed to bf16 (st)
            f = self.emit(f"to_fixed {o.dst}{tag}", "st", 1, m.lat_conv, deps)
            f = self.valu(f"filter {o.dst}{tag}", [f])
            looks = []
            for tbl in ("int", "frac"):
                for _ in range(math.ceil(t.lanes / 16)):
                    u = self.emit(f"ups {tbl} {o.dst}{tag}", "mv", 1, m.lat_ups, [f])
                    s = self.emit(f"srs {tbl} {o.dst}{tag}", "st", 1, m.lat_srs, [u])
                    s = self.valu(f"oor {tbl} {o.dst}{tag}", [s])
                    lk = self.emit(f"lut_{tbl} {o.dst}{tag}", "ld", 2, m.lat_load, [s])
                    sh = self.valu(f"shuffle {tbl} {o.dst}{tag}", [lk], 1)
                    looks.append(self.emit(f"pack {tbl} {o.dst}{tag}", "st", 1, m.lat_pack, [sh]))
            mu = self.emit(f"fmul {o.dst}{tag}", "vec", math.ceil(t.lanes / m.fp_lanes), m.lat_fp, looks)
            return self.emit(f"fsrs {o.dst}{tag}", "st", math.ceil(t.lanes / m.fp_lanes), m.lat_conv, [mu], t=t)
        if c == "exp2":
            if not m.native_exp2:
                raise InputError(f"exp2 is not native on {m.name}")
            return self.emit(lbl, "vec", math.ceil(t.lanes / m.fp_lanes), m.lat_fp, deps, t=t)
        if c == "finv":
            if m.scalar_inv:
                return self.emit(lbl, "alu", 1, m.scalar_inv_cycles, deps)
            return self._soft(lbl, m.soft_fdiv_ops, deps)
        raise NotImplementedError(f"cycle model has no rule for {c}")

    def _soft(self, lbl, ops, deps):
        return self.emit(lbl, "alu", self.m.call_cycles + ops, 1, deps, call=True)

    # -- carries ------------------------------------------------------------------------------
    def carry(self, c: Carry, prev, value_name, factor_name, tag, init_name=None):
        m = self.m
        if prev is None and init_name in self.hoisted:
            self.used_hoisted.add(init_name)
        if factor_name in self.hoisted:
            self.used_hoisted.add(factor_name)
        deps = [d for d in (prev, self.where.get(value_name)) if d is not None]
        t = self._type(value_name)
        if c.combine == "max":
            r = self.valu(f"max {c.dst}{tag}", deps, self.regs512(t), t)
        elif c.combine == "add" and t.acc:
            r = self.emit(f"acc_add {c.dst}{tag}", "vec", math.ceil(t.bits / m.acc_reg_bits), m.lat_mul, deps,
                          acc_deps=deps, chain_lat=m.lat_acc_chain, t=t)
        elif c.combine == "add":
            r = self.valu(f"add {c.dst}{tag}", deps, self.regs512(t), t)
        elif c.combine == "mac":
            f = self.where.get(factor_name)
            r = self.emit(f"mac {c.dst}{tag}", "vec", math.ceil(t.lanes / m.mul_lanes_acc32), m.lat_mul,
                          deps + _d(f), acc_deps=_d(prev), chain_lat=m.lat_acc_chain, t=self._type(c.init))
        elif c.combine == "mmul":  # acc[M x N] += A * B of one native tile: one VMAC
            f = self.where.get(factor_name)
            r = self.emit(f"mmul {c.dst}{tag}", "vec", 1, m.lat_mul, deps + _d(f), acc_deps=_d(prev),
                          chain_lat=m.lat_acc_chain, t=self._type(c.init))
        elif c.combine == "fadd":
            r = self.emit(f"fadd {c.dst}{tag}", "vec", math.ceil(t.lanes / m.fp_lanes), m.lat_fp, deps,
                          acc_deps=_d(prev), chain_lat=m.lat_fp_chain, t=t)
        elif t is not None and not t.is_scalar:
            r = self.valu(f"fmax {c.dst}{tag}", deps, 1, t)
        else:  # a running scalar float max: a soft-float compare per trip
            r = self._soft(f"fmax {c.dst}{tag}", m.soft_fcmp_ops, deps)
        self.carry_instrs.append(r)
        return r


def _d(r):
    return [] if r is None else [r]


def name_of(n, r, suffix=""):
    return f"{n}{suffix}__{r}"


@dataclass
class _RawOp:  # like ir.Op without identifier checks (names carry row/trip suffixes here)
    dst: str | None
    code: str
    type: object
    args: tuple
    imm: tuple
    buf: str | None


def rename_op(lw: Lowering, o: Op, r: int, suffix: str):
    """Lower op `o` for row r (and trip suffix), mapping operand names to their per-row copies."""
    def nm(a):
        for cand in (name_of(a, r, suffix), name_of(a, r)):
            if cand in lw.where or cand in lw.hoisted:
                return cand
        lw.where.setdefault(name_of(a, r), None)
        return name_of(a, r)

    args = tuple(nm(a) for a in o.args)
    dst = name_of(o.dst, r, suffix) if o.dst else None
    for a, orig in zip(args, o.args):
        if a not in lw.types:
            lw.types[a] = lw.types.get(name_of(orig, r)) or lw.ir_types.get(orig)
    lw.cur_row = r
    lw.op(_RawOp(dst, o.code, o.type, args, o.imm, o.buf), f" r{r}{suffix}")
    lw.cur_row = None


def group_reduce(lw: Lowering, o: Op, R: int):
    """R rows halve privately to a 1/R-register partial, pack, then share log2(P) segmented steps
    (what emit._Printer._group_reduce prints)."""
    m = lw.m
    src = lw.ir_types[o.args[0]]
    is_add = o.code == "reduce_add"
    opn = "add" if is_add else "max"
    packs = []
    elem_bits = 32 if src.acc else _ebits(src)
    P = max(1, (m.alu_bits // elem_bits) // R)
    for r in range(R):
        lw.cur_row = r
        x = lw.where.get(name_of(o.args[0], r))
        lanes, bits = src.lanes, src.bits
        if src.acc:
            while bits > m.alu_bits:
                x = lw.emit(f"acc_add {o.dst} r{r}", "vec", 1, m.lat_mul, _d(x), acc_deps=_d(x), chain_lat=m.lat_acc_chain)
                bits, lanes = bits // 2, lanes // 2
            x = lw.emit(f"srs {o.dst} r{r}", "st", 1, m.lat_srs, _d(x))
            bits = lanes * 32
        while bits > m.alu_bits:  # whole registers first
            x = lw.valu(f"{opn} {o.dst} r{r}", _d(x))
            bits, lanes = bits // 2, lanes // 2
        while lanes > P:
            if bits <= m.mem_bits:  # below a 256-bit half the upper piece must be shuffled down
                x = lw.valu(f"shuffle {o.dst} r{r}", _d(x))
            x = lw.valu(f"{opn} {o.dst} r{r}", _d(x))
            lanes, bits = lanes // 2, bits // 2
        packs.append(lw.valu(f"pack {o.dst} r{r}", _d(x)))
    lw.cur_row = None
    deps = packs
    for _ in range(int(math.log2(P))):
        sh = lw.valu(f"shuffle {o.dst} shared", deps)
        deps = [lw.valu(f"{opn} {o.dst} shared", [sh, *deps])]
    for r in range(R):
        lw.where[name_of(o.dst, r)] = lw.emit(f"extract {o.dst} r{r}", "mv", 1, m.lat_bcast, deps)
        lw.types[name_of(o.dst, r)] = o.type


# llvm-aie AIE2TTIImpl::getUnrollingPreferences: UP.FullUnrollMaxCount = 32 and UP.Threshold =
# aie-unroll-max-cost = 200: a loop with a compile-time trip count is fully unrolled when its
# unrolled size fits. [assumption] size = one unit per API-level op of the body (bit casts free).
FULL_UNROLL_MAX_TRIPS = 32
FULL_UNROLL_MAX_SIZE = 200


def fully_unrolled(loop: Loop, rows: int = 1) -> bool:
    size = rows * (sum(o.code != "cast" for o in loop.body) + len(loop.carries))
    return loop.trips <= FULL_UNROLL_MAX_TRIPS and loop.trips * size <= FULL_UNROLL_MAX_SIZE


def lower_rows(k: Kernel, m: Machine, R: int, ir_types: dict, loop_ii):
    """One row-loop trip (R interleaved rows) as one instruction list, and its inner loops.

    A loop the kernel flattens (`unroll`, or a single trip) becomes straight code. Any other loop
    stays a loop: each trip is lowered in place and every instruction of trip t+1 is tied to its
    copy in trip t by the loop's II (`Instr.after`), which is what a software-pipelined loop is;
    its setup bundle (lng) sits at least LoopSetupDistance bundles before the loop's end.
    `loop_ii(lowering, first_instr, trips)` gives a loop's II from its first trip.
    Returns (lowering, inner loops as (loop, II) pairs).
    """
    cur = Lowering(k, m, ir_types)
    inner = []
    for s in k.body:
        if not isinstance(s, Loop):
            if s.code in ("reduce_max", "reduce_add") and s.group > 1 and s.group == R:
                group_reduce(cur, s, R)
            else:
                for r in range(R):
                    rename_op(cur, s, r, "")
            continue
        flat = s.unroll or s.trips == 1 or fully_unrolled(s, R)
        setup = None if flat else cur.emit(f"loop setup {s.label}", "lng", 1, 1, [])
        starts, ii = [], 0
        prev = {(r, c.dst): cur.where.get(name_of(c.init, r)) for r in range(R) for c in s.carries}
        for t in range(s.trips):
            starts.append(len(cur.instrs))
            for r in range(R):
                for o in s.body:
                    rename_op(cur, o, r, f"_{t}")
                for c in s.carries:
                    fac = None if c.factor is None else next(
                        (cand for cand in (name_of(c.factor, r, f"_{t}"), name_of(c.factor, r)) if cand in cur.where),
                        name_of(c.factor, r))
                    cur.cur_row = r
                    prev[r, c.dst] = cur.carry(c, prev[r, c.dst], name_of(c.value, r, f"_{t}"), fac, f" r{r}.{t}",
                                               name_of(c.init, r))
                    cur.cur_row = None
            if t == 0 and not flat:
                ii = loop_ii(cur, starts[0], s.trips)
                for j in range(starts[0], len(cur.instrs)):
                    cur.instrs[j].after.append((setup, max(1, m.loop_setup_distance - ii)))
            if t > 0 and not flat:
                size = starts[1] - starts[0]
                assert len(cur.instrs) - starts[t] == size, "every trip lowers to the same code"
                for j in range(size):
                    cur.instrs[starts[t] + j].after.append((starts[t - 1] + j, ii))
        for r in range(R):
            for c in s.carries:
                cur.where[name_of(c.dst, r)] = prev[r, c.dst]
                cur.types[name_of(c.dst, r)] = cur._type(name_of(c.init, r)) or ir_types.get(c.init)
        if not flat:
            inner.append((s, ii))
    return cur, inner
