"""Harness for the real-browser tests: a JupyterLab server on loopback and Debian's headless Chromium.

Both are started fresh per test session and torn down even on failure: the server runs in its own
process group (killed as a group, so the kernels it started go too), the browser in a throwaway
profile. Nothing here reaches the network: the server listens on 127.0.0.1 only and the notification
/ news fetches of JupyterLab are switched off through a throwaway user-settings directory.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import shutil
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "tests" / "artifacts"
DOCS = REPO / "docs"
# The README's screenshots are refreshed only on request, so `make test` leaves the tree clean:
# HCCS_LAB_UPDATE_DOCS=1 make test
UPDATE_DOCS = os.environ.get("HCCS_LAB_UPDATE_DOCS", "") == "1"


def publish(shot: Path) -> None:
    """Copy a screenshot artifact into docs/ when the README's pictures are being refreshed."""
    if UPDATE_DOCS:
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS / shot.name)
CHROMIUM = os.environ.get("HCCS_LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SERVER_START_TIMEOUT_S = 60

# JupyterLab user settings for the test server: no autosave (the run must not write outputs into
# the committed notebooks), no update check or news fetch (no traffic leaves the machine).
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    # start the notebook's own kernel without the "Select Kernel" dialog; render every cell (the
    # default windowing detaches cells scrolled out of view, widgets included)
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "autoStartDefaultKernel": True, "windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "checkForUpdates": False, "fetchNews": "false"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LabServer:
    url: str
    token: str
    proc: subprocess.Popen
    log_path: Path

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}&reset"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def _wait_until_up(url: str, token: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"jupyter lab did not answer within {SERVER_START_TIMEOUT_S}s:\n"
                       f"{log.read_text(errors='replace')[-3000:]}")


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@contextmanager
def lab_server(root_dir: Path = NOTEBOOKS, quick: bool = True, extra_env: dict | None = None):
    """JupyterLab on a free loopback port with a random token (quick mode unless `quick=False`); yields a LabServer."""
    token = secrets.token_hex(16)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hccs-lab-server-") as tmp:
        tmp = Path(tmp)
        settings = tmp / "user-settings"
        for rel, value in LAB_SETTINGS.items():
            f = settings / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(value))
        # the notebooks remember the chosen head in a session file: a throwaway one, so a test run
        # neither reads nor changes the one a person uses
        env = dict(os.environ, HCCS_LAB_QUICK="1" if quick else "", HF_HUB_OFFLINE="1",
                   JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
                   JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), HCCS_LAB_SESSION=str(tmp / "session.json"))
        env.update(extra_env or {})
        jupyter = Path(sys.executable).with_name("jupyter")
        log = tmp / "server.log"
        cmd = [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
               "--ServerApp.port_retries=0", "--LabApp.news_url=", "--LabApp.expose_app_in_browser=True",
               # the extension manager would query PyPI; the read-only one lists what is installed
               "--LabApp.extension_manager=readonly",
               # opening a notebook writes a checkpoint; keep it out of the repository
               f"--FileCheckpoints.checkpoint_dir={tmp / 'checkpoints'}"]
        if os.geteuid() == 0:  # CI containers run as root
            cmd.append("--allow-root")
        with open(log, "wb") as logf:
            proc = subprocess.Popen(cmd, cwd=root_dir, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_up(url, token, proc, log)
            yield LabServer(url=url, token=token, proc=proc, log_path=log)
        finally:
            _kill_group(proc)


@contextmanager
def chromium_context(**kwargs):
    """A headless Chromium (Debian's, through Playwright) with a throwaway profile."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="hccs-lab-chromium-") as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1680, "height": 1050}, **kwargs)
        try:
            yield ctx
        finally:
            ctx.close()


# ---- driving a notebook ------------------------------------------------------------------------

# Console messages that a healthy JupyterLab session prints at level "error", matched as substrings.
# Keep this list short and explained; anything else fails the test.
BENIGN_CONSOLE_ERRORS: tuple[str, ...] = ()


class ConsoleLog:
    """Every console error and uncaught page exception of a page, minus the documented benign ones."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.all: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _on_console(self, msg):
        self.all.append(f"{msg.type}: {msg.text}")
        if msg.type == "error" and not any(b in msg.text for b in BENIGN_CONSOLE_ERRORS):
            self.errors.append(f"console.error: {msg.text}")


def poll(page, js: str, timeout_s: float, what: str, arg=None):
    """Evaluate `js` (with `arg`) in the page until it returns something truthy; TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(js, arg)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f}s for {what}")
        page.wait_for_timeout(250)


KERNEL_IDLE_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const sc = w && w.sessionContext;
  return !!(sc && sc.isReady && sc.session && sc.session.kernel && sc.session.kernel.status === 'idle');
}"""

# every code cell has run (an execution count, none pending) and the kernel is idle again
ALL_CELLS_DONE_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  if (!w || !w.content || !w.sessionContext.session) return false;
  if (w.sessionContext.session.kernel.status !== 'idle') return false;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  return cells.length > 0 && cells.every(c => c.model.executionCount !== null);
}"""

CELL_ERRORS_JS = """() => Array.from(document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
  .map(e => e.innerText).filter(t => /Error|Traceback/.test(t))"""


def open_and_run_all(page, server: LabServer, notebook: str, timeout_s: float = 180.0) -> None:
    """Open a notebook in JupyterLab, wait for its kernel, Run > Run All Cells, wait until all ran."""
    page.goto(server.notebook_url(notebook))
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    poll(page, KERNEL_IDLE_JS, 60, f"the kernel of {notebook} to be idle")
    # the Run menu, as a person would: Run > Run All Cells
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    poll(page, ALL_CELLS_DONE_JS, timeout_s, f"all cells of {notebook} to finish")
    errors = page.evaluate(CELL_ERRORS_JS)
    if errors:
        raise AssertionError(f"{notebook} raised while running in JupyterLab:\n" + "\n".join(errors)[:3000])


def plot_state(page, plot_class: str, trace_name: str) -> dict:
    """The y values of a named trace (plotly's graph div data) and the SVG path it drew."""
    return page.evaluate(
        """([cls, name]) => {
          const host = document.querySelector('.' + cls);
          if (!host) return null;
          const gd = host.classList.contains('js-plotly-plot') ? host : host.querySelector('.js-plotly-plot');
          if (!gd || !gd.data) return null;
          const i = gd.data.findIndex(t => t.name === name);
          if (i < 0) return {names: gd.data.map(t => t.name)};
          const traces = gd.querySelectorAll('.scatterlayer .trace');
          const path = traces[i] ? traces[i].querySelector('path.js-line') : null;
          return {names: gd.data.map(t => t.name), y: Array.from(gd.data[i].y || []).map(Number),
                  d: path ? path.getAttribute('d') : null,
                  svgs: gd.querySelectorAll('.main-svg').length};
        }""",
        [plot_class, trace_name],
    )


# JupyterLab's Log Console: outputs of the kernel that belong to no cell (an exception raised in a
# widget callback, a print from one) are logged per notebook by the logger registry.
LOG_CONSOLE_JS = """() => {
  const app = window.jupyterapp;
  const reg = app.pluginRegistry || app;
  const plugins = reg._plugins || reg._pluginMap;
  const p = plugins && (plugins.get ? plugins.get('@jupyterlab/logconsole-extension:plugin')
                                    : plugins['@jupyterlab/logconsole-extension:plugin']);
  const registry = p && p.service;
  if (!registry) return null;
  const out = [];
  for (const logger of registry.getLoggers()) {
    const m = logger.outputAreaModel;
    for (let i = 0; i < m.length; i++) {
      const o = m.get(i);
      const j = o.toJSON();
      const text = j.text || j.evalue || JSON.stringify(j.data || j).slice(0, 300);
      out.push({source: logger.source, level: o.level, text: String(text).slice(0, 500)});
    }
  }
  return out;
}"""


def log_console(page) -> list[dict]:
    """Every message JupyterLab's Log Console holds for the open notebooks ({source, level, text})."""
    entries = page.evaluate(LOG_CONSOLE_JS)
    if entries is None:
        raise RuntimeError("JupyterLab's logger registry was not found (is expose_app_in_browser on?)")
    return entries


def log_console_errors(page) -> list[dict]:
    return [e for e in log_console(page) if e["level"] in ("error", "critical")]


def slider_handle(page, description: str):
    """The keyboard-operable handle (role=slider) of the ipywidgets slider with this description."""
    slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=description))
    return slider.locator("[role=slider]").first
