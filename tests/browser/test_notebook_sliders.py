"""Drive the slider notebooks in a real JupyterLab in Debian's headless Chromium.

For each notebook: Run All Cells, read the KL readout and the plotted HCCS curve, move the slope
slider with the keyboard, and check that both changed, that the slider really moved, that the
console stayed clean, and that the notebook file on disk was not touched. A screenshot of the
widget after the move is kept in tests/artifacts/ (and, for the playground, docs/ for the README).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest

from lab import ARTIFACTS, KERNEL_IDLE_JS, NOTEBOOKS, ConsoleLog, open_and_run_all, plot_state, poll, publish, slider_handle

KEY_PRESSES = 5


@dataclass(frozen=True)
class SliderCase:
    notebook: str
    readout_class: str
    plot_class: str
    screenshot: str
    publish: bool  # copy the screenshot into docs/ for the README


CASES = [
    SliderCase("02_clip_slope_playground.ipynb", "hccs-kl-readout", "hccs-playground-plot", "playground.png", True),
    SliderCase("00_start_here.ipynb", "hccs-start-readout", "hccs-start-plot", "start_here.png", False),
]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", CASES, ids=[c.notebook.split("_")[0] for c in CASES])
def test_slope_slider_moves_readout_and_curve(lab, browser, case):
    nb_path = NOTEBOOKS / case.notebook
    before_file = _sha(nb_path)
    page = browser.new_page()
    console = ConsoleLog(page)
    try:
        open_and_run_all(page, lab, case.notebook)
        readout_sel = f".{case.readout_class}"
        poll(page, f"() => {{ const e = document.querySelector('{readout_sel}'); return !!e && e.innerText.includes('KL'); }}",
             60, "the KL readout")
        poll(page, f"() => !!document.querySelector('.{case.plot_class} .main-svg')", 60, "the plot to render")
        before = plot_state(page, case.plot_class, "HCCS")
        assert before and "HCCS" in before["names"] and "softmax" in before["names"], before
        assert before["y"] and before["d"], f"the HCCS trace has no data or no drawn path: {before}"
        before_text = page.inner_text(readout_sel)

        handle = slider_handle(page, "slope S")
        handle.scroll_into_view_if_needed()
        s0 = float(handle.get_attribute("aria-valuenow"))
        # lowering S keeps every setting valid (B - S*D only grows); at S = 0 there is only up
        key = "ArrowLeft" if s0 >= KEY_PRESSES else "ArrowRight"
        handle.focus()
        for _ in range(KEY_PRESSES):
            page.keyboard.press(key)
        expected = s0 - KEY_PRESSES if key == "ArrowLeft" else s0 + KEY_PRESSES
        poll(page, f"() => Number(document.activeElement.getAttribute('aria-valuenow')) === {expected}", 10,
             f"the slope slider to reach {expected}")
        poll(page, f"() => document.querySelector('{readout_sel}').innerText !== {before_text!r}", 30,
             "the KL readout to change after the slider moved")
        # every key press is a kernel round trip: wait until the readout shows the final slope
        # (both widgets print "S=<value>") and the kernel is idle, so the screenshot is the end state
        poll(page, f"() => /\\bS={int(expected)}(?!\\d)/.test(document.querySelector('{readout_sel}').innerText)", 30,
             f"the KL readout to show S={int(expected)}")
        poll(page, KERNEL_IDLE_JS, 30, "the kernel to be idle after the slider moved")
        poll(page, """([cls, old]) => {
                 const host = document.querySelector('.' + cls);
                 const gd = host && (host.classList.contains('js-plotly-plot') ? host : host.querySelector('.js-plotly-plot'));
                 const t = gd && gd.data && gd.data.find(t => t.name === 'HCCS');
                 if (!t) return false;
                 const y = Array.from(t.y).map(Number);
                 return y.length !== old.length || y.some((v, i) => v !== old[i]);
             }""", 30, "the HCCS curve to change after the slider moved", arg=[case.plot_class, before["y"]])
        page.wait_for_timeout(500)  # let plotly finish redrawing before reading the SVG
        after = plot_state(page, case.plot_class, "HCCS")
        after_text = page.inner_text(readout_sel)

        assert after_text != before_text
        assert "KL" in after_text
        assert after["y"] != before["y"], "HCCS data did not change"
        assert after["d"] != before["d"], "the drawn HCCS path did not change"
        assert f"{int(expected)}" in page.inner_text(".widget-slider:has(.widget-label:text-is('slope S')) .widget-readout")

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / case.screenshot
        widget = page.locator(f".jp-OutputArea-output:has(.{case.plot_class})").first
        widget.scroll_into_view_if_needed()
        widget.screenshot(path=str(shot))
        if case.publish:
            publish(shot)
        assert not console.errors, "browser console errors:\n" + "\n".join(console.errors)
    except Exception:
        # keep what the browser showed and what the server said, for the failure report
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"FAILED-{case.screenshot}"), full_page=True)
        print("console:\n" + "\n".join(console.all[-40:]))
        print("server log tail:\n" + lab.log_tail())
        raise
    finally:
        page.close()
    assert _sha(nb_path) == before_file, f"running {case.notebook} in the browser modified the file"
