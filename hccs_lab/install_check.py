"""Is this laptop ready for the workshop? One table: imports, widget front-end, bundled model and data, g++.

Run it as `python -m hccs_lab.install_check` (exit status 1 when something is missing) or call
`install_check()` in a notebook, where the result renders as an HTML table.
"""
from __future__ import annotations

import html
import importlib
import importlib.util
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .data.sentiment import DATA_FILE
from .errors import MissingError

IMPORTS = ("numpy", "scipy", "torch", "transformers", "plotly", "ipywidgets", "anywidget", "tqdm", "hccs_lab")
# JupyterLab front-end extensions the widgets need: the ipywidgets manager, plotly's FigureWidget
# renderer (an anywidget since plotly 6), and anywidget itself.
LAB_EXTENSIONS = {
    "jupyterlab_widgets": "@jupyter-widgets/jupyterlab-manager",
    "jupyterlab-plotly": "jupyterlab-plotly",
    "anywidget": "anywidget",
}


@dataclass(frozen=True)
class InstallCheck:
    group: str
    name: str
    ok: bool
    detail: str


class InstallReport(list):
    """A list of `InstallCheck` rows that prints as text and renders as a table in Jupyter."""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self)

    @property
    def failed(self) -> list[InstallCheck]:
        return [c for c in self if not c.ok]

    def __str__(self) -> str:
        w = max(len(f"{c.group}: {c.name}") for c in self)
        lines = [f"{'ok ' if c.ok else 'MISSING'} {(c.group + ': ' + c.name).ljust(w)}  {c.detail}" for c in self]
        lines.append("all good" if self.ok else f"{len(self.failed)} problem(s): see MISSING rows")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        # text marks, not emoji: a workshop laptop without an emoji font shows empty boxes for those
        rows = "".join(
            f"<tr><td>{'ok' if c.ok else '<b>MISSING</b>'}</td><td>{html.escape(c.group)}</td>"
            f"<td><code>{html.escape(c.name)}</code></td><td>{html.escape(c.detail)}</td></tr>"
            for c in self
        )
        verdict = "everything is in place" if self.ok else f"{len(self.failed)} problem(s)"
        return (f"<table class='hccs-install-check'><thead><tr><th></th><th>what</th><th>name</th>"
                f"<th>detail</th></tr></thead><tbody>{rows}</tbody></table><p><b>{verdict}</b></p>")


def _check_import(mod: str) -> InstallCheck:
    try:
        m = importlib.import_module(mod)
    except Exception as e:  # any import failure is the thing being reported
        return InstallCheck("import", mod, False, f"{type(e).__name__}: {e}")
    return InstallCheck("import", mod, True, str(getattr(m, "__version__", "")) or "imported")


def _labextension_dirs() -> list[Path]:
    """Where JupyterLab looks for prebuilt extensions (the environment's share/jupyter first)."""
    dirs = [Path(sys.prefix) / "share" / "jupyter" / "labextensions"]
    try:
        from jupyter_core.paths import jupyter_path

        dirs += [Path(p) for p in jupyter_path("labextensions")]
    except ImportError:
        pass
    seen, out = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def _check_extension(label: str, ext: str) -> InstallCheck:
    for d in _labextension_dirs():
        pkg = d / ext / "package.json"
        if pkg.is_file():
            return InstallCheck("widget front-end", label, True, str(d / ext))
    return InstallCheck("widget front-end", label, False,
                 f"JupyterLab extension {ext} not found in {', '.join(map(str, _labextension_dirs()))}")


def _check_model() -> InstallCheck:
    from .models.registry import minilm_path

    try:
        path = minilm_path()
    except MissingError as e:
        return InstallCheck("bundled model", "all-MiniLM-L6-v2", False, str(e))
    weights = [p.name for p in path.glob("*.safetensors")] + [p.name for p in path.glob("*.bin")]
    if not (path / "config.json").is_file() or not weights:
        return InstallCheck("bundled model", "all-MiniLM-L6-v2", False, f"{path} lacks config.json or weights")
    return InstallCheck("bundled model", "all-MiniLM-L6-v2", True, str(path))


def _check_data() -> InstallCheck:
    from .data.sentiment import data_path

    try:
        f = data_path()  # the very file hccs_lab.data reads
    except MissingError as e:
        return InstallCheck("bundled data", DATA_FILE, False, str(e))
    return InstallCheck("bundled data", DATA_FILE, True, f"{f} ({f.stat().st_size // 1024} KiB)")


def _check_gxx() -> InstallCheck:
    gxx = shutil.which("g++")
    if gxx is None:
        return InstallCheck("host build", "g++", False, "g++ not on PATH: the generated kernels cannot be compiled on the host")
    try:
        first = subprocess.run([gxx, "--version"], capture_output=True, text=True, timeout=20).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError) as e:
        return InstallCheck("host build", "g++", False, f"{gxx} does not run: {e}")
    return InstallCheck("host build", "g++", True, first)


def install_check() -> InstallReport:
    """Every check, in the order a workshop helper would walk through them."""
    rows = InstallReport(_check_import(m) for m in IMPORTS)
    rows += [_check_extension(label, ext) for label, ext in LAB_EXTENSIONS.items()]
    rows += [_check_model(), _check_data(), _check_gxx()]
    return rows


def main() -> int:
    report = install_check()
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
