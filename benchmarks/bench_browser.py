"""The notebooks as people use them: slider latency in JupyterLab in Debian's Chromium (issue 16).

    .venv/bin/python benchmarks/bench_browser.py [--json FILE] [--quick] [--notebooks 00,01,02,07]

Starts JupyterLab on loopback with a random token (tests/browser/lab.py), opens each notebook in a
headless Chromium driven by Playwright, runs all cells (full mode unless --quick), then for every
slider of the notebook's main widget:

* key steps: the slider's handle focused, one arrow key at a time, each step waited for;
* a drag: mouse down on the handle, one value further every 16 ms, back and forth, for 2 s;

and measures, in the page's own clock, from the input event (`Event.timeStamp` of the keydown or
pointer move) to the animation frame after the readout shows the new value ("readout") and after
plotly redrew the curve for it ("redraw"); p50 / p95 / max over the steps, and for drags the
readouts / redraws per second while the pointer moved. It also counts the messages of JupyterLab's
Log Console at level error (an exception in a widget callback lands there, not in a cell).

Before the notebooks it measures the floor: a notebook written to a temporary folder whose slider only
puts its value into an HTML readout and a three-point plotly curve. Whatever a kernel round trip
costs on this machine at this load, it costs the notebooks too; the floor row ("floor") says how much.

`--json FILE` writes {"measurements": [{"notebook", "control", "input": "key"|"drag",
"to": "readout"|"redraw", "p50_ms", "p95_ms", "max_ms", "fps"}, ...], "log_console_errors": N}.
Goals (issue 16): 02's slope S and clip D p95 <= 100 ms key -> readout and key -> redraw (stretch
50 ms), drags >= 20 frames/s, base B and scale p95 <= 150 ms, no logged errors. The machine's load
average is printed before and after: the figures are only comparable at a similar load.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))

import latency as LT  # noqa: E402
from lab import NOTEBOOKS, ConsoleLog, chromium_context, lab_server, log_console, open_and_run_all, poll  # noqa: E402

KEY_STEPS = 20
DRAG_S = 2.0
RUN_TIMEOUT_S = 900


@dataclass(frozen=True)
class Case:
    key: str
    notebook: str
    target: LT.Target | None  # None: run the notebook and count its logged errors only


def _target(plot: str, readout: str, trace: str) -> LT.Target:
    return LT.Target(root=f".jp-OutputArea-output:has(.{plot})", readout=f".{readout}", plot=f".{plot}", trace=trace)


CASES = [
    Case("00", "00_start_here.ipynb", _target("hccs-start-plot", "hccs-start-readout", "HCCS")),
    Case("01", "01_head_explorer.ipynb", _target("hccs-attention-matrix", "hccs-explorer-readout", "attention")),
    Case("02", "02_clip_slope_playground.ipynb", _target("hccs-playground-plot", "hccs-kl-readout", "HCCS")),
    Case("07", "07_decoder.ipynb", None),
]

GOALS = {  # (notebook, control, input, to) -> p95 bound in ms
    **{("02", c, "key", to): 100.0 for c in ("slope S", "clip D") for to in ("readout", "redraw")},
    **{("02", c, "key", to): 150.0 for c in ("base B", "scale") for to in ("readout", "redraw")},
}
GOAL_FPS = 20.0


FLOOR_CODE = """
import json
import ipywidgets as W
import plotly.graph_objects as go
from hccs_lab.widgets.figures import live_figure, state_span
from hccs_lab.widgets.slider import FlowIntSlider

s = FlowIntSlider(value=50, min=0, max=100, description="floor value")
out = W.HTML(state_span({"floor value": 50}))
out.add_class("hccs-floor-readout")
fig = live_figure(data=[go.Scatter(name="HCCS", y=[0, 50, 100], meta=json.dumps({"floor value": 50}))])
fig.add_class("hccs-floor-plot")

def on(change):
    out.value = state_span({"floor value": change["new"]})
    with fig.batch_redraw_traces():
        fig.data[0].y = [0, change["new"], 100]
        fig.data[0].meta = json.dumps({"floor value": change["new"]})

s.observe(on, names="value")
W.VBox([s, out, fig])
"""
FLOOR = Case("floor", "floor.ipynb", _target("hccs-floor-plot", "hccs-floor-readout", "HCCS"))


def write_floor_notebook(folder: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(FLOOR_CODE)]
    nbformat.write(nb, str(folder / FLOOR.notebook))


def sliders_of(page, root: str) -> list[str]:
    return page.evaluate("""(root) => Array.from((document.querySelector(root) || document).querySelectorAll('.widget-slider'))
        .map((s) => (s.querySelector('.widget-label') || {}).innerText).filter(Boolean).map((t) => t.trim())""", root)


def measure_slider(page, case: Case, label: str, steps: int, drag_s: float) -> list[dict]:
    t = case.target
    rows = []
    LT.reset(page)
    done = LT.key_steps(page, t.root, label, steps)
    data = LT.probe(page)
    for to in ("readout", "redraw"):
        ms, _ = LT.latencies(data, label, to)
        rows.append({"notebook": case.key, "control": label, "input": "key", "to": to, **LT.summary(ms), "fps": None,
                     "steps": done})
    LT.reset(page)
    t0, t1 = LT.drag(page, t.root, label, drag_s)
    data = LT.probe(page)
    for to in ("readout", "redraw"):
        ms, _ = LT.latencies(data, label, to)
        fps = round(LT.frames_per_second(data, to, t0, t1), 1) if t1 > t0 else None
        rows.append({"notebook": case.key, "control": label, "input": "drag", "to": to, **LT.summary(ms), "fps": fps,
                     "steps": len([v for v in data["values"] if v["label"] == label])})
    long_tasks = [lt["d"] for lt in data["longtasks"]]
    rows[-1]["longest_task_ms"] = round(max(long_tasks), 1) if long_tasks else 0.0
    return rows


def run_case(browser, server, case: Case, steps: int, drag_s: float) -> tuple[list[dict], list[dict], list[str]]:
    page = browser.new_page()
    console = ConsoleLog(page)
    rows = []
    try:
        t0 = time.monotonic()
        open_and_run_all(page, server, case.notebook, timeout_s=RUN_TIMEOUT_S)
        print(f"  {case.notebook}: ran all cells in {time.monotonic() - t0:.0f} s", flush=True)
        if case.target is not None:
            poll(page, f"() => !!document.querySelector('{case.target.root} {case.target.plot} .main-svg')", 60,
                 f"the plot of {case.notebook}")
            page.locator(case.target.root).first.scroll_into_view_if_needed()
            page.wait_for_timeout(1000)
            LT.install(page, case.target)
            for label in sliders_of(page, case.target.root):
                got = measure_slider(page, case, label, steps, drag_s)
                rows += got
                for r in got:
                    print(f"  {format_row(r)}", flush=True)
        page.wait_for_timeout(1000)
        logged = log_console(page)
    finally:
        page.close()
    return rows, logged, console.errors


def format_row(r: dict) -> str:
    def f(v):
        return "   -  " if v is None else f"{v:6.1f}"

    fps = "" if r["fps"] is None else f"  {r['fps']:5.1f} fps"
    return (f"{r['notebook']} {r['control']:<11} {r['input']:<4} -> {r['to']:<7} p50 {f(r['p50_ms'])}  p95 {f(r['p95_ms'])}"
            f"  max {f(r['max_ms'])} ms  (n={r['n']}){fps}")


def check_goals(rows: list[dict], errors: int) -> list[str]:
    out = []
    for r in rows:
        bound = GOALS.get((r["notebook"], r["control"], r["input"], r["to"]))
        if bound is not None and r["p95_ms"] is not None:
            out.append(f"{'MET ' if r['p95_ms'] <= bound else 'MISS'} {r['notebook']} {r['control']} key->{r['to']} "
                       f"p95 {r['p95_ms']:.0f} ms (goal <= {bound:.0f})")
        if r["input"] == "drag" and r["to"] == "redraw" and r["fps"] is not None:
            out.append(f"{'MET ' if r['fps'] >= GOAL_FPS else 'MISS'} {r['notebook']} {r['control']} drag "
                       f"{r['fps']:.1f} fps (goal >= {GOAL_FPS:.0f})")
    out.append(f"{'MET ' if errors == 0 else 'MISS'} Log Console errors: {errors} (goal 0)")
    return out


def load_average() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg() + f" on {os.cpu_count()} cores"
    except OSError:
        return "load average unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the measurements as JSON here")
    ap.add_argument("--quick", action="store_true", help="run the notebooks in quick mode (HCCS_LAB_QUICK=1)")
    ap.add_argument("--notebooks", default=",".join(c.key for c in CASES), help="comma-separated: 00,01,02,07")
    ap.add_argument("--steps", type=int, default=KEY_STEPS, help="key steps per slider")
    ap.add_argument("--drag-seconds", type=float, default=DRAG_S)
    ap.add_argument("--no-floor", action="store_true", help="skip the trivial-widget floor")
    args = ap.parse_args(argv)
    wanted = set(args.notebooks.split(","))
    cases = [c for c in CASES if c.key in wanted and (NOTEBOOKS / c.notebook).is_file()]
    print(f"before: {load_average()}; {'quick' if args.quick else 'full'} mode; notebooks {[c.key for c in cases]}",
          flush=True)
    rows, logged, console = [], [], []
    import tempfile

    with chromium_context() as browser:
        if not args.no_floor:
            with tempfile.TemporaryDirectory(prefix="hccs-bench-floor-") as tmp, lab_server(Path(tmp)) as server:
                write_floor_notebook(Path(tmp))
                r, _, _ = run_case(browser, server, FLOOR, args.steps, args.drag_seconds)
                rows += r
        with lab_server(quick=args.quick) as server:
            for case in cases:
                r, lg, ce = run_case(browser, server, case, args.steps, args.drag_seconds)
                rows += r
                logged += [dict(e, notebook=case.key) for e in lg]
                console += ce
    errors = [e for e in logged if e["level"] in ("error", "critical")]
    print(f"after: {load_average()}")
    print(f"Log Console: {len(logged)} message(s) at warning or above, {len(errors)} error(s)")
    for e in logged[:10]:
        print(f"  [{e['notebook']} {e['level']}] {e['text'][:200]}")
    if console:
        print(f"browser console errors: {len(console)}")
        for c in console[:10]:
            print(f"  {c[:200]}")
    for line in check_goals(rows, len(errors)):
        print(line)
    if args.json:
        keys = ("notebook", "control", "input", "to", "p50_ms", "p95_ms", "max_ms", "fps")
        doc = {"measurements": [{k: r[k] for k in keys} for r in rows], "log_console_errors": len(errors)}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
