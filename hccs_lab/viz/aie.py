"""Tables and plotly figures of the AIE kernels: throughput, slot views, the published checks."""
from __future__ import annotations

from ..aie.cycles import SLOTS, slot_view, steady_state_view
from ..aie.ir import Kernel
from ..aie.published import PAPER_GELEM, throughput_table


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


# Okabe-Ito: distinguishable with every common colour-vision deficiency
FAMILY_STYLE = {  # kernel family -> (label, colour, dash)
    "ours": ("hccs-lab, fastest schedule", "#0072B2", "solid"),
    "aie4ml-linear": ("aie4ml softmax_i8 (the paper's kernel)", "#D55E00", "dash"),
    "aie4ml-tiled": ("aie4ml softmax_i8_tiled", "#009E73", "dashdot"),
    "reference": ("AMD bf16 reference", "#000000", "dot"),
}
PAPER_KEYS = {"i16-div": "i16-div", "u8-clb": "u8-clb"}  # the paper's table has these two HCCS variants


def _family_series(rows: list[dict], variant: str) -> dict:
    """family -> [(n, G elem/s)] for one variant: our fastest schedule per n, aie4ml's two kernels."""
    out = {}
    ours = {}
    for r in rows:
        if r.get("variant") != variant:
            continue
        if r["schedule"] in ("aie4ml-linear", "aie4ml-tiled"):
            out.setdefault(r["schedule"], []).append((r["n"], r["gelem_per_s"]))
        elif r["schedule"] != "paper" and (r["n"] not in ours or r["gelem_per_s"] > ours[r["n"]]):
            ours[r["n"]] = r["gelem_per_s"]
    out["ours"] = sorted(ours.items())
    return out


def throughput_figure(rows: list[dict], title: str = "Modelled single-tile throughput (emulator estimate)"):
    """One panel per HCCS variant: hccs-lab's fastest schedule, aie4ml's kernels, the bf16 reference,
    and the paper's measured figure where its table has one (black diamonds)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from ..core.params import VARIANTS

    arch = rows[0]["arch"]
    refs = sorted({r["kernel"] for r in rows if "reference" in r["kernel"]})
    baseline = next((k for k in refs if k.startswith(_baseline(arch))), refs[0] if refs else None)
    fig = make_subplots(rows=2, cols=2, subplot_titles=VARIANTS, shared_xaxes=True, shared_yaxes="all",
                        horizontal_spacing=0.06, vertical_spacing=0.12)
    for i, variant in enumerate(VARIANTS):
        rr, cc = divmod(i, 2)
        series = _family_series(rows, variant)
        if baseline:
            series["reference"] = [(r["n"], r["gelem_per_s"]) for r in rows if r["kernel"] == baseline]
        for fam, (label, colour, dash) in FAMILY_STYLE.items():
            pts = series.get(fam)
            if not pts:
                continue
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                     name=label if fam != "reference" else f"{label} ({baseline.split()[0]})",
                                     legendgroup=fam, showlegend=i == 0, line={"color": colour, "dash": dash}),
                          row=rr + 1, col=cc + 1)
        keys = [("paper, measured", PAPER_KEYS[variant])] if variant in PAPER_KEYS else []
        keys.append(("paper bf16, measured", "bf16"))
        for label, key in keys:
            pts = [(n, v[key]) for (a, n), v in sorted(PAPER_GELEM.items()) if a == arch]
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers", name=label,
                                     legendgroup=label, showlegend=i == 0 or (label == "paper, measured" and i == 0),
                                     marker={"symbol": "diamond" if key != "bf16" else "x", "size": 10,
                                             "color": "#000000"}),
                          row=rr + 1, col=cc + 1)
    fig.update_xaxes(type="log", tickvals=sorted({r["n"] for r in rows}))
    fig.update_xaxes(title_text="row length n", row=2)
    fig.update_yaxes(type="log", tickvals=[0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10], showticklabels=True)
    fig.update_yaxes(title_text="G elements/s", col=1)
    fig.update_layout(title=f"{title}, {arch} at 1.25 GHz", height=620, legend={"orientation": "h", "y": -0.12})
    return fig


def _baseline(arch: str) -> str:
    from ..aie.published import bf16_baseline

    return bf16_baseline(arch)


def code_html(source: str, summary: str, language: str = "cpp", open_: bool = False) -> str:
    """Source code as a collapsed <details> block with Pygments colours inlined (no stylesheet, works offline)."""
    import html

    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name

    body = highlight(source, get_lexer_by_name(language), HtmlFormatter(noclasses=True, nobackgrounds=False))
    return (f"<details{' open' if open_ else ''}><summary>{html.escape(summary)}</summary>"
            f"<div style='max-height:40em;overflow:auto;font-size:0.85em'>{body}</div></details>")


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
