"""Figures of a retraining run (plotly): accuracy table, training curves, per-head KL, example rows."""
from __future__ import annotations

from ..retrain.results import results_table


def table_figure(results: dict):
    import plotly.graph_objects as go

    rows = results_table(results)
    cols = ["source", "float32", "hccs_direct", "hccs_qat", "delta_qat", "global", "layer", "head"]
    fmt = lambda v: v if isinstance(v, str) else ("" if v is None else f"{100 * v:+.1f}" if v < 0 else f"{100 * v:.1f}")
    cells = [[fmt(r.get(c)) for r in rows] for c in cols]
    fig = go.Figure(go.Table(header={"values": ["", "float32 %", "HCCS direct %", "HCCS after QAT %", "Δ QAT (pp)",
                                                "global %", "per-layer %", "per-head %"]},
                             cells={"values": cells}))
    fig.update_layout(title="Accuracy: ours (Rotten Tomatoes snippets, standing in for SST-2) vs the paper",
                      height=260, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def training_curves_figure(results: dict):
    import plotly.graph_objects as go

    fig = go.Figure()
    curves = {"float32 fine-tune": results.get("float32", {}).get("history")}
    for g, r in results.get("ablation", {}).items():
        curves[f"HCCS QAT ({g})"] = r.get("history")
    if "history" in results.get("hccs_qat", {}):
        curves.setdefault(f"HCCS QAT ({results['hccs_qat'].get('granularity', 'head')})", results["hccs_qat"]["history"])
    for name, h in curves.items():
        if not h or not h.get("loss"):
            continue
        every = h["log_every"]
        x = [min((i + 1) * every, h["steps"]) for i in range(len(h["loss"]))]
        fig.add_scatter(x=x, y=h["loss"], mode="lines+markers", name=name)
    fig.update_layout(title=f"Training loss (mean of every {every if curves else '?'} steps)",
                      xaxis_title="optimizer step", yaxis_title="cross-entropy", height=360)
    return fig


def head_kl_figure(results: dict):
    import plotly.graph_objects as go

    fid = results["fidelity"]
    labels = [f"L{r['layer']}H{r['head']}" for r in fid["heads"]]
    fig = go.Figure()
    fig.add_bar(x=labels, y=[r["kl_direct"] for r in fid["heads"]], name="HCCS direct (before retraining)")
    fig.add_bar(x=labels, y=[r["kl_qat"] for r in fid["heads"]], name="HCCS after QAT")
    fig.update_layout(barmode="group", yaxis_type="log", height=360,
                      title="Per-head KL(float32 softmax || HCCS attention), test sentences",
                      yaxis_title="mean KL (nats)")
    return fig


def attention_rows_figure(results: dict):
    """Broad and focused head: one sentence's attention of one query, float softmax vs HCCS direct vs after QAT."""
    from plotly.subplots import make_subplots

    ex = results["fidelity"]["examples"]
    fig = make_subplots(rows=1, cols=len(ex), subplot_titles=[f"{e['kind']} head L{e['layer']}H{e['head']}"
                                                              for e in ex])
    for c, e in enumerate(ex, start=1):
        for key, name in (("softmax", "float32 softmax"), ("direct", "HCCS direct"), ("qat", "HCCS after QAT")):
            fig.add_bar(x=e["tokens"], y=e[key], name=name, legendgroup=name, showlegend=c == 1, row=1, col=c)
    fig.update_layout(barmode="group", height=380, title="Attention of the [CLS] query over the keys of one test sentence")
    return fig
