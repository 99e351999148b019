"""Latency of the notebook widgets as the browser sees it: input event -> readout change -> plotly redraw.

A probe installed in the page records, in the page's own clock (`performance.now()`, the clock of
`Event.timeStamp`):

* every keydown and every pointer / mouse move with a button held (the input events);
* every change of a slider's value (`aria-valuenow` of its handle), with the input event that caused it;
* every change of a widget's readout, read from its `.hccs-state` element (JSON keyed by the slider
  labels, written by the widget), and the next animation frame after it;
* every plotly redraw of a chosen trace, read from that trace's `meta` (the same JSON), and the next
  animation frame after it;
* long tasks (main-thread blocks over 50 ms).

`latencies(...)` matches them: for every value a slider took, the first readout / redraw that shows
that value, measured from the input event that produced it to the frame after the change.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

PROBE_JS = r"""
(cfg) => {
  const P = window.__hccsProbe = {values: [], readouts: [], redraws: [], longtasks: [], lastInput: null};
  const now = () => performance.now();
  const onInput = (e) => {
    // a key, a move with a button held, or a drag's synthetic input event (bench: native range inputs)
    if (e.type === 'keydown' || e.buttons || (e.type === 'input' && !e.isTrusted))
      P.lastInput = {t: e.timeStamp, type: e.type, trusted: e.isTrusted};
  };
  for (const type of ['keydown', 'pointermove', 'pointerdown', 'mousemove', 'mousedown', 'input'])
    window.addEventListener(type, onInput, true);
  const root = document.querySelector(cfg.root) || document;
  root.querySelectorAll('.widget-slider').forEach((s) => {
    const label = (s.querySelector('.widget-label') || {}).innerText;
    const h = s.querySelector('[role=slider]');
    if (!label || !h) return;
    new MutationObserver(() => {
      const inp = P.lastInput;
      P.values.push({label: label.trim(), value: Number(h.getAttribute('aria-valuenow')), t: now(),
                     t_input: inp ? inp.t : null, input: inp ? inp.type : null});
    }).observe(h, {attributes: true, attributeFilter: ['aria-valuenow']});
  });
  const frameAfter = (rec) => requestAnimationFrame(() => { rec.frame = now(); });
  const readout = root.querySelector(cfg.readout);
  let lastReadout = null;
  const readState = () => { const e = readout.querySelector('.hccs-state'); return e ? e.getAttribute('data-state') : null; };
  new MutationObserver(() => {
    const s = readState();
    if (s && s !== lastReadout) { lastReadout = s; const rec = {state: JSON.parse(s), t: now()}; P.readouts.push(rec); frameAfter(rec); }
  }).observe(readout, {subtree: true, childList: true, characterData: true, attributes: true});
  const host = root.querySelector(cfg.plot);
  const gd = host.classList.contains('js-plotly-plot') ? host : host.querySelector('.js-plotly-plot');
  let lastMeta = null;
  new MutationObserver(() => {
    const tr = (gd.data || []).find((t) => t.name === cfg.trace);
    const m = tr && tr.meta;
    if (m && m !== lastMeta) { lastMeta = m; const rec = {state: JSON.parse(m), t: now()}; P.redraws.push(rec); frameAfter(rec); }
  }).observe(gd, {subtree: true, childList: true, attributes: true});
  try {
    new PerformanceObserver((list) => list.getEntries().forEach((e) => P.longtasks.push({t: e.startTime, d: e.duration})))
      .observe({entryTypes: ['longtask']});
  } catch (e) {}
  return true;
}
"""


@dataclass(frozen=True)
class Target:
    """Where a widget shows its state: the readout's selector and a plotly figure's trace."""

    root: str  # selector of the element holding the widget (its output area)
    readout: str
    plot: str
    trace: str


def install(page, target: Target) -> None:
    page.evaluate(PROBE_JS, {"root": target.root, "readout": target.readout, "plot": target.plot, "trace": target.trace})


def probe(page) -> dict:
    return page.evaluate("() => JSON.parse(JSON.stringify(window.__hccsProbe))")


def reset(page) -> None:
    page.evaluate("() => { const P = window.__hccsProbe; P.values = []; P.readouts = []; P.redraws = []; P.longtasks = []; }")


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))
    return a == b


def latencies(data: dict, label: str, to: str) -> tuple[list[float], list[dict]]:
    """For every distinct readout / redraw (`to`) that shows a new value of slider `label`: milliseconds
    from the newest input event that set that value before it was shown, to the frame after it.

    The newest such event, because a slider that sends only its latest value (`FlowSlider`) skips
    values a drag passed over; each input event is counted once. Returns the latencies and the
    matched records."""
    shown = [r for r in data["readouts" if to == "readout" else "redraws"] if "frame" in r]
    values = [v for v in data["values"] if v["label"] == label and v["t_input"] is not None]
    out, matched, used = [], [], set()
    last = None
    for r in shown:
        v_shown = r["state"].get(label)
        if v_shown is None or (last is not None and _same(v_shown, last)):
            continue  # this record is about another control
        last = v_shown
        cands = [i for i, v in enumerate(values) if v["t"] <= r["t"] and _same(v["value"], v_shown)]
        if not cands or cands[-1] in used:
            continue
        used.add(cands[-1])
        out.append(r["frame"] - values[cands[-1]]["t_input"])
        matched.append(r)
    return out, matched


def frames_per_second(data: dict, to: str, t0: float, t1: float) -> float:
    """Distinct readouts / redraws per second between page times t0 and t1 (ms)."""
    shown = data["readouts" if to == "readout" else "redraws"]
    n = sum(1 for r in shown if t0 <= r["t"] <= t1)
    return n / max((t1 - t0) / 1e3, 1e-9)


def summary(ms: list[float]) -> dict:
    if not ms:
        return {"p50_ms": None, "p95_ms": None, "max_ms": None, "n": 0}
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1),
            "max_ms": round(float(a.max()), 1), "n": int(a.size)}


# ---- driving one slider -----------------------------------------------------------------------------

def handle_info(page, root: str, label: str) -> dict | None:
    return page.evaluate(
        """([root, label]) => {
          const r = document.querySelector(root) || document;
          const s = Array.from(r.querySelectorAll('.widget-slider')).find(
              (e) => (e.querySelector('.widget-label') || {}).innerText?.trim() === label);
          if (!s) return null;
          const h = s.querySelector('[role=slider]');
          const track = s.querySelector('.noUi-target') || (h.tagName === 'INPUT' ? h : h.parentElement);
          const hb = h.getBoundingClientRect(), tb = track.getBoundingClientRect();
          return {value: Number(h.getAttribute('aria-valuenow')), min: Number(h.getAttribute('aria-valuemin')),
                  max: Number(h.getAttribute('aria-valuemax')), hx: hb.x + hb.width / 2, hy: hb.y + hb.height / 2,
                  tx: tb.x, tw: tb.width};
        }""", [root, label])


def wait_shown(page, label: str, value: float, timeout_s: float = 10.0) -> bool:
    """Wait until both the readout and the redraw show `value` for `label` (and the frame after)."""
    deadline = time.monotonic() + timeout_s
    js = """([label, value]) => {
      const P = window.__hccsProbe, ok = (a) => a.some((r) => 'frame' in r && Math.abs(r.state[label] - value) <= 1e-6 * Math.max(1, Math.abs(value)));
      return ok(P.readouts) && ok(P.redraws);
    }"""
    while time.monotonic() < deadline:
        if page.evaluate(js, [label, value]):
            return True
        page.wait_for_timeout(10)
    return False


def key_steps(page, root: str, label: str, steps: int, pause_ms: int = 120) -> int:
    """Press an arrow key `steps` times on the slider's handle, each time waiting until the new value is
    shown (read out and redrawn); direction: towards the larger side of the range. Returns the steps done."""
    info = handle_info(page, root, label)
    if info is None:
        return 0
    up = (info["max"] - info["value"]) >= (info["value"] - info["min"])
    handle = page.locator(root).locator(".widget-slider", has=page.locator(".widget-label", has_text=label)).locator(
        "[role=slider]").first
    handle.focus()
    done = 0
    for _ in range(steps):
        before = handle_info(page, root, label)["value"]
        page.keyboard.press("ArrowRight" if up else "ArrowLeft")
        after = handle_info(page, root, label)["value"]
        if after == before:
            break
        wait_shown(page, label, after)
        page.wait_for_timeout(pause_ms)
        done += 1
    return done


DRAG_JS = r"""
async ([root, label, seconds, everyMs]) => {
  const r = document.querySelector(root) || document;
  const s = Array.from(r.querySelectorAll('.widget-slider')).find(
      (e) => (e.querySelector('.widget-label') || {}).innerText?.trim() === label);
  const h = s.querySelector('[role=slider]');
  const native = h.tagName === 'INPUT';  // hccs_lab's FlowSlider: a native range input
  const track = s.querySelector('.noUi-target') || (native ? h : h.parentElement);
  const min = Number(h.getAttribute('aria-valuemin')), max = Number(h.getAttribute('aria-valuemax'));
  const v0 = Number(h.getAttribute('aria-valuenow'));
  const tb = track.getBoundingClientRect(), hb = h.getBoundingClientRect();
  const span = max - min;
  if (!(span > 0)) return [0, 0];
  const pxPer = tb.width / span;
  const step = Number.isInteger(min) && Number.isInteger(max) && span >= 1 ? Math.max(1, Math.ceil(1 / pxPer)) : span / 100;
  const lo = Math.max(min, v0 - 15 * step), hi = Math.min(max, lo + 30 * step);
  const y = hb.y + hb.height / 2, x0 = hb.x + hb.width / 2;
  const xOf = (v) => x0 + (v - v0) * pxPer;
  // noUiSlider (the ipywidgets slider) listens to mouse events in Chromium (pointer events only where
  // the old navigator.pointerEnabled exists)
  const ev = (type, x) => new MouseEvent(type, {bubbles: true, cancelable: true, composed: true, clientX: x, clientY: y,
      buttons: type === 'mouseup' ? 0 : 1, button: 0, view: window});
  // a native range input ignores synthetic mouse events: set its value and fire the input event
  // the browser fires during a drag
  const move = (v) => native ? (h.value = String(v), h.dispatchEvent(new Event('input', {bubbles: true})))
                             : document.documentElement.dispatchEvent(ev('mousemove', xOf(v)));
  if (!native) h.dispatchEvent(ev('mousedown', x0));
  const t0 = performance.now();
  let v = v0, dir = v0 + step <= hi ? 1 : -1;
  await new Promise((done) => {
    const tick = () => {
      if (performance.now() - t0 > seconds * 1000) return done();
      v += dir * step;
      if (v >= hi || v <= lo) { dir = -dir; v = Math.min(Math.max(v, lo), hi); }
      move(v);
      if (everyMs) setTimeout(tick, everyMs); else requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  const t1 = performance.now();
  if (!native) document.documentElement.dispatchEvent(ev('mouseup', xOf(v)));
  return [t0, t1];
}
"""


def drag(page, root: str, label: str, seconds: float = 2.0, every_ms: float | None = None,
         settle_ms: int = 1500) -> tuple[float, float]:
    """Drag the slider's handle by one value per animation frame (back and forth over up to 30 values)
    for `seconds`, with pointer events dispatched in the page: like a person's drag, one move per
    frame however busy the page is (a remote-controlled mouse would wait for each move to be handled).
    Returns the page-time window (t0, t1) in ms during which the pointer moved."""
    t0, t1 = page.evaluate(DRAG_JS, [root, label, seconds, every_ms])
    page.wait_for_timeout(settle_ms)  # let the last value be shown
    return t0, t1


def to_json(obj) -> str:
    return json.dumps(obj, indent=1)
