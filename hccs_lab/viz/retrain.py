"""Figures of a retraining run (plotly): accuracy tables with intervals, training curves, per-head KL, example rows.

Every figure reads a `hccs-lab qat` results dict (`hccs_lab.retrain.results` gives the rows), so the
notebook shows exactly what the CLI printed and the report carries.
"""
from __future__ import annotations

from ..retrain.results import accuracy_rows, granularity_rows, method_rows, results_table

# one colour per series, set explicitly: plotly's default colour cycle would give the traces of a
# second subplot new colours while the legend shows the first subplot's
SERIES_COLOURS = {"float32 softmax": "#1f77b4", "HCCS direct": "#ff7f0e", "HCCS after QAT": "#2ca02c"}
KIND_COLOURS = {"reference": "#1f77b4", "direct": "#ff7f0e", "qat": "#2ca02c", "control": "#7f7f7f"}


def _pct(v):
    return "" if v is None else f"{100 * v:.1f}"


def _table(header: list, columns: list, title: str, height: int):
    import plotly.graph_objects as go

    fig = go.Figure(go.Table(header={"values": header, "align": "left"}, cells={"values": columns, "align": "left"}))
    fig.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def _quick_tag(results: dict) -> str:
    return " — QUICK RUN: a smoke test, not an accuracy measurement" if results.get("quick") else ""


def accuracy_figure(results: dict):
    """Table: float32, every reading directly, after QAT, and the controls, each with its paired 95% interval."""
    rows = accuracy_rows(results)
    return _table(["", "accuracy %", "Δ vs float32, pp [95% interval]", "note"],
                  [[r["row"] for r in rows], [_pct(r["accuracy"]) for r in rows], [r["vs_float32"] for r in rows],
                   [r["note"] for r in rows]],
                  f"{results['model']}: accuracy on {results['data']['test_sentences']} RT test sentences, "
                  f"{results.get('variant')} kernel, target {results.get('target')}{_quick_tag(results)}",
                  90 + 28 * len(rows))


def differences_figure(results: dict):
    """Each accuracy's difference to float32 with its 95% interval (points): a real gap vs noise at a glance."""
    import plotly.graph_objects as go

    rows = [r for r in accuracy_rows(results) if r["ci95_pp"] is not None][::-1]
    fig = go.Figure()
    for kind, colour in KIND_COLOURS.items():
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        fig.add_scatter(x=[r["diff_pp"] for r in sel], y=[r["row"] for r in sel], mode="markers", name=kind,
                        marker={"color": colour, "size": 9},
                        error_x={"type": "data", "symmetric": False, "color": colour,
                                 "array": [r["ci95_pp"][1] - r["diff_pp"] for r in sel],
                                 "arrayminus": [r["diff_pp"] - r["ci95_pp"][0] for r in sel]})
    fig.add_vline(x=0, line_dash="dot")
    fig.update_layout(title=f"Difference to float32 (points), paired 95% interval{_quick_tag(results)}",
                      xaxis_title="accuracy minus float32 (pp)", height=120 + 26 * len(rows),
                      yaxis={"categoryorder": "array", "categoryarray": [r["row"] for r in rows]})
    return fig


def granularity_figure(results: dict):
    """Table: global / per-layer / per-head calibration, mean KL, direct and after QAT with intervals."""
    rows = granularity_rows(results)
    return _table(["granularity", "mean calibration KL", "direct %", "Δ direct [95%]", "after QAT %", "Δ QAT [95%]"],
                  [[r["granularity"] for r in rows], [f"{r['mean_kl']:.4f}" for r in rows],
                   [_pct(r["direct"]) for r in rows], [r["direct_vs_float32"] for r in rows],
                   [_pct(r["qat"]) for r in rows], [r["qat_vs_float32"] for r in rows]],
                  f"Granularity ({results.get('variant')}): one (B, S, D) for the model, per layer, per head"
                  f"{_quick_tag(results)}", 80 + 28 * len(rows))


def methods_figure(results: dict):
    """Table: calibration method, its mean KL and time, the direct accuracy it gives vs float32 and vs the exact grid."""
    rows = method_rows(results)
    return _table(["method", "mean KL", "seconds", "direct %", "Δ vs float32 [95%]", "Δ vs exact grid [95%]", "what"],
                  [[r["method"] for r in rows], [f"{r['mean_kl']:.4f}" for r in rows],
                   [f"{r['seconds']:.1f}" for r in rows], [_pct(r["direct"]) for r in rows],
                   [r["vs_float32"] for r in rows], [r["vs_grid"] for r in rows], [r["what"] for r in rows]],
                  f"Calibration method (per head, {results.get('variant')} directly){_quick_tag(results)}",
                  110 + 40 * len(rows))


def table_figure(results: dict):
    """Ours next to the paper's BERT-tiny / BERT-small SST-2 rows (no intervals: the paper gives none)."""
    rows = results_table(results)
    cols = ["source", "float32", "hccs_direct", "hccs_qat", "delta_qat", "global", "layer", "head"]
    fmt = lambda v: v if isinstance(v, str) else ("" if v is None else f"{100 * v:+.1f}" if v < 0 else f"{100 * v:.1f}")
    return _table(["", "float32 %", "HCCS direct %", "HCCS after QAT %", "Δ QAT (pp)", "global %", "per-layer %",
                   "per-head %"], [[fmt(r.get(c)) for r in rows] for c in cols],
                  "Ours (Rotten Tomatoes snippets, standing in for SST-2) vs the paper", 260)


def training_curves_figure(results: dict):
    import plotly.graph_objects as go

    fig = go.Figure()
    curves = {"float32 fine-tune": results.get("float32", {}).get("history")}
    for v, per_g in results.get("qat", {}).items():
        for g, e in per_g.items():
            curves[f"QAT {v} ({g})"] = e.get("history")
    every = None
    for name, h in curves.items():
        if not h or not h.get("loss"):
            continue
        every = h["log_every"]
        x = [min((i + 1) * every, h["steps"]) for i in range(len(h["loss"]))]
        fig.add_scatter(x=x, y=h["loss"], mode="lines+markers", name=name)
    fig.update_layout(title=f"Training loss (mean of every {every or '?'} steps)",
                      xaxis_title="optimizer step", yaxis_title="cross-entropy", height=360)
    return fig


def head_kl_figure(results: dict):
    import plotly.graph_objects as go

    fid = results["fidelity"]
    labels = [f"L{r['layer']}H{r['head']}" for r in fid["heads"]]
    fig = go.Figure()
    fig.add_bar(x=labels, y=[r["kl_direct"] for r in fid["heads"]], name="HCCS direct (before retraining)",
                marker_color=SERIES_COLOURS["HCCS direct"])
    fig.add_bar(x=labels, y=[r["kl_qat"] for r in fid["heads"]], name="HCCS after QAT",
                marker_color=SERIES_COLOURS["HCCS after QAT"])
    fig.update_layout(barmode="group", yaxis_type="log", height=360,
                      title=f"Per-head KL(float32 softmax || HCCS {fid.get('reading', '')} attention), test sentences",
                      yaxis_title="mean KL (nats)")
    return fig


def entropy_kl_figure(results: dict):
    """Per head: softmax entropy (broad = high) against the KL of HCCS direct, to read which heads HCCS fits."""
    import plotly.graph_objects as go

    heads = results["fidelity"]["heads"]
    fig = go.Figure(go.Scatter(x=[h["entropy_float"] for h in heads], y=[h["kl_direct"] for h in heads],
                               mode="markers", text=[f"L{h['layer']}H{h['head']}" for h in heads],
                               marker={"color": SERIES_COLOURS["HCCS direct"]}))
    fig.update_layout(title="Broad heads (high entropy) vs focused ones: KL of HCCS direct per head",
                      xaxis_title="mean softmax entropy (nats)", yaxis_title="mean KL (nats)", yaxis_type="log",
                      height=360)
    return fig


def attention_rows_figure(results: dict):
    """Broad and focused head: one sentence's attention of one query, float softmax vs HCCS direct vs after QAT."""
    from plotly.subplots import make_subplots

    ex = results["fidelity"]["examples"]
    fig = make_subplots(rows=1, cols=len(ex), subplot_titles=[f"{e['kind']} head L{e['layer']}H{e['head']}"
                                                              for e in ex])
    for c, e in enumerate(ex, start=1):
        for key, name in (("softmax", "float32 softmax"), ("direct", "HCCS direct"), ("qat", "HCCS after QAT")):
            fig.add_bar(x=e["tokens"], y=e[key], name=name, legendgroup=name, showlegend=c == 1, row=1, col=c,
                        marker_color=SERIES_COLOURS[name])
    fig.update_layout(barmode="group", height=380, title="Attention of the [CLS] query over the keys of one test sentence")
    return fig
