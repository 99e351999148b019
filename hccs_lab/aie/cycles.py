"""Cycle model: schedule a kernel IR on a machine description of an AIE-ML / AIE-MLv2 tile.

Every figure this module produces is an emulator *estimate*, not a hardware measurement.

How a kernel is costed (the rules are the same for every kernel; nothing is fitted per kernel):

1. Each IR op becomes one or more machine instructions, each on one VLIW slot (2 load, 1 store,
   1 vector, 1 scalar, 1 move per cycle), with an issue count from the data width and a latency.
   Reductions expand into log2(lanes) shuffle+combine steps. Loop-invariant constants are hoisted
   (cost 0 per row).
2. Loops with `unroll` or a single trip become straight-line code (the emitted C++ asks for
   that with chess_unroll_loop; UG1079: complete flattening or unrolling is what those pragmas
   are for). Any other loop stays a loop and is software-pipelined: its trips are lowered in
   place, each instruction of trip t+1 at least II cycles after its copy in trip t, with II its
   busiest slot or its loop-carried recurrence; its pre-amble and post-amble (UG1079, "Loops")
   share cycles with the code around it. A loop that calls a software routine (division, emulated
   float) is not pipelined: II is one trip's schedule.
3. If the row body then holds no inner loop and calls no software routine, the row loop is the
   innermost loop and is software-pipelined: a row costs its resource bound (busiest slot) plus the
   loop overhead, both per `rows_per_iter` interleaved rows, or its schedule length over
   `max_trips_in_flight` when that is longer.
4. Otherwise rows run one after another: a row costs its list-schedule length plus the loop
   overhead of the row loop and of each inner loop.

Not modelled: register allocation and memory-bank conflicts. AIE-ML has 24 x 256-bit vector and
9 x 1024-bit accumulator registers (AM020, UG1603); a schedule that keeps more values live than
that needs spills or a longer II, so the interleaved schedules (4 rows per trip) are the figures
most likely to be optimistic.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field, replace

from .ir import Kernel, Loop, Op, Carry
from ..errors import InputError

PROJECTION_TILES = (1, 8, 64, 184, 304)
TILE_ASSUMPTIONS = ("rows are independent, one head's kernel per tile, each tile fed at its own rate "
                    "(no shared stream, DMA or PLIO limit): throughput scales linearly with tiles")
SLOTS = ("load", "store", "vector", "scalar", "move", "stream_in", "stream_out")


@dataclass(frozen=True)
class Machine:
    """One tile. Sources are cited next to each number; [assumption] marks what no source states."""

    name: str
    clock_ghz: float = 1.25  # VE2802 -2 grade FMAX 1250 MHz (DS958); the tutorial's rates imply 1.0/1.25 GHz
    # UG1603: "maximum of two loads, one store, one scalar operation, one fixed-point or bfloat16
    # vector operation, and one move instruction" per VLIW instruction.
    ports: dict = field(default_factory=lambda: {"load": 2, "store": 1, "vector": 1, "scalar": 1,
                                                 "move": 1, "stream_in": 1, "stream_out": 1})
    load_bits: int = 256    # AM020: "Two 256-bit load and one 256-bit store units"
    store_bits: int = 256
    stream_bits: int = 32   # UG1603: stream switch "32-bit for AIE-ML" (64-bit on AIE-ML v2)
    alu_bits: int = 512     # AM020: only 512-bit register operations (64 int8, 32 int16, 16 int32 lanes)
    acc_bits: int = 1024    # one 1024-bit accumulator register (cm, UG1603) written per multiply op
    fp_lanes: int = 16      # tutorial: "floating-point multiply unit processes vectors with 16 lanes"
    lut_parallel: int = 4   # UG1603: "four parallel accesses of aie::lut" on AIE-ML
    native_exp2: bool = False   # aie::exp2 only on XDNA2/AIE-MLv2 (UG1529)
    lat_load: int = 7       # UG1702: load data "available ... in the E7 stage"
    lat_store_to_load: int = 6  # UG1702: the store unit sends data "in the E5 or E6 stage"
    lat_mul: int = 6        # UG1702: vector unit spans ID..E6; tutorial: fp vector "pipeline depth of six"
    lat_fp: int = 6         # same source
    # Not published by AMD. The open xdna-emu timing table (third party, "derived from AM020")
    # gives "Vector simple 1-2 cycles", "Vector MAC 4+"; we take the simple ops at 1 and keep the
    # multiplier at the documented E6 depth.
    lat_alu: int = 1        # integer add/sub/min/max/shuffle/select
    lat_srs: int = 2        # [assumption] shift-round-saturate / upshift between accumulator and vector files
    lat_move: int = 1       # [assumption] scalar<->vector moves and broadcasts
    lat_scalar: int = 1     # AM020: "Integer add, subtract, compare, and shift functions are one-cycle"
    # AM020: no hardware divide and no scalar FP/non-linear unit on AIE-ML. [assumption] C '/'
    # compiles to a restoring division: 32 quotient bits x 2 scalar cycles + ~10 call/return.
    div_cycles: int = 74
    soft_float_cycles: int = 10   # [assumption] an emulated scalar float compare/add (AIE-ML has no FPU)
    inv_cycles: int = 74          # AIE-ML: float inverse emulated like the division [assumption]
    loop_overhead: int = 2        # [assumption] zero-overhead loop hardware (AM020 ls/le/lc) + setup
    # [assumption] the software pipeliner keeps at most two row-loop trips in flight (one trip's
    # reductions and reciprocal under the next trip's vector passes); register files (24 x 256-bit
    # vector, AM020) hold no more than about two trips' live vectors and accumulators.
    max_trips_in_flight: int = 2
    call_overhead: int = 20       # [assumption] per-invocation cost of a one-row-per-call kernel

    def with_clock(self, ghz: float) -> "Machine":
        if not ghz > 0:
            raise InputError(f"clock must be positive, got {ghz}")
        return replace(self, clock_ghz=float(ghz))


AIE_ML = Machine("aie-ml")
# AIE-MLv2 (AM027): same VLIW slots; "Hardware acceleration for inverse, square root, and inverse
# square root"; native exp2 (UG1529); 32-lane bf16 (mlir-aie AIE_BF16_LANES 32 for AIE2P); LUT with
# eight parallel accesses (UG1603 2026.1); 64-bit streams (UG1603).
AIE_MLV2 = replace(AIE_ML, name="aie-mlv2", fp_lanes=32, lut_parallel=8, native_exp2=True,
                   stream_bits=64, soft_float_cycles=2, inv_cycles=4)
MACHINES = {"aie-ml": AIE_ML, "aie-mlv2": AIE_MLV2}


def machine_for(arch: str, clock_ghz: float | None = None) -> Machine:
    if arch not in MACHINES:
        raise InputError(f"arch must be one of {tuple(MACHINES)}, got {arch!r}")
    m = MACHINES[arch]
    return m if clock_ghz is None else m.with_clock(clock_ghz)


# ------------------------------------------------------------------------------------------------
# instructions


@dataclass
class Instr:
    label: str
    slot: str
    issues: int
    lat: int
    deps: list
    call: bool = False
    # (instr, delay): issue no earlier than `delay` cycles after that instruction first issues.
    # A pipelined inner loop runs the same code every trip, so trip t+1 of each instruction
    # follows trip t by the loop's II.
    after: list = field(default_factory=list)


def _d(r):
    return [] if r is None else [r]


class _Lowering:
    """Turns IR ops into instructions for one row-loop trip, tracking which names are ready where."""

    def __init__(self, k: Kernel, m: Machine, ir_types: dict):
        self.k, self.m = k, m
        self.instrs: list[Instr] = []
        self.where: dict = {}  # value name -> instr index, or None when hoisted
        self.last_store: dict = {}
        self.types: dict = {}        # per-row value name -> VType
        self.ir_types = ir_types     # IR value name -> VType
        self.hoisted: set = set()    # loop-invariant values (cost 0 per row)
        self.carry_instrs: list[int] = []

    def _dep(self, names):
        return [self.where[n] for n in names if self.where.get(n) is not None]

    def emit(self, label, slot, issues, lat, deps, call=False):
        self.instrs.append(Instr(label, slot, max(1, int(issues)), lat, list(deps), call))
        return len(self.instrs) - 1

    def op(self, o: Op, tag: str):
        m = self.m
        c, t = o.code, o.type
        if o.dst is not None and t is not None:
            self.types[o.dst] = t
        hoistable = c in ("const", "sconst") or (c in ("ups", "bcast", "cast") and all(
            self.where.get(a, "x") is None and a in self.hoisted for a in o.args))
        if hoistable:
            self.hoisted.add(o.dst)
            self.where[o.dst] = None
            return
        deps = self._dep(o.args)
        lbl = f"{c} {o.dst or o.buf}{tag}"
        if c == "cast" or c == "to_bf16":  # bit reinterpretation: no instruction
            self.where[o.dst] = deps[0] if deps else None
            return
        if c == "load":
            stream = o.buf.startswith("stream")
            d = [self.last_store[o.buf]] if o.buf in self.last_store else []
            slot = "stream_in" if stream else "load"
            issues = t.bits / (m.stream_bits if stream else m.load_bits)
            self.where[o.dst] = self.emit(lbl, slot, math.ceil(issues), 2 if stream else m.lat_load, d)
            return
        if c == "store":
            stream = o.buf.startswith("stream")
            bits = self._bits_of(o.args[0])
            slot = "stream_out" if stream else "store"
            issues = bits / (m.stream_bits if stream else m.store_bits)
            self.last_store[o.buf] = self.emit(lbl, slot, math.ceil(issues), m.lat_store_to_load, deps)
            return
        self.types[o.dst] = t
        if c in ("bcast", "ups"):
            r = self.emit(lbl, "move", math.ceil(t.bits / m.acc_bits) if t.acc else 1,
                          m.lat_srs if c == "ups" else m.lat_move, deps)
        elif c in ("max", "min", "sub", "add"):
            r = self.emit(lbl, "vector", math.ceil(t.bits / m.alu_bits), m.lat_alu, deps)
        elif c in ("mul", "mac"):
            r = self.emit(lbl, "vector", math.ceil(t.bits / m.acc_bits), m.lat_mul, deps)
        elif c == "acc_add":
            r = self.emit(lbl, "vector", math.ceil(t.bits / m.acc_bits), m.lat_alu, deps)
        elif c in ("srs", "srs_var"):
            src = self.types.get(o.args[0])
            r = self.emit(lbl, "move", math.ceil((src.bits if src else t.bits) / m.acc_bits), m.lat_srs, deps)
        elif c in ("reduce_max", "reduce_add", "freduce_max", "freduce_add"):
            r = self._reduce(o, deps, tag)
        elif c in ("sconst",):
            r = None
        elif c == "sdiv":
            r = self.emit(lbl, "scalar", m.div_cycles, 1, deps, call=True)
        elif c in ("slog2", "sshl", "sshr", "ssub", "smax"):
            r = self.emit(lbl, "scalar", 1, m.lat_scalar, deps)
        elif c in ("fsub", "fadd", "fmul", "fmac"):
            r = self.emit(lbl, "vector", math.ceil(t.lanes / m.fp_lanes), m.lat_fp, deps)
        elif c == "fmax":
            if t.is_scalar:
                r = self.emit(lbl, "scalar", m.soft_float_cycles, 1, deps, call=m.soft_float_cycles > 2)
            else:
                r = self.emit(lbl, "vector", math.ceil(t.lanes / m.fp_lanes), m.lat_alu, deps)
        elif c == "fsrs":
            r = self.emit(lbl, "move", math.ceil(t.lanes / m.fp_lanes), m.lat_srs, deps)
        elif c == "to_fixed":
            r = self.emit(lbl, "vector", math.ceil(t.lanes / m.fp_lanes), m.lat_fp, deps)
        elif c == "zero_outside":  # lt, select, gt, select (the tutorial's bounds check)
            r = deps[0] if deps else None
            for step in ("lt", "select", "gt", "select"):
                r = self.emit(f"{step} {o.dst}{tag}", "vector", 1, m.lat_alu, [r] if r is not None else [])
        elif c == "lut_exp":
            # to int16 fixed point (vector), two parallel lookups on the load units, multiply (fp)
            f = self.emit(f"to_fixed {o.dst}{tag}", "vector", 1, m.lat_fp, deps)
            look = math.ceil(t.lanes / m.lut_parallel)
            li = self.emit(f"lut_int {o.dst}{tag}", "load", look, m.lat_load, [f])
            lf = self.emit(f"lut_frac {o.dst}{tag}", "load", look, m.lat_load, [f])
            mu = self.emit(f"mul {o.dst}{tag}", "vector", math.ceil(t.lanes / m.fp_lanes), m.lat_fp, [li, lf])
            r = self.emit(f"srs {o.dst}{tag}", "move", 1, m.lat_srs, [mu])
        elif c == "exp2":
            if not m.native_exp2:
                raise InputError(f"exp2 is not native on {m.name}")
            r = self.emit(lbl, "vector", math.ceil(t.lanes / m.fp_lanes), m.lat_fp, deps)
        elif c == "finv":
            r = self.emit(lbl, "scalar", m.inv_cycles, 1, deps, call=m.inv_cycles > 8)
        else:
            raise NotImplementedError(f"cycle model has no rule for {c}")
        self.where[o.dst] = r

    def _bits_of(self, name):
        t = self.types.get(name)
        return t.bits if t is not None else self.k.lanes * 8

    def _reduce(self, o, deps, tag):
        m = self.m
        src = self.types.get(o.args[0])
        lanes = src.lanes
        is_fp = o.code.startswith("f")
        r = deps[0] if deps else None
        if src.acc and not is_fp:  # halve the accumulator (its halves are separate registers), then SRS
            bits = src.bits
            while bits > m.alu_bits:
                r = self.emit(f"acc_add {o.dst}{tag}", "vector", 1, m.lat_alu, [r] if r is not None else [])
                bits //= 2
                lanes //= 2
            r = self.emit(f"srs {o.dst}{tag}", "move", 1, m.lat_srs, _d(r))
            bits = lanes * 32
        else:
            bits = src.bits if not is_fp else lanes * 16
        lat = m.lat_fp if o.code == "freduce_add" else m.lat_alu
        while lanes > 1:
            if bits <= m.alu_bits // 2:  # below a register half the lanes must be shuffled down first
                r = self.emit(f"shuffle {o.dst}{tag}", "vector", 1, m.lat_alu, _d(r))
            r = self.emit(f"{'add' if 'add' in o.code else 'max'} {o.dst}{tag}", "vector", 1, lat, _d(r))
            lanes //= 2
            bits //= 2
        return self.emit(f"extract {o.dst}{tag}", "move", 1, m.lat_move, _d(r))

    def carry(self, c: Carry, prev, value_name, tag):
        idx = self._carry(c, prev, value_name, tag)
        self.carry_instrs.append(idx)
        return idx

    def _carry(self, c: Carry, prev, value_name, tag):
        deps = [d for d in (prev, self.where.get(value_name)) if d is not None]
        t = self.types.get(value_name)
        if c.combine == "max":
            return self.emit(f"max {c.dst}{tag}", "vector", math.ceil(t.bits / self.m.alu_bits), self.m.lat_alu, deps)
        if c.combine == "add":
            return self.emit(f"acc_add {c.dst}{tag}", "vector", math.ceil(t.bits / self.m.acc_bits), self.m.lat_alu, deps)
        if c.combine == "fadd":
            return self.emit(f"fadd {c.dst}{tag}", "vector", math.ceil(t.lanes / self.m.fp_lanes), self.m.lat_fp, deps)
        if t is not None and not t.is_scalar:
            return self.emit(f"fmax {c.dst}{tag}", "vector", 1, self.m.lat_alu, deps)
        return self.emit(f"fmax {c.dst}{tag}", "scalar", self.m.soft_float_cycles, 1, deps,
                         call=self.m.soft_float_cycles > 2)


# ------------------------------------------------------------------------------------------------
# scheduling


def _successors_and_priority(instrs: list[Instr]) -> tuple[list, list[int]]:
    """Each instruction's successors, and its longest latency path to the end of the body."""
    n = len(instrs)
    succ = [[] for _ in range(n)]
    for i, ins in enumerate(instrs):
        for d in _preds(ins):
            succ[d].append(i)
    prio = [0] * n
    for i in range(n - 1, -1, -1):
        prio[i] = instrs[i].lat + instrs[i].issues + max((prio[s] for s in succ[i]), default=0)
    return succ, prio


def _preds(ins: Instr) -> list[int]:
    return ins.deps + [a for a, _ in ins.after]


def _place(instrs: list[Instr], ports: dict, ii: int | None = None) -> list[list[int]]:
    """Greedy list scheduling by longest path to the end: every instruction's issue cycles.

    With `ii`, slots are booked on a modulo reservation table of `ii` cycles (a software-pipelined
    loop body, where cycle % ii is the steady-state row); without it, on a plain timeline.
    """
    n = len(instrs)
    succ, prio = _successors_and_priority(instrs)
    table: dict = {s: [0] * (ii or 0) for s in SLOTS}
    ready_at = [0] * n
    placed: list = [None] * n
    remaining = [len(_preds(ins)) for ins in instrs]
    avail = [(-prio[i], i) for i in range(n) if remaining[i] == 0]
    heapq.heapify(avail)
    while avail:
        _, i = heapq.heappop(avail)
        ins = instrs[i]
        t = max([ready_at[d] for d in ins.deps] + [placed[a][0] + delay for a, delay in ins.after], default=0)
        use, cap = table[ins.slot], ports[ins.slot]
        need, cycles = ins.issues, []
        while need > 0:
            row = t % ii if ii else t
            while len(use) <= row:
                use.append(0)
            take = min(cap - use[row], need)
            if take > 0:
                use[row] += take
                need -= take
                cycles.extend([t] * take)
            t += 1
        placed[i] = cycles
        ready_at[i] = cycles[-1] + ins.lat
        for s in succ[i]:
            remaining[s] -= 1
            if remaining[s] == 0:
                heapq.heappush(avail, (-prio[s], s))
    return placed


def list_schedule(instrs: list[Instr], ports: dict, issue_cycles: bool = False) -> tuple[int, list]:
    """Greedy list scheduling by longest path to the end; returns (makespan, placements).

    A placement is (first, last) issue cycle, or with `issue_cycles` the list of every issue's cycle.
    The makespan waits for every result but a store's.
    """
    placed = _place(instrs, ports)
    makespan = max((c[-1] + 1 if ins.slot == "store" else max(c[-1] + 1, c[-1] + ins.lat)
                    for ins, c in zip(instrs, placed)), default=0)
    return makespan, placed if issue_cycles else [(c[0], c[-1]) for c in placed]


def resource_bound(instrs: list[Instr], ports: dict) -> int:
    tot = {s: 0 for s in SLOTS}
    for ins in instrs:
        tot[ins.slot] += ins.issues
    return max(math.ceil(tot[s] / ports[s]) for s in SLOTS)


@dataclass
class RowSchedule:
    """One row-loop trip as the model charges it."""

    label: str
    cycles: int        # what one trip costs (the II when the row loop is pipelined)
    instrs: list
    span: int          # list-schedule length of one trip (its latency)
    pipelined: bool


@dataclass
class CycleReport:
    kernel: str
    variant: str
    schedule: str
    arch: str
    n: int
    lanes: int
    clock_ghz: float
    cycles_per_row: float
    row_loop_pipelined: bool
    row: RowSchedule
    slot_busy: dict
    notes: list
    rows_per_iter: int = 1

    def total_cycles(self, rows: int) -> float:
        """One kernel call over `rows` rows: whole row-loop trips, plus the software pipeline's
        fill and drain (one trip's latency minus one II) when the row loop is pipelined."""
        trips = -(-rows // self.rows_per_iter)
        per_trip = self.cycles_per_row * self.rows_per_iter
        fill = max(0, self.row.span - per_trip) if self.row_loop_pipelined else 0
        return trips * per_trip + fill

    @property
    def elements_per_cycle(self) -> float:
        return self.n / self.cycles_per_row

    @property
    def gelem_per_s(self) -> float:
        return self.elements_per_cycle * self.clock_ghz

    def tiles(self, n_tiles: int) -> float:
        """N-tile projection: rows are independent, so tiles scale linearly (paper §4.3 choice 5);
        assumes each tile's input arrives at its own rate (no shared-stream or DMA limit)."""
        return self.gelem_per_s * n_tiles

    def as_dict(self) -> dict:
        return {"cycles_per_row": round(self.cycles_per_row, 2),
                "elements_per_cycle": round(self.elements_per_cycle, 4),
                "clock_ghz": self.clock_ghz, "gelem_per_s": round(self.gelem_per_s, 4),
                "row_loop_pipelined": self.row_loop_pipelined, "kernel": self.kernel,
                "variant": self.variant, "schedule": self.schedule, "arch": self.arch, "n": self.n,
                "lanes": self.lanes, "slot_busy_per_row": self.slot_busy, "notes": self.notes,
                "tile_projection": {"tiles": list(PROJECTION_TILES),
                                    "gelem_per_s": [round(self.tiles(t), 2) for t in PROJECTION_TILES],
                                    "assumptions": TILE_ASSUMPTIONS},
                "estimate": "emulator cycle-model estimate, not a hardware measurement"}


def _lower_rows(k: Kernel, m: Machine, R: int, ir_types: dict):
    """One row-loop trip (R interleaved rows) as one instruction list, and its inner loops.

    A loop the kernel flattens (`unroll`, or a single trip) becomes straight code. Any other loop
    stays a loop: each of its trips is lowered in place, and every instruction of trip t+1 is tied
    to its copy in trip t by the loop's II (`Instr.after`), which is what a software-pipelined loop
    is. Its pre-amble and post-amble are then free to share cycles with the code around the loop.
    Returns (lowering, inner loops as (loop, II) pairs).
    """
    cur = _Lowering(k, m, ir_types)
    inner = []
    for s in k.body:
        if not isinstance(s, Loop):
            if s.code in ("reduce_max", "reduce_add") and s.group > 1 and s.group == R:
                _group_reduce(cur, s, R)  # one shared tree for the whole group
            else:
                for r in range(R):
                    _rename_op(cur, s, r, "")
            continue
        flat = s.unroll or s.trips == 1
        starts, ii = [], 0
        prev = {(r, c.dst): None for r in range(R) for c in s.carries}
        for t in range(s.trips):
            starts.append(len(cur.instrs))
            for r in range(R):
                for o in s.body:
                    _rename_op(cur, o, r, f"_{t}")
                for c in s.carries:
                    prev[r, c.dst] = cur.carry(c, prev[r, c.dst], _name(c.value, r, f"_{t}"), f" r{r}.{t}")
            if t == 0 and not flat:
                ii = _loop_ii(cur, starts[0], m)
            if t > 0 and not flat:
                size = starts[1] - starts[0]
                assert len(cur.instrs) - starts[t] == size, "every trip lowers to the same code"
                for j in range(size):
                    cur.instrs[starts[t] + j].after.append((starts[t - 1] + j, ii))
        for r in range(R):
            for c in s.carries:
                cur.where[_name(c.dst, r)] = prev[r, c.dst]
        if not flat:
            inner.append((s, ii))
    return cur, inner


def _loop_ii(lw: _Lowering, start: int, m: Machine) -> int:
    """II of a pipelined inner loop from its first trip (instructions from `start` on): its busiest
    slot, or its loop-carried recurrence (a running max or sum waits for its own last result).
    A trip that calls a software routine is not pipelined: the next trip waits for this one.
    """
    trip = [replace(i, deps=[d - start for d in i.deps if d >= start], after=[]) for i in lw.instrs[start:]]
    if any(i.call for i in trip):
        return list_schedule(trip, m.ports)[0]
    rec = max((lw.instrs[j].lat + lw.instrs[j].issues - 1 for j in lw.carry_instrs if j >= start), default=1)
    return max(resource_bound(trip, m.ports), rec)


def _group_reduce(lw: _Lowering, o: Op, R: int):
    """R rows halve privately to a 1/R-register partial, pack, then share log2(P) segmented steps."""
    m = lw.m
    src = lw.ir_types[o.args[0]]
    is_add = o.code == "reduce_add"
    packs = []
    for r in range(R):
        x = lw.where.get(_name(o.args[0], r))
        lanes, bits = src.lanes, src.bits
        if src.acc:  # halve in the accumulator file, then one SRS to int32 lanes
            while bits > m.alu_bits:
                x = lw.emit(f"acc_add {o.dst} r{r}", "vector", 1, m.lat_alu, _d(x))
                bits //= 2
                lanes //= 2
            x = lw.emit(f"srs {o.dst} r{r}", "move", 1, m.lat_srs, _d(x))
            bits = lanes * 32
        elem_bits = bits // lanes
        P = max(1, (m.alu_bits // elem_bits) // R)
        while lanes > P:
            if bits <= m.alu_bits // 2:
                x = lw.emit(f"shuffle {o.dst} r{r}", "vector", 1, m.lat_alu, _d(x))
            x = lw.emit(f"{'add' if is_add else 'max'} {o.dst} r{r}", "vector", 1, m.lat_alu, _d(x))
            lanes //= 2
            bits //= 2
        packs.append(lw.emit(f"pack {o.dst} r{r}", "move", 1, m.lat_move, _d(x)))
    deps = packs
    for _ in range(int(math.log2(P))):
        sh = lw.emit(f"shuffle {o.dst} shared", "vector", 1, m.lat_alu, deps)
        deps = [lw.emit(f"{'add' if is_add else 'max'} {o.dst} shared", "vector", 1, m.lat_alu, [sh, *deps])]
    for r in range(R):
        lw.where[_name(o.dst, r)] = lw.emit(f"extract {o.dst} r{r}", "move", 1, m.lat_move, deps)
        lw.types[_name(o.dst, r)] = o.type


def _name(n, r, suffix=""):
    return f"{n}{suffix}__{r}"


def _rename_op(lw: _Lowering, o: Op, r: int, suffix: str):
    """Lower op `o` for row r (and trip suffix), mapping operand names to their per-row copies."""
    def nm(a):
        for cand in (_name(a, r, suffix), _name(a, r)):
            if cand in lw.where or cand in lw.hoisted:
                return cand
        # hoisted: no dependency inside the trip
        lw.where.setdefault(_name(a, r), None)
        return _name(a, r)

    args = tuple(nm(a) for a in o.args)
    dst = _name(o.dst, r, suffix) if o.dst else None
    for a, orig in zip(args, o.args):
        if a not in lw.types:
            lw.types[a] = lw.types.get(_name(orig, r)) or lw.ir_types.get(orig)
    lw.op(_RawOp(dst, o.code, o.type, args, o.imm, o.buf), f" r{r}{suffix}")


@dataclass
class _RawOp:  # like ir.Op without identifier checks (names carry row/trip suffixes here)
    dst: str | None
    code: str
    type: object
    args: tuple
    imm: tuple
    buf: str | None


def estimate(k: Kernel, machine: Machine | None = None, clock_ghz: float | None = None) -> CycleReport:
    """Cycles per row for kernel `k` (see the module docstring for the rules)."""
    m = machine or machine_for(k.arch)
    if clock_ghz is not None:
        m = m.with_clock(clock_ghz)
    ir_types = {}
    for o, _ in _iter_ops(k):
        if o.dst and o.type is not None:
            ir_types[o.dst] = o.type
    for s in k.body:
        if isinstance(s, Loop):
            for c in s.carries:
                ir_types[c.dst] = ir_types.get(c.value)
    R = k.rows_per_iter
    lw, inner = _lower_rows(k, m, R, ir_types)
    instrs = lw.instrs
    notes = []
    has_call = any(i.call for i in instrs)
    busy = {s: 0 for s in SLOTS}
    for ins in instrs:
        busy[ins.slot] += ins.issues
    span, _ = list_schedule(instrs, m.ports)
    pipelined = not inner and not has_call and k.family == "hccs"
    if pipelined:
        rb = resource_bound(instrs, m.ports) + m.loop_overhead
        per_iter = max(rb, math.ceil(span / m.max_trips_in_flight))
        cycles = per_iter / R
        row = RowSchedule("row loop (software-pipelined)", per_iter, instrs, span, True)
        bound = "resources" if per_iter == rb else f"latency ({span} cycles / {m.max_trips_in_flight} trips in flight)"
        notes.append(f"row loop software-pipelined over {R} row(s) per trip: II = {per_iter} cycles, "
                     f"bound by {bound}; busiest-slot bound {rb} incl. {m.loop_overhead} loop overhead")
    else:
        total = span + m.loop_overhead * (1 + len(inner))
        row = RowSchedule("row (rows back to back)", total, instrs, span, False)
        if k.family == "reference":
            total += m.call_overhead
            why = "reference kernels are invoked once per row"
        elif has_call:
            why = "it calls a software routine"
        else:
            why = "it holds inner loops: " + ", ".join(f"{lp.label} ({lp.trips} trips, II {ii})" for lp, ii in inner)
        cycles = total / R
        notes.append(f"row loop not software-pipelined ({why}): one row's schedule is {span} cycles")
    slot_busy = {s: round(v / R, 2) for s, v in busy.items() if v}
    return CycleReport(k.name, k.variant, k.schedule, m.name, k.n, k.lanes, m.clock_ghz, cycles,
                       pipelined, row, slot_busy, notes, R)


def _iter_ops(k):
    for s in k.body:
        if isinstance(s, Loop):
            for o in s.body:
                yield o, s
        else:
            yield s, None


def slot_view(k: Kernel, machine: Machine | None = None) -> list[dict]:
    """The list schedule of one row-loop trip as rows {cycle, slot, op} (a slots-per-cycle chart)."""
    m = machine or machine_for(k.arch)
    instrs = estimate(k, m).row.instrs
    _, placed = list_schedule(instrs, m.ports, issue_cycles=True)
    rows = []
    for ins, cycles in zip(instrs, placed):
        for c in cycles:
            rows.append({"cycle": c, "slot": ins.slot, "op": ins.label})
    return sorted(rows, key=lambda r: (r["cycle"], SLOTS.index(r["slot"])))


def modulo_schedule(instrs: list[Instr], ports: dict, ii: int) -> list[list[int]]:
    """Place an acyclic loop body on a modulo reservation table of `ii` cycles.

    Returns each instruction's issue cycles (one entry per issue) in the flat schedule; cycle % ii is its
    slot row in the steady state and cycle // ii its stage. For an acyclic body (rows are
    independent) any ii >= the resource bound succeeds, which is why the model takes
    II = resource bound for a software-pipelined row loop.
    """
    if ii < resource_bound(instrs, ports):
        raise InputError(f"II {ii} is below the resource bound {resource_bound(instrs, ports)}")
    return _place(instrs, ports, ii)


def steady_state_view(k: Kernel, machine: Machine | None = None) -> tuple[int, list[dict]]:
    """The software-pipelined row loop's steady state: (II, rows {cycle, slot, op, stage}).

    Only for kernels whose row loop the model pipelines (straight-line, no software call).
    """
    m = machine or machine_for(k.arch)
    rep = estimate(k, m)
    if not rep.row_loop_pipelined:
        raise InputError(f"{k.name}: the row loop is not software-pipelined ({rep.notes[0]})")
    instrs = rep.row.instrs
    ii = resource_bound(instrs, m.ports)
    placed = modulo_schedule(instrs, m.ports, ii)
    rows = []
    for ins, cycles in zip(instrs, placed):
        for c in cycles:
            rows.append({"cycle": c % ii, "slot": ins.slot, "op": ins.label, "stage": c // ii})
    return ii, sorted(rows, key=lambda r: (r["cycle"], SLOTS.index(r["slot"])))
