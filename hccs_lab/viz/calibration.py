"""Figures for calibration results: KL heatmaps, granularity and method comparisons, the fidelity plot.

Each figure has an array-in/array-out data function next to it (tested), and a builder that only
draws. Figures are plain `plotly.graph_objects.Figure`s: they render offline in JupyterLab.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..calibrate import Calibration
from ..core import HCCSParams, hccs_int, quantize_logits, softmax
from ..errors import InputError
from .palette import SERIES


def _go():
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    return go, make_subplots


# ---------------------------------------------------------------------------------------------
# per-head KL before / after


def kl_heatmap(cal: Calibration, title: str | None = None):
    """Layers x heads heatmaps of mean KL with the default set (before) and calibrated (after)."""
    go, make_subplots = _go()
    before, after = cal.kl_grid("before"), cal.kl_grid("after")
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"before: default {cal.before.B}/{cal.before.S}/{cal.before.D} (mean {before.mean():.3f})",
        f"after: {cal.granularity}/{cal.method} (mean {after.mean():.3f})"))
    zmax = float(max(before.max(), after.max()))
    text = [[f"B={h.B} S={h.S} D={h.D}" for h in cal.heads[l * cal.n_heads:(l + 1) * cal.n_heads]] for l in range(cal.n_layers)]
    for col, (z, txt) in enumerate(((before, None), (after, text)), start=1):
        fig.add_trace(go.Heatmap(
            z=z, x=list(range(cal.n_heads)), y=list(range(cal.n_layers)), zmin=0, zmax=zmax,
            colorscale="Viridis", showscale=col == 2, colorbar=dict(title="KL"), text=txt,
            hovertemplate="layer %{y} head %{x}<br>KL %{z:.4f}" + ("<br>%{text}" if txt else "") + "<extra></extra>"),
            row=1, col=col)
        fig.update_xaxes(title_text="head", row=1, col=col, dtick=1)
        fig.update_yaxes(title_text="layer", row=1, col=col, dtick=1, autorange="reversed")
    fig.update_layout(title=title or f"{cal.model}: mean KL(softmax || HCCS i16) per head", height=380, width=900)
    return fig


# ---------------------------------------------------------------------------------------------
# granularity and method comparisons


def comparison_table(cals: Mapping[str, Calibration]) -> list[dict]:
    """One row per calibration: mean/max KL after, gap to the lowest mean, distinct parameter sets, seconds."""
    if not cals:
        raise InputError("no calibrations to compare")
    best = min(c.mean_kl_after for c in cals.values())
    rows = []
    for name, c in cals.items():
        after = c.kl_grid("after")
        rows.append({
            "name": name,
            "granularity": c.granularity,
            "method": c.method,
            "mean_kl": float(after.mean()),
            "max_kl": float(after.max()),
            "gap_to_best": float(after.mean() - best),
            "param_sets": len({(h.B, h.S, h.D) for h in c.heads}),
            "seconds": float(c.seconds),
        })
    return rows


def comparison_figure(cals: Mapping[str, Calibration], title: str = "mean KL per layer"):
    """Mean KL per layer, one line per calibration, plus each one's model mean in the legend."""
    go, _ = _go()
    fig = go.Figure()
    for i, (name, c) in enumerate(cals.items()):
        per_layer = c.kl_grid("after").mean(1)
        color, symbol, dash = SERIES[i % len(SERIES)]
        fig.add_trace(go.Scatter(x=list(range(c.n_layers)), y=per_layer, mode="lines+markers",
                                 line=dict(color=color, dash=dash), marker=dict(symbol=symbol, size=8),
                                 name=f"{name} (mean {c.mean_kl_after:.3f})"))
    first = next(iter(cals.values()))
    fig.add_trace(go.Scatter(x=list(range(first.n_layers)), y=first.kl_grid("before").mean(1), mode="lines",
                             line=dict(dash="dot", color="gray"), name=f"default set (mean {first.mean_kl_before:.3f})"))
    fig.update_layout(title=title, xaxis_title="layer", yaxis_title="mean KL(softmax || HCCS)", height=380, width=760)
    fig.update_xaxes(dtick=1)
    return fig


# ---------------------------------------------------------------------------------------------
# fidelity: probability against key rank (the paper's figure)


def broad_and_focused(bank) -> tuple[tuple[int, int], tuple[int, int]]:
    """The heads with the highest and lowest mean normalised softmax entropy: (broad, focused)."""
    ent = np.asarray(bank.summary().norm_entropy, dtype=np.float64)
    ent = np.where(np.isfinite(ent), ent, np.nan)
    b = np.unravel_index(np.nanargmax(ent), ent.shape)
    f = np.unravel_index(np.nanargmin(ent), ent.shape)
    return (int(b[0]), int(b[1])), (int(f[0]), int(f[1]))


def fidelity_data(logits, mask, params: HCCSParams, scale: float, max_rank: int | None = None) -> dict:
    """Mean probability at each key rank (keys sorted by softmax, per row), softmax vs HCCS i16/32767.

    Ranks beyond a row's valid keys do not count; `count[r]` says how many rows have a rank r.
    Returns also the mean KL of the rows (same objective as calibration).
    """
    from ..core.metrics import kl

    logits, mask = np.asarray(logits), np.asarray(mask, bool)
    keep = mask.any(-1)
    logits, mask = logits[keep], mask[keep]
    p = softmax(logits.astype(np.float64), mask)
    q = hccs_int(quantize_logits(logits, scale, mask), params, "i16", "div", mask=mask) / 32767.0
    order = np.argsort(-np.where(mask, p, -1.0), axis=-1, kind="stable")
    ps, qs = np.take_along_axis(p, order, -1), np.take_along_axis(q, order, -1)
    ms = np.take_along_axis(mask, order, -1)
    n = ps.shape[1] if max_rank is None else min(int(max_rank), ps.shape[1])
    cnt = ms[:, :n].sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_mean = np.where(cnt > 0, (ps[:, :n] * ms[:, :n]).sum(0) / np.maximum(cnt, 1), np.nan)
        q_mean = np.where(cnt > 0, (qs[:, :n] * ms[:, :n]).sum(0) / np.maximum(cnt, 1), np.nan)
    return {"rank": np.arange(1, n + 1), "softmax": p_mean, "hccs": q_mean, "count": cnt,
            "kl": float(kl(p, q, mask).mean())}


def fidelity_figure(heads: Mapping[str, tuple], max_rank: int = 24, title: str = "attention probability vs key rank"):
    """One panel per head: mean softmax and calibrated-HCCS probability by key rank (log y).

    `heads` maps a label (e.g. "broad L1 H3") to (logits, mask, params, scale).
    """
    go, make_subplots = _go()
    labels = list(heads)
    fig = make_subplots(rows=1, cols=len(labels), subplot_titles=labels)
    for i, label in enumerate(labels, start=1):
        logits, mask, params, scale = heads[label]
        d = fidelity_data(logits, mask, params, scale, max_rank)
        fig.add_trace(go.Scatter(x=d["rank"], y=d["softmax"], mode="lines+markers", name="softmax",
                                 line=dict(color=SERIES[0][0]), showlegend=i == 1), row=1, col=i)
        fig.add_trace(go.Scatter(x=d["rank"], y=d["hccs"], mode="lines+markers", marker=dict(symbol="diamond"),
                                 name="HCCS i16 (calibrated)", line=dict(color=SERIES[1][0], dash="dash"),
                                 showlegend=i == 1), row=1, col=i)
        ax = "" if i == 1 else str(i)
        fig.add_annotation(text=f"KL {d['kl']:.3f}<br>B={params.B} S={params.S} D={params.D}", xref=f"x{ax} domain",
                           yref=f"y{ax} domain", x=0.95, y=0.95, showarrow=False, align="right")
        fig.update_xaxes(title_text="key rank (by softmax)", row=1, col=i)
        fig.update_yaxes(type="log", exponentformat="power", title_text="mean probability" if i == 1 else None,
                         row=1, col=i)
    fig.update_layout(title=title, height=380, width=420 * len(labels))
    return fig
