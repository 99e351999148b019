"""Cycle model: a kernel IR scheduled on a machine description of an AIE-ML / AIE-MLv2 tile.

Every figure this module produces is an emulator *estimate*, not a hardware measurement.

How a kernel is costed (`machine.RULES` lists the rules with their sources; nothing is fitted
per kernel or per published point):

1. `lowering.lower_rows` turns one row-loop trip (the kernel's `rows_per_iter` interleaved rows,
   each a band of `band` rows) into machine instructions: each IR op as the AIE API emits it, on
   its VLIW slot, with its issue count and latency. Loop-invariant values are hoisted.
2. Loops the kernel flattens are straight code; any other inner loop is software-pipelined in
   place (its trips tied by its II; prologue and epilogue share cycles with the code around it).
3. If the row body then holds no loop and no call, the row loop is software-pipelined: the model
   looks for the smallest II from the busiest slot up to the pipeliner's limit (40) with at most
   3 stages, no broken memory recurrence through a scratch row, and live registers within the
   files (spilling when only registers stand in the way). A row costs II / rows per trip.
4. Otherwise (or when no II <= 40 works) rows run back to back: a row costs one trip's list
   schedule (registers checked the same way, spills if needed) plus the row loop's branch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .ir import Kernel, Loop
from .lowering import Instr, lower_rows
from .machine import AIE_ML, AIE_MLV2, ASSUMPTIONS, MACHINES, RULES, SLOTS, Machine, machine_for
from .schedule import (Fit, fit_linear, fit_modulo, list_schedule, makespan, place, resource_bound,
                       successors_and_priority)
from ..errors import InputError

PROJECTION_TILES = (1, 8, 64, 184, 304)
TILE_ASSUMPTIONS = ("rows are independent, one head's kernel per tile, each tile fed at its own rate "
                    "(no shared stream, DMA or PLIO limit): throughput scales linearly with tiles")

__all__ = ["estimate", "CycleReport", "RowSchedule", "slot_view", "steady_state_view", "modulo_schedule",
           "list_schedule", "resource_bound", "Instr", "Machine", "AIE_ML", "AIE_MLV2", "MACHINES", "RULES",
           "ASSUMPTIONS", "SLOTS", "machine_for", "successors_and_priority"]


@dataclass
class RowSchedule:
    """One row-loop trip as the model charges it."""

    label: str
    cycles: int        # what one trip costs (the II when the row loop is pipelined)
    instrs: list
    span: int          # list-schedule length of one trip (its latency)
    pipelined: bool
    ii: int | None = None
    placed: list | None = None   # issue cycles of `instrs` in the schedule charged


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
    registers: str = ""
    spills: int = 0
    ii_lengthened: bool = False
    band: int = 1

    @property
    def rows_per_trip(self) -> int:
        return self.rows_per_iter * self.band

    def total_cycles(self, rows: int) -> float:
        """One kernel call over `rows` rows: whole row-loop trips, plus the software pipeline's
        fill and drain (one trip's latency minus one II) when the row loop is pipelined."""
        trips = -(-rows // self.rows_per_trip)
        per_trip = self.cycles_per_row * self.rows_per_trip
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
                "row_loop_pipelined": self.row_loop_pipelined, "ii": self.row.ii, "kernel": self.kernel,
                "variant": self.variant, "schedule": self.schedule, "arch": self.arch, "n": self.n,
                "lanes": self.lanes, "rows_per_trip": self.rows_per_trip, "slot_busy_per_row": self.slot_busy,
                "registers": self.registers, "spills": self.spills, "notes": self.notes,
                "tile_projection": {"tiles": list(PROJECTION_TILES),
                                    "gelem_per_s": [round(self.tiles(t), 2) for t in PROJECTION_TILES],
                                    "assumptions": TILE_ASSUMPTIONS},
                "estimate": "emulator cycle-model estimate, not a hardware measurement"}


def _loop_ii(m: Machine):
    def ii_of(lw, start: int, trips: int) -> int:
        """II of a pipelined inner loop from its first trip: its busiest slot, its loop-carried
        recurrence, and its latency over min(3 stages, trips) (a T-trip loop has at most T
        stages). A trip with a call or a branch is not pipelined: the next trip waits for it."""
        trip = [_local(i, start) for i in lw.instrs[start:]]
        span = makespan(trip, place(trip, m))
        if any(i.call or i.noswp for i in trip):
            return span
        rec = max((lw.instrs[j].chain_lat or lw.instrs[j].lat) + lw.instrs[j].issues - 1
                  for j in lw.carry_instrs if j >= start) if any(j >= start for j in lw.carry_instrs) else 1
        return max(resource_bound(trip, m), rec, math.ceil(span / min(m.max_stages, trips)))
    return ii_of


def _local(i: Instr, start: int) -> Instr:
    from dataclasses import replace

    return replace(i, deps=[d - start for d in i.deps if d >= start],
                   acc_deps=[d - start for d in i.acc_deps if d >= start], after=[])


def _scratch_check(instrs: list[Instr], k: Kernel):
    """Loop-carried memory dependences of a pipelined row loop: the next trip rewrites the same
    scratch rows, so each scratch store of trip t+1 must issue after trip t's last load of that
    buffer (t_store + II > t_load)."""
    scratch = {b.name: b.slots for b in k.buffers if b.role == "scratch"}
    st = [i for i, x in enumerate(instrs) if x.mem == "st" and x.buf in scratch]
    ld = [i for i, x in enumerate(instrs) if x.mem == "ld" and x.buf in scratch]
    if not st or not ld:
        return None

    def ok(placed, ii):
        for b in scratch:
            first_st = min((placed[i][0] for i in st if instrs[i].buf == b), default=None)
            last_ld = max((placed[i][-1] for i in ld if instrs[i].buf == b), default=None)
            if first_st is not None and last_ld is not None and first_st + scratch[b] * ii <= last_ld:
                return False
        return True
    ok.loads = ld
    return ok


def _hoisted_units(lw) -> dict:
    """Registers the loop-invariant values hold for the whole loop (one copy each: the
    interleaved rows share their constants, as the emitted code does)."""
    base = {"v": 0, "a": 0}
    seen = set()
    for name, t in lw.hoisted.items():
        key = name.split("__")[0]
        if name not in lw.used_hoisted or key in seen or t is None or t.is_scalar or (t.acc is None and t.lanes <= 4):
            continue
        seen.add(key)
        base["a" if t.acc else "v"] += max(1, math.ceil(t.bits / 256))
    return base


def _ir_types(k: Kernel) -> dict:
    types = {}
    for s in k.body:
        ops = s.body if isinstance(s, Loop) else (s,)
        for o in ops:
            if o.dst and o.type is not None:
                types[o.dst] = o.type
        if isinstance(s, Loop):
            for c in s.carries:
                types[c.dst] = types.get(c.init) or types.get(c.value)
    return types


_CACHE: dict = {}


def _structure(k: Kernel, m: Machine) -> tuple:
    """What the schedule depends on: the ops and their types, not the constants' values."""
    def ops(body):
        for s in body:
            if isinstance(s, Loop):
                yield ("loop", s.trips, s.unroll, s.carries)
                yield from ops(s.body)
            else:
                yield (s.code, s.type, s.args, s.buf, s.group, () if s.code in ("const", "sconst") else s.imm)
    return (k.name, k.family, k.variant, k.schedule, k.n, k.lanes, k.rows_per_iter, k.band, k.buffers,
            (m.name, tuple(sorted((f, str(v)) for f, v in vars(m).items() if f != "clock_ghz"))),
            tuple(ops(k.body)))


def estimate(k: Kernel, machine: Machine | None = None, clock_ghz: float | None = None) -> CycleReport:
    """Cycles per row for kernel `k` (see the module docstring for the rules). Results are cached
    by the kernel's structure (its constants' values do not change the schedule)."""
    from dataclasses import replace

    m = machine or machine_for(k.arch)
    if clock_ghz is not None:
        m = m.with_clock(clock_ghz)
    key = _structure(k, m)
    if key not in _CACHE:
        _CACHE[key] = _estimate(k, m)
    rep = _CACHE[key]
    return replace(rep, clock_ghz=m.clock_ghz, notes=list(rep.notes))


def _estimate(k: Kernel, m: Machine) -> CycleReport:
    R = k.rows_per_iter
    lw, inner = lower_rows(k, m, R, _ir_types(k), _loop_ii(m))
    instrs = lw.instrs
    base = _hoisted_units(lw)
    blocked = [i.label for i in instrs if i.call or i.noswp]
    notes: list[str] = []
    span = makespan(instrs, place(instrs, m))
    rb = resource_bound(instrs, m)
    fit: Fit | None = None
    why = None
    if k.family == "reference":
        why = "reference kernels are invoked once per row"
    elif inner:
        why = "it holds inner loops: " + ", ".join(f"{lp.label} ({lp.trips} trips, II {ii})" for lp, ii in inner)
    elif blocked:
        why = f"it calls a software routine or branches ({blocked[0].split(' r')[0]})"
    else:
        fit = fit_modulo(instrs, m, base, rb, _scratch_check(instrs, k))
        if fit is None:
            need = max(rb, math.ceil(span / m.max_stages))
            why = (f"no II <= {m.max_ii} (the pipeliner's limit) fits: busiest slot {rb}, "
                   f"latency {span} over {m.max_stages} stages {math.ceil(span / m.max_stages)}"
                   + ("" if need > m.max_ii else ", registers"))
    if fit is not None:
        per_trip = fit.ii
        fspan = makespan(fit.instrs, fit.placed)
        row = RowSchedule(f"row loop (software-pipelined, II {fit.ii})", per_trip, fit.instrs, fspan, True,
                          fit.ii, fit.placed)
        bound = "the busiest slot" if fit.ii == rb else (
            "registers" if fit.lengthened_from is not None else
            f"its latency {fspan} over {m.max_stages} stages" if fit.ii >= math.ceil(fspan / m.max_stages)
            else "a memory recurrence")
        notes.append(f"row loop software-pipelined over {R * k.band} row(s) per trip: II = {fit.ii} cycles, "
                     f"bound by {bound} (busiest slot {rb})")
    else:
        fit = fit_linear(instrs, m, base)
        lspan = makespan(fit.instrs, fit.placed)
        per_trip = lspan + m.branch_issues + (m.invoke_cycles if k.family == "reference" else 0)
        row = RowSchedule("row (rows back to back)", per_trip, fit.instrs, lspan, False, None, fit.placed)
        notes.append(f"row loop not software-pipelined ({why}): one trip's schedule is {lspan} cycles")
    notes.append("registers: " + fit.outcome(m))
    busy = {s: 0 for s in SLOTS}
    for ins in row.instrs:
        busy[ins.slot] += ins.issues
    rows = R * k.band
    slot_busy = {s: round(v / rows, 2) for s, v in busy.items() if v}
    return CycleReport(k.name, k.variant, k.schedule, m.name, k.n, k.lanes, m.clock_ghz, per_trip / rows,
                       row.pipelined, row, slot_busy, notes, R, fit.outcome(m), fit.spills,
                       fit.lengthened_from is not None, k.band)


def slot_view(k: Kernel, machine: Machine | None = None) -> list[dict]:
    """The list schedule of one row-loop trip as rows {cycle, slot, op} (a slots-per-cycle chart)."""
    m = machine or machine_for(k.arch)
    instrs = estimate(k, m).row.instrs
    placed = place(instrs, m)
    rows = [{"cycle": c, "slot": ins.slot, "op": ins.label} for ins, cyc in zip(instrs, placed) for c in cyc]
    return sorted(rows, key=lambda r: (r["cycle"], SLOTS.index(r["slot"])))


def modulo_schedule(instrs: list[Instr], machine: Machine, ii: int) -> list[list[int]]:
    """Place an acyclic loop body on a modulo reservation table of `ii` cycles: each instruction's
    issue cycles in the flat schedule (cycle % ii its steady-state row, cycle // ii its stage)."""
    if ii < resource_bound(instrs, machine):
        raise InputError(f"II {ii} is below the resource bound {resource_bound(instrs, machine)}")
    return place(instrs, machine, ii)


def steady_state_view(k: Kernel, machine: Machine | None = None) -> tuple[int, list[dict]]:
    """The software-pipelined row loop's steady state: (II, rows {cycle, slot, op, stage})."""
    m = machine or machine_for(k.arch)
    rep = estimate(k, m)
    if not rep.row_loop_pipelined:
        raise InputError(f"{k.name}: the row loop is not software-pipelined ({rep.notes[0]})")
    ii = rep.row.ii
    rows = [{"cycle": c % ii, "slot": ins.slot, "op": ins.label, "stage": c // ii}
            for ins, cyc in zip(rep.row.instrs, rep.row.placed) for c in cyc]
    return ii, sorted(rows, key=lambda r: (r["cycle"], SLOTS.index(r["slot"])))
