"""Notebook widgets: the head explorer and the clip/slope playground (plotly FigureWidget + ipywidgets).

Imported lazily so that `import hccs_lab.widgets.<module>` does not pull in plotly for the others.
"""
from __future__ import annotations

__all__ = ["HeadExplorer", "ModelPicker", "ClipSlopePlayground", "BinnedRows"]


def __getattr__(name):
    if name in ("HeadExplorer", "ModelPicker"):
        from . import explorer

        return getattr(explorer, name)
    if name == "ClipSlopePlayground":
        from .playground import ClipSlopePlayground

        return ClipSlopePlayground
    if name == "BinnedRows":
        from .binned import BinnedRows

        return BinnedRows
    raise AttributeError(f"module 'hccs_lab.widgets' has no attribute {name!r}")
