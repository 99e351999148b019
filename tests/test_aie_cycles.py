"""Cycle model: scheduler arithmetic by hand, and the model checked against published figures."""
import pytest

from hccs_lab import HCCSParams
from hccs_lab.aie.cycles import AIE_ML, Instr, estimate, list_schedule, resource_bound, slot_view
from hccs_lab.aie.kernels import HCCS_SCHEDULES, HCCS_VARIANTS, hccs_kernel, reference_kernel
from hccs_lab.aie.published import PAPER_GELEM, fastest, throughput_table, validation_checks

PORTS = AIE_ML.ports


def test_list_schedule_respects_latency_and_ports():
    # load (lat 7) -> vector op (lat 1) -> store: the store can issue at cycle 8, makespan 9
    instrs = [Instr("ld", "load", 1, 7, []), Instr("op", "vector", 1, 1, [0]), Instr("st", "store", 1, 6, [1])]
    span, placed = list_schedule(instrs, PORTS)
    assert placed == [(0, 0), (7, 7), (8, 8)]
    assert span == 9
    # five independent vector ops share the single vector slot: 5 cycles; four loads share two ports: 2
    many = [Instr(f"v{i}", "vector", 1, 1, []) for i in range(5)] + [Instr(f"l{i}", "load", 1, 7, []) for i in range(4)]
    assert resource_bound(many, PORTS) == 5
    _, placed = list_schedule(many, PORTS)
    assert sorted(p[0] for p in placed[:5]) == [0, 1, 2, 3, 4]
    assert sorted(p[0] for p in placed[5:]) == [0, 0, 1, 1]


def test_paper_kernel_issue_counts_by_hand():
    # n=32, 32 int8 lanes, one vector per pass. Vector slot, by hand: running max 1; reduce_max of
    # a 256-bit vector 5 x (shuffle + max) = 10; sub, min, mac, running acc add = 4; reduce_add of
    # the 1024-bit acc: 1 acc halving + 4 adds + 3 shuffles = 8; the multiply by rho 1. Total 24.
    r = estimate(hccs_kernel(HCCSParams(100, 2, 30), "u8-clb", "aie-ml", 32, "paper"))
    assert r.slot_busy["vector"] == 24
    # loads: logits twice (256-bit = 1 issue each) + int16 scores (512-bit = 2) = 4 issues
    assert r.slot_busy["load"] == 4
    # stores: int16 scores (2 issues) + uint8 output (1) = 3
    assert r.slot_busy["store"] == 3
    # scalar: clb, 15 - k, 255 << (15 - k)
    assert r.slot_busy["scalar"] == 3


def test_division_is_a_software_call_and_costs():
    p = HCCSParams(100, 2, 30)
    div = estimate(hccs_kernel(p, "i16-div", "aie-ml", 128, "wide64x1"))
    clb = estimate(hccs_kernel(p, "i16-clb", "aie-ml", 128, "wide64x1"))
    assert not div.row_loop_pipelined and clb.row_loop_pipelined
    assert div.cycles_per_row >= clb.cycles_per_row + AIE_ML.div_cycles / 2


def test_report_units_and_clock_scaling():
    k = hccs_kernel(HCCSParams(100, 2, 30), "u8-clb", "aie-ml", 128)
    a, b = estimate(k), estimate(k, clock_ghz=1.0)
    assert a.cycles_per_row == b.cycles_per_row
    assert a.gelem_per_s == pytest.approx(128 / a.cycles_per_row * 1.25)
    assert b.gelem_per_s == pytest.approx(a.gelem_per_s / 1.25)
    assert a.tiles(10) == pytest.approx(10 * a.gelem_per_s)
    d = a.as_dict()
    assert {"cycles_per_row", "elements_per_cycle", "clock_ghz", "gelem_per_s"} <= set(d)
    assert "estimate" in d["estimate"]


def test_validation_tutorial_within_20_percent():
    tut = validation_checks()[0]
    assert "tutorial" in tut.name and tut.published == 8083
    assert abs(tut.ratio - 1) <= 0.20, tut.line()


def test_validation_paper_n32_within_25_percent():
    c = [c for c in validation_checks() if "n=32" in c.name][0]
    assert c.published == 29
    assert abs(c.ratio - 1) <= 0.25, c.line()


def test_validation_paper_n128_within_25_percent():
    c = [c for c in validation_checks() if "n=128" in c.name][0]
    assert c.published == 69
    assert abs(c.ratio - 1) <= 0.25, c.line()


def test_after_edges_space_the_trips_of_a_pipelined_loop():
    # three trips of one vector op, II 4: trip t+1 may not issue before trip t + 4, even though
    # the slot is free every cycle; an unrelated op still fills the gaps
    instrs = [Instr("v0", "vector", 1, 1, []), Instr("v1", "vector", 1, 1, [], after=[(0, 4)]),
              Instr("v2", "vector", 1, 1, [], after=[(1, 4)]), Instr("w", "vector", 1, 1, [])]
    _, placed = list_schedule(instrs, PORTS)
    assert [p[0] for p in placed] == [0, 4, 8, 1]


def test_paper_kernel_keeps_its_inner_loops_from_n64():
    import dataclasses

    from hccs_lab.aie.ir import Loop

    p = HCCSParams(100, 2, 30)
    k32 = hccs_kernel(p, "u8-clb", "aie-ml", 32, "paper")
    k128 = hccs_kernel(p, "u8-clb", "aie-ml", 128, "paper")
    assert estimate(k32).row_loop_pipelined  # one vector per pass: every loop has a single trip
    rep = estimate(k128)
    assert not rep.row_loop_pipelined and "pass_score (4 trips, II 4)" in rep.notes[0]
    # the running-sum loop: sub, min, mac and the sum's add share the one vector slot, so its
    # four MACs issue at least 4 cycles apart
    macs = sorted(r["cycle"] for r in slot_view(k128) if r["op"].startswith("mac score"))
    assert len(macs) == 4 and all(b - a >= 4 for a, b in zip(macs, macs[1:]))
    # the same kernel with its loops flattened (what chess_unroll_loop asks for) is pipelined
    flat = dataclasses.replace(k128, body=tuple(dataclasses.replace(s, unroll=True) if isinstance(s, Loop) else s
                                                for s in k128.body))
    frep = estimate(flat)
    assert frep.row_loop_pipelined and frep.cycles_per_row < rep.cycles_per_row


def test_fastest_u8_clb_beats_paper_by_1_5x_at_128_and_the_bf16_reference():
    best = fastest("aie-ml", "u8-clb", 128)
    assert best.gelem_per_s >= 1.5 * PAPER_GELEM[("aie-ml", 128)]["u8-clb"]
    ref = estimate(reference_kernel("bf16-lut", 128))
    assert best.gelem_per_s > 3 * ref.gelem_per_s


def test_throughput_table_covers_everything():
    rows = throughput_table("aie-ml", ns=(32, 128))
    kinds = {r["kernel"] for r in rows}
    assert len(kinds) == len(HCCS_VARIANTS) * len(HCCS_SCHEDULES) + 2
    assert all(r["gelem_per_s"] > 0 for r in rows)


def test_slot_view_is_consistent_with_ports():
    rows = slot_view(hccs_kernel(HCCSParams(100, 2, 30), "u8-clb", "aie-ml", 64, "wide64x1"))
    per = {}
    for r in rows:
        per[(r["cycle"], r["slot"])] = per.get((r["cycle"], r["slot"]), 0) + 1
    assert all(v <= PORTS[s] for (c, s), v in per.items())
    assert any(r["slot"] == "vector" for r in rows)


def test_modulo_schedule_reaches_the_resource_bound():
    from hccs_lab.aie.cycles import steady_state_view

    k = hccs_kernel(HCCSParams(100, 2, 30), "u8-clb", "aie-ml", 128, "wide64")
    ii, rows = steady_state_view(k)
    rep = estimate(k)
    assert ii + AIE_ML.loop_overhead == rep.row.cycles  # the II the model charges is achievable
    per = {}
    for r in rows:
        assert 0 <= r["cycle"] < ii
        per[(r["cycle"], r["slot"])] = per.get((r["cycle"], r["slot"]), 0) + 1
    assert all(v <= PORTS[s] for (c, s), v in per.items())
    # every issue of the 4-row body appears exactly once in the steady state
    assert len(rows) == sum(i.issues for i in rep.row.instrs)
    assert max(r["stage"] for r in rows) >= 1  # rows overlap across trips
    with pytest.raises(ValueError, match="not software-pipelined"):
        steady_state_view(hccs_kernel(HCCSParams(100, 2, 30), "i16-div", "aie-ml", 128))


def test_total_cycles_counts_whole_trips_and_pipeline_fill():
    rep = estimate(hccs_kernel(HCCSParams(100, 2, 30), "u8-clb", "aie-ml", 128, "wide64s"))
    per_trip = rep.cycles_per_row * 4
    fill = rep.row.span - per_trip
    assert fill > 0
    assert rep.total_cycles(8) == 2 * per_trip + fill
    assert rep.total_cycles(9) == 3 * per_trip + fill  # a partial trip costs a whole one
    div = estimate(hccs_kernel(HCCSParams(100, 2, 30), "i16-div", "aie-ml", 128, "paper"))
    assert div.total_cycles(10) == 10 * div.cycles_per_row  # not pipelined: rows back to back


def test_paper_table_crosscheck_converts_throughput_to_cycles():
    from hccs_lab.aie.published import paper_table_crosscheck, typical_params

    lines = paper_table_crosscheck("aie-ml", 1.25)
    assert len(lines) == 3 * 2  # n = 32, 64, 128; u8-clb and i16-div
    line = [l for l in lines if "u8-clb" in l and "n=128" in l][0]
    # 2.18 G/s at 1.25 GHz is 128 / (2.18 / 1.25) = 73.4 cycles per row
    assert "implies   73.4" in line
    model = estimate(hccs_kernel(typical_params(128), "u8-clb", "aie-ml", 128, "paper")).cycles_per_row
    assert f"ratio {model / 73.39:4.2f}" in line
