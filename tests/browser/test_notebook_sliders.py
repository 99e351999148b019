"""Drive the widget notebooks in a real JupyterLab in Debian's headless Chromium.

00 and 02: Run All Cells, move the slope slider with the keyboard and check that the readout and the
plotted HCCS curve follow within a generous time bound (a regression to seconds fails; the real
figures are benchmarks/bench_browser.py's), then move every slider (keys and a drag) and check that
JupyterLab's Log Console stayed empty (an exception in a widget callback lands there, not in a cell)
and the browser console too, and that the notebook file on disk was not touched.
01: pick a query by clicking a token, type a sentence of your own, check the attention matrix
followed and the Log Console stayed empty.
A screenshot of each widget is kept in tests/artifacts/ (and, with HCCS_LAB_UPDATE_DOCS=1, in docs/
for the README).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pytest

import latency as LT
from lab import (ARTIFACTS, KERNEL_IDLE_JS, NOTEBOOKS, ConsoleLog, log_console_errors, open_and_run_all, plot_state,
                 poll, publish, slider_handle)

KEY_PRESSES = 5
README_PICTURES = {"playground.png", "explorer.png"}  # copied into docs/ with HCCS_LAB_UPDATE_DOCS=1
STEP_BOUND_MS = 3000.0  # one key step, key to redraw: measured ~100-300 ms on a loaded 2-core machine


@dataclass(frozen=True)
class SliderCase:
    notebook: str
    readout_class: str
    plot_class: str
    screenshot: str
    sliders: tuple[str, ...]

    @property
    def target(self) -> LT.Target:
        return LT.Target(root=f".jp-OutputArea-output:has(.{self.plot_class})", readout=f".{self.readout_class}",
                         plot=f".{self.plot_class}", trace="HCCS")


CASES = [
    SliderCase("02_clip_slope_playground.ipynb", "hccs-kl-readout", "hccs-playground-plot", "playground.png",
               ("base B", "slope S", "clip D", "scale", "sample row")),
    SliderCase("00_start_here.ipynb", "hccs-start-readout", "hccs-start-plot", "start_here.png",
               ("base B", "slope S", "clip D")),
]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fail_report(page, console, lab, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"FAILED-{name}"), full_page=True)
    print("console:\n" + "\n".join(console.all[-40:]))
    print("server log tail:\n" + lab.log_tail())


def _widget_shot(page, selector: str, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(5, 5)  # plotly's toolbar shows only under the mouse
    shot = ARTIFACTS / name
    widget = page.locator(selector).first
    widget.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    widget.screenshot(path=str(shot))
    if name in README_PICTURES:
        publish(shot)


@pytest.mark.parametrize("case", CASES, ids=[c.notebook.split("_")[0] for c in CASES])
def test_sliders_move_readout_and_curve_quickly_and_log_nothing(lab, browser, case):
    nb_path = NOTEBOOKS / case.notebook
    before_file = _sha(nb_path)
    page = browser.new_page()
    console = ConsoleLog(page)
    readout_sel = f".{case.readout_class}"
    try:
        open_and_run_all(page, lab, case.notebook)
        poll(page, f"() => {{ const e = document.querySelector('{readout_sel}'); return !!e && e.innerText.includes('KL'); }}",
             60, "the KL readout")
        poll(page, f"() => !!document.querySelector('.{case.plot_class} .main-svg')", 60, "the plot to render")
        before = plot_state(page, case.plot_class, "HCCS")
        assert before and "HCCS" in before["names"] and "softmax" in before["names"], before
        assert before["y"] and before["d"], f"the HCCS trace has no data or no drawn path: {before}"
        before_text = page.inner_text(readout_sel)
        assert log_console_errors(page) == [], "the Log Console has errors right after Run All"

        LT.install(page, case.target)
        handle = slider_handle(page, "slope S")
        handle.scroll_into_view_if_needed()
        s0 = float(handle.get_attribute("aria-valuenow"))
        s_max = float(handle.get_attribute("aria-valuemax"))
        # the slider spans the valid slopes only: any key press lands on a valid point
        key = "ArrowLeft" if s0 >= KEY_PRESSES or s0 >= s_max else "ArrowRight"
        steps = min(KEY_PRESSES, int(s0) if key == "ArrowLeft" else int(s_max - s0))
        handle.focus()
        for _ in range(steps):
            page.keyboard.press(key)
        expected = s0 - steps if key == "ArrowLeft" else s0 + steps
        poll(page, f"() => Number(document.activeElement.getAttribute('aria-valuenow')) === {expected}", 10,
             f"the slope slider to reach {expected}")
        assert LT.wait_shown(page, "slope S", expected, timeout_s=30), "readout and curve never showed the last slope"
        poll(page, KERNEL_IDLE_JS, 30, "the kernel to be idle after the slider moved")
        data = LT.probe(page)
        for to in ("readout", "redraw"):
            ms, _ = LT.latencies(data, "slope S", to)
            assert ms, f"no {to} matched a key step"
            assert max(ms) < STEP_BOUND_MS, f"key -> {to} took {max(ms):.0f} ms (bound {STEP_BOUND_MS:.0f})"
        page.wait_for_timeout(300)
        after = plot_state(page, case.plot_class, "HCCS")
        after_text = page.inner_text(readout_sel)
        assert after_text != before_text and "KL" in after_text
        assert after["y"] != before["y"], "HCCS data did not change"
        assert after["d"] != before["d"], "the drawn HCCS path did not change"
        assert f"{int(expected)}" in page.inner_text(
            ".widget-slider:has(.widget-label:text-is('slope S')) .widget-readout")
        if case.notebook.startswith("02"):
            # the README's picture: the head at its calibrated point ("snap to calibrated")
            page.locator(".hccs-playground button", has_text="snap to calibrated").click()
            poll(page, "() => (document.querySelector('.hccs-playground-status') || {}).innerText?.includes('calibrated')",
                 60, "snap to calibrated to report its parameters")
            poll(page, KERNEL_IDLE_JS, 30, "the kernel to be idle after the snap")
            page.wait_for_timeout(500)
        _widget_shot(page, f".jp-OutputArea-output:has(.{case.plot_class})", case.screenshot)

        # every slider: two key steps and a short drag, then nothing may have been logged
        for label in case.sliders:
            LT.key_steps(page, case.target.root, label, 2, pause_ms=50)
            LT.drag(page, case.target.root, label, seconds=0.6, settle_ms=200)
        poll(page, KERNEL_IDLE_JS, 30, "the kernel to be idle after the drags")
        errors = log_console_errors(page)
        assert errors == [], "the Log Console logged errors while the sliders moved:\n" + json.dumps(errors, indent=1)
        assert not console.errors, "browser console errors:\n" + "\n".join(console.errors)
    except Exception:
        _fail_report(page, console, lab, case.screenshot)
        raise
    finally:
        page.close()
    assert _sha(nb_path) == before_file, f"running {case.notebook} in the browser modified the file"


def _explorer_state(page) -> dict:
    return json.loads(page.get_attribute(".hccs-explorer-readout .hccs-state", "data-state"))


def test_explorer_click_a_token_and_type_a_sentence(lab, browser):
    notebook = "01_head_explorer.ipynb"
    nb_path = NOTEBOOKS / notebook
    before_file = _sha(nb_path)
    page = browser.new_page()
    console = ConsoleLog(page)
    try:
        open_and_run_all(page, lab, notebook)
        poll(page, "() => !!document.querySelector('.hccs-attention-matrix .main-svg') && "
                   "!!document.querySelector('.hccs-token-strip .bars path')", 90, "the attention matrix and tokens")
        assert _explorer_state(page)["query"] == 0
        # click the fourth token of the strip (plotly's drag layer above the bars takes the click, as it
        # does for a person): it becomes the query
        bar = page.locator(".hccs-token-strip .bars .point path").nth(3)
        bar.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        bar.click(force=True)
        poll(page, "() => JSON.parse(document.querySelector('.hccs-explorer-readout .hccs-state').dataset.state).query === 3",
             30, "the clicked token to become the query")
        poll(page, """() => { const gd = document.querySelector('.hccs-attention-matrix');
                 return gd && gd.data && JSON.parse(gd.data[0].meta).query === 3; }""", 30, "the matrix to mark query 3")
        # your own sentence
        box = page.locator(".hccs-explorer input[type=text]").first
        box.fill("the plot is thin but the actors are wonderful")
        box.press("Enter")
        poll(page, "() => JSON.parse(document.querySelector('.hccs-explorer-readout .hccs-state').dataset.state)['own text']",
             30, "the explorer to show the typed sentence")
        poll(page, """() => { const gd = document.querySelector('.hccs-attention-matrix');
                 return gd && gd.data && (gd.data[0].y || []).some((t) => String(t).endsWith(':actors')); }""",
             30, "the matrix to show the typed sentence's tokens")
        # the layer's small multiples follow after a pause (off the key path, while the kernel is idle)
        poll(page, """() => { const m = document.querySelector('.hccs-attention-matrix');
                 const g = document.querySelector('.hccs-layer-patterns');
                 return m && g && g.data && g.data[0].z && g.data[0].z.length === m.data[0].y.length; }""",
             60, "the layer's patterns to show the typed sentence")
        # and a query of the typed sentence, for the picture
        page.locator(".hccs-token-strip .bars .point path").nth(7).click(force=True)
        poll(page, "() => JSON.parse(document.querySelector('.hccs-explorer-readout .hccs-state').dataset.state).query === 7",
             30, "the query to move to 'actors'")
        page.mouse.move(5, 5)  # plotly's toolbar shows only under the mouse
        page.wait_for_timeout(500)
        page.set_viewport_size({"width": 1680, "height": 1300})
        _widget_shot(page, ".hccs-explorer-detail", "explorer.png")
        errors = log_console_errors(page)
        assert errors == [], "the Log Console logged errors:\n" + json.dumps(errors, indent=1)
        assert not console.errors, "browser console errors:\n" + "\n".join(console.errors)
    except Exception:
        _fail_report(page, console, lab, "explorer.png")
        raise
    finally:
        page.close()
    assert _sha(nb_path) == before_file, f"running {notebook} in the browser modified the file"
