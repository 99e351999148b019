"""Fixtures for the real-browser tests: one JupyterLab server and one Chromium per session."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lab import chromium_context, lab_server  # noqa: E402


@pytest.fixture(scope="session")
def lab():
    with lab_server() as server:
        yield server


@pytest.fixture(scope="module")  # Playwright's sync API keeps its loop marked running while open: not past this module
def browser():
    with chromium_context() as ctx:
        yield ctx
