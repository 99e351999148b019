"""Tables and plotly figures of the AIE kernels: throughput, slot views, the published checks."""
from __future__ import annotations

from ..aie.cycles import SLOTS, slot_view, steady_state_view
from ..aie.ir import Kernel
from ..aie.published import PAPER_GELEM, throughput_table, validation_checks


def throughput_rows(arch: str = "aie-ml", ns=(32, 64, 128, 256)) -> list[dict]:
    return throughput_table(arch, ns=ns)


def print_throughput(rows: list[dict]) -> None:
    ns = sorted({r["n"] for r in rows})
    print(f"{'kernel':<28}" + "".join(f"{'n=' + str(n):>16}" for n in ns) + "   (G elements/s; [paper])")
    for name in dict.fromkeys(r["kernel"] for r in rows):
        cells = []
        for n in ns:
            r = next(x for x in rows if x["kernel"] == name and x["n"] == n)
            pub = r["paper_gelem_per_s"]
            cells.append(f"{r['gelem_per_s']:6.2f}" + (f" [{pub:4.2f}]" if pub else "        "))
        print(f"{name:<28}" + "".join(f"{c:>16}" for c in cells))


def throughput_figure(rows: list[dict], title: str = "Modelled single-tile throughput (emulator estimate)"):
    import plotly.graph_objects as go

    fig = go.Figure()
    for name in dict.fromkeys(r["kernel"] for r in rows):
        rs = [r for r in rows if r["kernel"] == name]
        dash = "dot" if "reference" in name else ("dash" if "paper" in name else "solid")
        fig.add_trace(go.Scatter(x=[r["n"] for r in rs], y=[r["gelem_per_s"] for r in rs], mode="lines+markers",
                                 name=name, line={"dash": dash}))
    arch = rows[0]["arch"]
    for label, key, sym in (("paper bf16", "bf16", "x"), ("paper i16+Div", "i16-div", "diamond"),
                            ("paper i8+CLB", "u8-clb", "star")):
        pts = [(n, v[key]) for (a, n), v in sorted(PAPER_GELEM.items()) if a == arch]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers", name=label,
                                 marker={"symbol": sym, "size": 12, "color": "black"}))
    fig.update_layout(title=f"{title}, {arch}", xaxis={"title": "row length n", "type": "log", "tickvals": [32, 64, 128, 256]},
                      yaxis={"title": "G elements/s at 1.25 GHz", "type": "log"}, height=480)
    return fig


def slot_figure(kernel: Kernel, max_cycles: int = 80, steady_state: bool = False):
    """Slots x cycles, one box per issued instruction.

    Default: the list schedule of one row-loop trip (its latency view). `steady_state`: the
    software-pipelined loop's kernel, II cycles long, where ops of different trips (stages) share
    each cycle, as the cycle model charges it.
    """
    import plotly.graph_objects as go

    if steady_state:
        ii, rows = steady_state_view(kernel)
        rows = [dict(r, op=f"{r['op']} (stage {r['stage']})") for r in rows]
        title = f"{kernel.name}: steady state of the pipelined row loop, II = {ii} cycles"
    else:
        rows = [r for r in slot_view(kernel) if r["cycle"] < max_cycles]
        title = f"{kernel.name}: one row-loop trip, slots per cycle (list schedule)"
    kinds = sorted({r["op"].split()[0] for r in rows})
    fig = go.Figure()
    lanes = {s: i for i, s in enumerate(SLOTS)}
    for kind in kinds:
        rs = [r for r in rows if r["op"].split()[0] == kind]
        # two load ports: stack the second issue in a cycle half a row up
        seen, ys = {}, []
        for r in rs:
            key = (r["cycle"], r["slot"])
            ys.append(lanes[r["slot"]] + 0.35 * seen.get(key, 0))
            seen[key] = seen.get(key, 0) + 1
        fig.add_trace(go.Scatter(x=[r["cycle"] for r in rs], y=ys, mode="markers", name=kind,
                                 marker={"symbol": "square", "size": 11}, text=[r["op"] for r in rs],
                                 hovertemplate="cycle %{x}: %{text}<extra></extra>"))
    fig.update_layout(title=title,
                      xaxis={"title": "cycle"}, height=380,
                      yaxis={"tickvals": list(lanes.values()), "ticktext": list(lanes), "title": "VLIW slot"})
    return fig


def validation_lines() -> list[str]:
    return [c.line() for c in validation_checks()]


def validation_rows(clock_ghz: float = 1.25) -> list[dict]:
    """Every published point with the model's figure and their ratio (rows for a table)."""
    from ..aie.published import validation_points

    return [p.as_dict() for p in validation_points(clock_ghz)]


# the attention heads design reviews ask about: (label, n, d_head)
HEADS = (("MiniLM-L6 (d_head 32)", 128, 32), ("SmolLM2-135M (d_head 64)", 128, 64))


def attention_rows(heads=HEADS, arch: str = "aie-ml", variant: str = "u8-clb") -> list[dict]:
    """Per head: cycles of QK^T, softmax (hccs-lab, the paper's kernel, the bf16 reference) and P.V."""
    from ..aie.mha import attention_breakdown

    rows = []
    for label, n, d in heads:
        b = attention_breakdown(n, d, arch, variant)
        rows.append({"head": label, "n": n, "d_head": d, "qk": b["qk_cycles"], "pv": b["pv_cycles"],
                     "softmax": b["softmax_cycles"], "share": b["softmax_share"],
                     "paper_softmax": b["paper_softmax_cycles"], "paper_share": b["paper_share"],
                     "reference": b["reference"], "reference_softmax": b["reference_softmax_cycles"],
                     "reference_share": b["reference_share"], "schedule": b["softmax_schedule"]})
    return rows


def print_attention(rows: list[dict]) -> None:
    print(f"{'head':<26}{'QK^T':>9}{'softmax':>9}{'P.V':>9}{'share':>8}   {'paper kernel':>13}{'share':>7}"
          f"   {'bf16 ref':>9}{'share':>7}   (cycles per head, emulator estimates)")
    for r in rows:
        print(f"{r['head']:<26}{r['qk']:9.0f}{r['softmax']:9.0f}{r['pv']:9.0f}{r['share']:8.0%}   "
              f"{r['paper_softmax']:13.0f}{r['paper_share']:7.0%}   {r['reference_softmax']:9.0f}{r['reference_share']:7.0%}")


def attention_figure(rows: list[dict], title: str = "One attention head: cycles per stage (emulator estimate)"):
    import plotly.graph_objects as go

    fig = go.Figure()
    cats = []
    for r in rows:
        cats += [f"{r['head']}<br>hccs-lab {r['schedule']}", f"{r['head']}<br>paper kernel",
                 f"{r['head']}<br>{r['reference']}"]
    qk = [r["qk"] for r in rows for _ in range(3)]
    pv = [r["pv"] for r in rows for _ in range(3)]
    sm = [v for r in rows for v in (r["softmax"], r["paper_softmax"], r["reference_softmax"])]
    fig.add_bar(x=cats, y=qk, name="QK^T (int8 mmul)")
    fig.add_bar(x=cats, y=sm, name="softmax")
    fig.add_bar(x=cats, y=pv, name="P.V (int8 mmul)")
    fig.update_layout(barmode="stack", title=title, yaxis={"title": "cycles per head (log)", "type": "log"},
                      height=460)
    return fig
