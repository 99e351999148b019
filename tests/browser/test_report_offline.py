"""The design-review HTML opens in Chromium with the network cut off and every plot renders."""
from __future__ import annotations


from lab import ARTIFACTS, ConsoleLog, poll, publish

from hccs_lab.report import ReportSettings, write_report


def test_review_html_renders_offline(browser, tmp_path):
    settings = ReportSettings.quick(granularities=("head",))
    out = write_report(settings, tmp_path / "review.html", progress=False)
    page = browser.new_page()
    console = ConsoleLog(page)
    left_machine: list[str] = []

    def block(route):
        # file:// is the report itself; anything else would be a request leaving the machine
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            left_machine.append(route.request.url)
            route.abort()

    page.route("**/*", block)
    try:
        page.goto(out.as_uri(), wait_until="load", timeout=60_000)
        n_plots = page.evaluate("() => document.querySelectorAll('.plotly-graph-div').length")
        assert n_plots >= 4
        poll(page, """(n) => Array.from(document.querySelectorAll('.plotly-graph-div'))
                          .filter(d => d.querySelector('.main-svg')).length === n""",
             30, "every plot to render", arg=n_plots)
        # the plots hold data, not just an empty frame
        traces = page.evaluate("() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => (d.data || []).length)")
        assert all(t > 0 for t in traces), traces
        sections = page.evaluate("() => Array.from(document.querySelectorAll('section.hccs-section')).map(s => s.id)")
        assert sections == ["model", "spread", "calibration", "rank", "kernel", "throughput", "deploy", "qat"]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1280, "height": 1400})
        page.locator("#spread").scroll_into_view_if_needed()
        shot = ARTIFACTS / "report.png"
        page.screenshot(path=str(shot))
        publish(shot)
        assert not console.errors, "browser console errors:\n" + "\n".join(console.errors)
    finally:
        page.close()
    assert left_machine == [], f"the report tried to reach the network: {left_machine}"
