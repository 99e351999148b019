"""Scheduling: list and modulo placement of instructions, register pressure, spills.

One placement routine serves both: without an II it books slots on a plain timeline (a list
schedule: one row's latency), with an II on a modulo reservation table (a software-pipelined
loop body, cycle % II being its steady-state row). Instructions are placed greedily by the
longest latency path to the end; loads that only feed later consumers are then sunk to just
before their first use. Register pressure is every value's lifetime (def to last use) in 256-bit
units, against the vector and accumulator files (`Machine.vreg_units` / `areg_units`).
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace

from .lowering import Instr, edge_latency
from .machine import SLOTS, Machine

# the lng slot's 42-bit format replaces alu + mv in its bundle (AIE2CompositeFormats.td)
_BOOKS = {"lng": ("lng", "alu", "mv")}


def successors_and_priority(instrs: list[Instr], m: Machine) -> tuple[list, list]:
    """Successor lists, and each instruction's longest latency path to the end (its priority)."""
    n = len(instrs)
    succ: list[list[int]] = [[] for _ in range(n)]
    for i, ins in enumerate(instrs):
        for d in preds(ins):
            succ[d].append(i)
    prio = [0] * n
    for i in range(n - 1, -1, -1):
        ins = instrs[i]
        prio[i] = ins.issues - 1 + max([ins.lat] + [edge_latency(ins, instrs[s], i, m) + prio[s] for s in succ[i]])
    return succ, prio


def preds(ins: Instr) -> list[int]:
    return ins.deps + [a for a, _ in ins.after]


def _earliest(i: int, instrs, placed, m) -> int:
    ins = instrs[i]
    t = 0
    for d in ins.deps:
        t = max(t, placed[d][-1] + edge_latency(instrs[d], ins, d, m))
    for a, delay in ins.after:
        t = max(t, placed[a][0] + delay)
    return t


def place(instrs: list[Instr], m: Machine, ii: int | None = None, keep: frozenset = frozenset(),
          prio: list | None = None) -> list[list[int]]:
    """Greedy placement by longest path to the end; every instruction's issue cycles.

    With `ii`, slots are booked on a modulo reservation table of `ii` cycles; without it, on a
    plain timeline. Loads marked `sink` (except those in `keep`) are afterwards moved as late as
    their consumers allow.
    """
    n = len(instrs)
    succ, height = successors_and_priority(instrs, m)
    prio = height if prio is None else prio
    table = {s: [0] * (ii or 0) for s in SLOTS}
    placed: list = [None] * n
    remaining = [len(preds(ins)) for ins in instrs]
    avail = [(-prio[i], i) for i in range(n) if remaining[i] == 0]
    heapq.heapify(avail)
    ports = m.ports
    while avail:
        _, i = heapq.heappop(avail)
        ins = instrs[i]
        t = _earliest(i, instrs, placed, m)
        books = _BOOKS.get(ins.slot, (ins.slot,))
        need, cycles = ins.issues, []
        while need > 0:
            row = t % ii if ii else t
            for s in books:
                while len(table[s]) <= row:
                    table[s].append(0)
            if all(table[s][row] < ports[s] for s in books):
                take = min([ports[s] - table[s][row] for s in books] + [need])
                for s in books:
                    table[s][row] += take
                need -= take
                cycles.extend([t] * take)
            t += 1
        placed[i] = cycles
        for s in succ[i]:
            remaining[s] -= 1
            if remaining[s] == 0:
                heapq.heappush(avail, (-prio[s], s))
    _sink(instrs, placed, table, succ, m, ii, keep)
    return placed


def _sink(instrs, placed, table, succ, m, ii, keep):
    """Move each sinkable load to the latest cycle its consumers (and II ties) allow."""
    for i in range(len(instrs) - 1, -1, -1):
        ins = instrs[i]
        if not ins.sink or not succ[i] or i in keep:
            continue
        latest = None
        for s in succ[i]:
            c = instrs[s]
            if i in c.deps:
                lim = placed[s][0] - edge_latency(ins, c, i, m) - (ins.issues - 1)
            else:
                lim = placed[s][0] - next(d for a, d in c.after if a == i)
            latest = lim if latest is None else min(latest, lim)
        cur = placed[i][0]
        if latest is None or latest <= cur:
            continue
        book = table[ins.slot]
        for c in placed[i]:
            book[c % ii if ii else c] -= 1
        moved = None
        for t in range(latest, cur, -1):
            rows = [(t + k) % ii if ii else t + k for k in range(ins.issues)]
            if ii and len(set(rows)) < len(rows):
                continue
            if all(r >= len(book) or book[r] < m.ports[ins.slot] for r in rows):
                moved = t
                break
        if moved is not None:
            placed[i] = [moved + k for k in range(ins.issues)]
        for c in placed[i]:
            r = c % ii if ii else c
            while len(book) <= r:
                book.append(0)
            book[r] += 1


def makespan(instrs, placed) -> int:
    """Cycles until every result is ready (a store's only needs issuing)."""
    return max((c[-1] + 1 if ins.slot in ("st", "stream_out") and ins.rf is None else c[-1] + max(1, ins.lat)
                for ins, c in zip(instrs, placed)), default=0)


def resource_bound(instrs: list[Instr], m: Machine) -> int:
    tot = {s: 0 for s in SLOTS}
    for ins in instrs:
        for s in _BOOKS.get(ins.slot, (ins.slot,)):
            tot[s] += ins.issues
    return max(math.ceil(tot[s] / m.ports[s]) for s in SLOTS)


def list_schedule(instrs: list[Instr], m: Machine, issue_cycles: bool = False) -> tuple[int, list]:
    """(makespan, placements): a placement is (first, last) issue, or with `issue_cycles` every issue."""
    placed = place(instrs, m)
    return makespan(instrs, placed), placed if issue_cycles else [(c[0], c[-1]) for c in placed]


# ------------------------------------------------------------------------------------------------
# register pressure


def live_ranges(instrs, placed, m: Machine) -> list[tuple]:
    """(start, end, file, units, instr) per register value: written at issue + latency - 1, held
    until its last consumer issues."""
    last_use: dict = {}
    for j, ins in enumerate(instrs):
        for d in ins.deps:
            last_use[d] = max(last_use.get(d, -1), placed[j][0])
    out = []
    for i, ins in enumerate(instrs):
        if ins.rf is None or ins.units == 0:
            continue
        start = placed[i][-1] + max(1, ins.lat) - 1
        out.append((start, max(start, last_use.get(i, start)), ins.rf, ins.units, i))
    return out


def max_live(ranges, ii: int | None = None, base: dict | None = None) -> dict:
    """Peak live 256-bit units per register file (modulo `ii` for a pipelined loop)."""
    peak = {"v": 0, "a": 0}
    for rf in peak:
        rs = [r for r in ranges if r[2] == rf]
        if not rs:
            peak[rf] = (base or {}).get(rf, 0)
            continue
        if ii:
            occ = [0] * ii
            for start, end, _, units, _ in rs:
                full, rest = divmod(end - start + 1, ii)
                if full:
                    occ = [o + full * units for o in occ]
                for c in range(start, start + rest):
                    occ[c % ii] += units
        else:
            hi = max(r[1] for r in rs) + 1
            occ = [0] * (hi + 1)
            for start, end, _, units, _ in rs:
                occ[start] += units
                occ[end + 1] -= units
            for c in range(1, len(occ)):
                occ[c] += occ[c - 1]
        peak[rf] = max(occ) + (base or {}).get(rf, 0)
    return peak


def over(peak: dict, m: Machine) -> dict:
    cap = {"v": m.vreg_units, "a": m.areg_units}
    return {rf: peak[rf] - cap[rf] for rf in peak if peak[rf] > cap[rf]}


def spill(instrs: list[Instr], victim: int, m: Machine) -> list[Instr]:
    """A copy of `instrs` where value `victim` is stored right after its definition and reloaded
    before its consumers (one store and one load of its units)."""
    v = instrs[victim]
    out = [replace(i, deps=list(i.deps), acc_deps=list(i.acc_deps), after=list(i.after)) for i in instrs]
    st = len(out)
    out.append(Instr(f"spill {v.label}", "st", v.units, m.lat_store_load, [victim]))
    ld = len(out)
    out.append(Instr(f"reload {v.label}", "ld", v.units, m.lat_load, [st], rf=v.rf, units=v.units,
                     chain_lat=v.chain_lat, sink=True))
    for j, ins in enumerate(out[:st]):
        if victim in ins.deps:
            ins.deps = [ld if d == victim else d for d in ins.deps]
            ins.acc_deps = [ld if d == victim else d for d in ins.acc_deps]
    return out


def longest_lived(ranges, rf: str, ii: int | None = None) -> int | None:
    rs = [r for r in ranges if r[2] == rf and r[1] - r[0] > (ii or 0) // 2 + 8]
    if not rs:
        return None
    return max(rs, key=lambda r: ((r[1] - r[0]) * r[3], r[4]))[4]


@dataclass
class Fit:
    """How a schedule met the register files."""

    ii: int | None          # the II reached (None: a list schedule)
    placed: list
    instrs: list
    peak: dict              # live units per file at that schedule
    spills: int = 0
    lengthened_from: int | None = None

    stagger: int = 0        # list schedules: cycles between consecutive interleaved rows
    window: int = 0         # list schedules: the issue window that made it fit

    def outcome(self, m: Machine) -> str:
        cap = f"{self.peak['v']}/{m.vreg_units} vector, {self.peak['a']}/{m.areg_units} accumulator units"
        if over(self.peak, m):
            return f"does NOT fit the register files even after {self.spills} spill(s): {cap}"
        if self.window:
            return f"an issue window of {self.window} instructions keeps it in the register files: {cap}"
        if self.stagger:
            return (f"interleaved rows staggered {self.stagger} cycles apart to fit"
                    + (f", and {self.spills} spill(s)" if self.spills else "") + f": {cap}")
        if self.spills:
            return f"spilled {self.spills} value(s) (one store + one reload each) to fit: {cap}"
        if self.lengthened_from is not None:
            return f"register pressure lengthened the II from {self.lengthened_from} to {self.ii}: {cap}"
        return f"fits the register files: {cap}"


def stagger(instrs: list[Instr], d: int) -> list[Instr]:
    """A copy where each interleaved row's k-th instruction issues at least `d` cycles after the
    previous row's k-th (how a compiler limits the overlap of rows it interleaves)."""
    out = [replace(i, after=list(i.after)) for i in instrs]
    key = {(i.row, i.seq): j for j, i in enumerate(out) if i.row is not None}
    for j, i in enumerate(out):
        if i.row:
            p = key.get((i.row - 1, i.seq))
            if p is not None and p < j:
                i.after.append((p, d))
    return out


def window(instrs: list[Instr], w: int) -> list[Instr]:
    """A copy where no instruction issues before the one `w` places earlier in program (lowering)
    order: an issue window, how a register-pressure-aware scheduler keeps unrolled code from
    running far ahead of its consumers."""
    out = [replace(i, after=list(i.after)) for i in instrs]
    for j in range(w, len(out)):
        out[j].after.append((j - w, 0))
    return out


def fit_linear(instrs: list[Instr], m: Machine, base: dict, max_spills: int = 24) -> Fit:
    """A list schedule that fits the register files: as placed, else with interleaved rows
    staggered by the smallest delay that fits, else spilling the longest-lived values."""
    placed = place(instrs, m)
    peak = max_live(live_ranges(instrs, placed, m), None, base)
    if not over(peak, m):
        return Fit(None, placed, instrs, peak)
    rows = {i.row for i in instrs if i.row is not None}
    best = None
    if len(rows) > 1:  # the smallest stagger that fits: doubling, then bisection (4-cycle steps)
        span = makespan(instrs, placed)

        def attempt(d):
            cand = stagger(instrs, d)
            p = place(cand, m)
            pk = max_live(live_ranges(cand, p, m), None, base)
            return None if over(pk, m) else Fit(None, p, cand, pk, 0, None, d)

        lo, hi, d = 0, None, 4
        while d <= 2 * span and hi is None:
            best = attempt(d)
            if best is not None:
                hi = d
            else:
                lo, d = d, 2 * d
        while hi is not None and hi - lo > 4:
            mid = (lo + hi) // 8 * 4
            if mid <= lo:
                break
            cand = attempt(mid)
            if cand is not None:
                best, hi = cand, mid
            else:
                lo = mid
    if best is not None:
        return best
    # an issue window: the widest (halving from the whole trip) that fits
    w = len(instrs) // 2
    while w >= 8 and best is None:
        cand = window(instrs, w)
        p = place(cand, m)
        pk = max_live(live_ranges(cand, p, m), None, base)
        if not over(pk, m):
            best = Fit(None, p, cand, pk, 0, None, 0, w)
        w //= 2
    if best is not None:
        return best
    spills = 0
    while True:
        bad = over(peak, m)
        if not bad or spills >= max_spills:
            return Fit(None, placed, instrs, peak, spills)
        victim = longest_lived(live_ranges(instrs, placed, m), next(iter(bad)))
        if victim is None:
            return Fit(None, placed, instrs, peak, spills)
        instrs = spill(instrs, victim, m)
        spills += 1
        placed = place(instrs, m)
        peak = max_live(live_ranges(instrs, placed, m), None, base)


def place_ims(instrs: list[Instr], m: Machine, ii: int, keep: frozenset = frozenset(),
              budget_factor: int = 12) -> list[list[int]] | None:
    """Iterative modulo scheduling (Rau, MICRO-27 1994): operations by height; each takes the
    first cycle from its earliest start whose slot rows are free modulo `ii`, else displaces the
    operations holding those rows (and any successor it then violates), which are scheduled
    again. Multi-issue operations take consecutive cycles, filling each slot's ports. Returns
    issue cycles like `place`, or None when the budget runs out (the caller falls back)."""
    n = len(instrs)
    succ, height = successors_and_priority(instrs, m)
    start: list = [None] * n
    occ: dict = {}          # (slot, row) -> {instr: ports}
    pat = []
    for ins in instrs:      # (slot, cycle offset, ports) of an op starting at cycle 0
        books = _BOOKS.get(ins.slot, (ins.slot,))
        cap = min(m.ports[b] for b in books)
        left, k, p = ins.issues, 0, []
        while left > 0:
            take = min(cap, left)
            p.extend((b, k, take) for b in books)
            left -= take
            k += 1
        pat.append(p)
    last = [max(k for _, k, _ in p) for p in pat]

    def fits(i, t):
        for b, k, take in pat[i]:
            cell = occ.get((b, (t + k) % ii), {})
            if sum(cell.values()) + take > m.ports[b]:
                return False
        return True

    def book(i, t):
        for b, k, take in pat[i]:
            occ.setdefault((b, (t + k) % ii), {})[i] = take
        start[i] = t

    def unbook(i):
        for b, k, _ in pat[i]:
            occ.get((b, (start[i] + k) % ii), {}).pop(i, None)
        start[i] = None

    def estart(i):
        ins, t = instrs[i], 0
        for d in ins.deps:
            if start[d] is not None:
                t = max(t, start[d] + last[d] + edge_latency(instrs[d], ins, d, m))
        for a, delay in ins.after:
            if start[a] is not None:
                t = max(t, start[a] + delay)
        return t

    prev_time = [None] * n
    todo = set(range(n))
    budget = budget_factor * n
    while todo:
        budget -= 1
        if budget < 0:
            return None
        i = max(todo, key=lambda j: (height[j], -j))
        todo.discard(i)
        e = estart(i)
        t = next((c for c in range(e, e + ii) if fits(i, c)), None)
        if t is None:
            t = e if prev_time[i] is None or prev_time[i] < e else prev_time[i] + 1
            for b, k, take in pat[i]:
                for j in list(occ.get((b, (t + k) % ii), {})):
                    if j != i:
                        unbook(j)
                        todo.add(j)
            if not fits(i, t):
                return None
        book(i, t)
        prev_time[i] = t
        for j in succ[i]:  # successors this placement now violates go back to the queue
            if start[j] is None:
                continue
            cj = instrs[j]
            need = (t + last[i] + edge_latency(instrs[i], cj, i, m)) if i in cj.deps else 0
            need = max(need, max((t + d for a, d in cj.after if a == i), default=0))
            if start[j] < need:
                unbook(j)
                todo.add(j)
    placed = []
    for i in range(n):
        cyc = []
        for b, k, take in pat[i]:
            if b == instrs[i].slot:
                cyc.extend([start[i] + k] * take)
        placed.append(cyc)
    table = {sl: [0] * ii for sl in SLOTS}
    for i in range(n):
        for b, k, take in pat[i]:
            table[b][(start[i] + k) % ii] += take
    _sink(instrs, placed, table, succ, m, ii, keep)
    return placed


def placement_orders(instrs: list[Instr], m: Machine, tries: int = 5) -> list:
    """Priorities the modulo placement tries in turn: the height (longest path to the end), the
    list schedule's issue order, and heights perturbed by a fixed pseudo-random jitter (a greedy
    modulo placement is sensitive to ties; a real pipeliner searches too)."""
    _, height = successors_and_priority(instrs, m)
    lp = place(instrs, m)
    orders = [None, [-c[0] for c in lp]]
    state = 12345
    for _ in range(tries - 2):
        jit = []
        for _ in instrs:
            state = (1103515245 * state + 12345) % (1 << 31)
            jit.append(state % 7)
        orders.append([h + j for h, j in zip(height, jit)])
    return orders


def fit_modulo(instrs: list[Instr], m: Machine, base: dict, ii0: int, check=None,
               max_spills: int = 6) -> Fit | None:
    """The smallest II from `ii0` up to `m.max_ii` whose modulo schedule has at most
    `m.max_stages` stages, passes `check(placed, ii)` and fits the registers; spills when only
    registers stand in the way. None when no II <= max_ii works (pipelining fails).

    `check` (a loop-carried memory recurrence) may fail only because loads were sunk late; the
    placement is then retried with the loads it names (`check.loads`) issued as early as they can.
    """
    spills = 0
    first_reg_fail = None
    keep_early = frozenset(getattr(check, "loads", ()))
    while True:
        orders = placement_orders(instrs, m)
        reg_blocked = False
        for ii in range(max(1, ii0), m.max_ii + 1):
            placed, peak, blocked = None, None, False
            for keep in (frozenset(), keep_early):
                for order in ["ims", *orders]:
                    cand = place_ims(instrs, m, ii, keep) if order == "ims" else place(instrs, m, ii, keep, order)
                    if cand is None or math.ceil(makespan(instrs, cand) / ii) > m.max_stages:
                        continue
                    if check is not None and not check(cand, ii):
                        continue
                    pk = max_live(live_ranges(instrs, cand, m), ii, base)
                    if over(pk, m):
                        blocked = True
                        continue
                    placed, peak = cand, pk
                    break
                if placed is not None:
                    break
            if placed is None:
                if blocked:
                    reg_blocked = True
                    first_reg_fail = ii if first_reg_fail is None else first_reg_fail
                continue
            lengthened = first_reg_fail if first_reg_fail is not None and not spills else None
            return Fit(ii, placed, instrs, peak, spills, lengthened)
        if not reg_blocked or spills >= max_spills:
            return None
        placed = place(instrs, m, max(ii0, resource_bound(instrs, m)))
        ranges = live_ranges(instrs, placed, m)
        bad = over(max_live(ranges, max(ii0, 1), base), m) or {"v": 1}
        victim = longest_lived(ranges, next(iter(bad)), ii0)
        if victim is None:
            return None
        instrs = spill(instrs, victim, m)
        ii0 = max(ii0, resource_bound(instrs, m))
        spills += 1
        first_reg_fail = None
