"""The design review of one calibrated model: a single self-contained, offline HTML file.

`build_context` runs the pipeline once (load, capture, calibrate or read a calibration); each
section builder in `sections` turns the context into HTML fragments and plotly figures; `html`
renders them into one file with plotly.js inlined once. `notebooks/06_design_review.ipynb` displays
the same sections. Every cycle and throughput figure is an emulator cycle-model estimate.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .context import Context, ReportSettings, build_context, check_settings, read_qat_results
from .html import display_sections, html_table, paragraph, render_html, save_html, show, write_atomic
from .kernel_choice import KL_TOLERANCE, KernelChoice, choose_kernel, cpp_excerpt, head_outputs
from .context import Section
from .deploy import section_deploy
from .sections import (SECTIONS, build_sections, rank_rows, section_calibration, section_kernel, section_logit_spread,
                       section_model_and_data, section_qat, section_rank, section_throughput)


def write_report(settings: ReportSettings, out, progress: bool = True) -> Path:
    """The whole review for `settings`, written to `out` (nothing is written if any step fails)."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; give a file name such as {out / 'review.html'}")
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--out {out} must end in .html")
    ctx = build_context(settings, progress=progress)
    sections = build_sections(ctx, progress=progress)
    return write_atomic(out, render_html(sections, settings))


__all__ = ["ReportSettings", "Context", "build_context", "check_settings", "read_qat_results", "Section",
           "SECTIONS", "build_sections", "render_html", "write_report", "save_html", "display_sections", "show",
           "html_table", "paragraph", "rank_rows", "section_calibration", "section_kernel", "section_logit_spread",
           "section_deploy", "section_model_and_data", "section_qat", "section_rank", "section_throughput", "choose_kernel", "KernelChoice", "KL_TOLERANCE", "cpp_excerpt", "head_outputs"]
