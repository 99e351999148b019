"""The review's cycle sections: throughput against the paper, every published check, the whole head."""
from __future__ import annotations

import html

from .context import Context, Section
from .html import html_table, paragraph
from .kernel_choice import choose_kernel


def section_throughput(ctx: Context) -> Section:
    from ..aie.published import miss_note, summary, throughput_table, validation_points
    from ..viz.aie import attention_figure, attention_rows, throughput_figure

    s = ctx.settings
    kc = ctx.kernel_choice or choose_kernel(ctx)
    sec = Section("throughput", "Emulated cycles and throughput vs the references and the paper")
    sec.add(paragraph(f"<b>Emulator cycle-model estimates, not hardware measurements.</b> One {s.arch} tile at "
                      f"{kc.report.clock_ghz} GHz. The chosen kernel ({kc.variant}, n={kc.report.n}, schedule "
                      f"{html.escape(kc.report.schedule)}): {kc.report.cycles_per_row:.1f} cycles/row, "
                      f"{kc.report.gelem_per_s:.2f} G elements/s; {html.escape(kc.report.registers or '')}."))
    sec.add(throughput_figure(throughput_table(s.arch, ns=s.throughput_ns, clock_ghz=kc.report.clock_ghz)))

    points = validation_points(kc.report.clock_ghz)
    sm = summary(points)
    sec.add(paragraph(
        f"The cycle model (llvm-aie's machine description; no per-point fitting) against every published figure: "
        f"<b>{sm['within_band']} of {sm['points']}</b> within {sm['band'][0]:.2f}-{sm['band'][1]:.2f}, geometric "
        f"mean factor x{sm['geomean_factor']:.3f} (goal x1.12: {'met' if sm['geomean_ok'] else '<b>missed</b>'})."))
    sec.add(html_table([{**p.as_dict(), "ok": "" if p.ok else "MISS"} for p in points],
                       [("name", "published point"), ("kernel", "modelled kernel"), ("model", "model"),
                        ("published", "published"), ("unit", "unit"), ("ratio", "ratio"), ("ok", "")]))
    notes = list(dict.fromkeys(miss_note(p) for p in points if not p.ok))
    if notes:
        sec.add(paragraph("Why the misses stay misses:<br>" + "<br>".join(html.escape(n) for n in notes)))

    heads = attention_rows(arch=s.arch, variant=kc.variant)
    sec.add(paragraph("The whole head at n=128: int8 QK^T and P&middot;V as <code>aie::mmul</code> kernels next to its "
                      "softmax (hccs-lab's fastest kernel, the paper's kernel = aie4ml's <code>softmax_i8</code>, AMD's "
                      "bf16 reference), cycles per head and softmax's share of them."))
    sec.add(html_table([{"head": r["head"], "qk": r["qk"], "sm": r["softmax"], "pv": r["pv"],
                         "share": f"{r['share']:.0%}", "paper": f"{r['paper_share']:.0%}",
                         "ref": f"{r['reference_share']:.0%} ({r['reference']})"} for r in heads],
                       [("head", "head"), ("qk", "QK^T"), ("sm", f"softmax ({kc.variant})"), ("pv", "P.V"),
                        ("share", "softmax share"), ("paper", "share, paper kernel"), ("ref", "share, bf16 reference")]))
    sec.add(attention_figure(heads))
    return sec
