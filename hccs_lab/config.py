"""Process-wide settings, read from the environment in one place.

`quick_mode()` (HCCS_LAB_QUICK, set by `make test`) and `cache_dir()` (HCCS_LAB_CACHE, else
~/.cache/hccs-lab) are read when asked, so a test can change them. `offline()` is the one place
that tells Hugging Face libraries never to reach the hub; every loader calls it before it imports
transformers. `torch_threads()` is what the command line sets; the library itself never changes the
process's thread count.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def quick_mode() -> bool:
    """True when HCCS_LAB_QUICK is set (as `make test` does): notebooks and long runs use small subsets."""
    return os.environ.get("HCCS_LAB_QUICK", "").strip().lower() not in ("", "0", "false", "no")


def cache_dir() -> Path:
    """Where trained weights and captured banks are kept (HCCS_LAB_CACHE, else ~/.cache/hccs-lab)."""
    root = Path(os.environ.get("HCCS_LAB_CACHE") or Path.home() / ".cache" / "hccs-lab")
    root.mkdir(parents=True, exist_ok=True)
    return root


def offline() -> None:
    """Forbid hub downloads for this process (before transformers or huggingface_hub is imported).

    Everything hccs-lab loads ships in installed packages; a download attempt would be a bug, and on
    a workshop laptop without network it would hang. Values the user set explicitly are kept.
    """
    for var in _OFFLINE_VARS:
        os.environ.setdefault(var, "1")


def torch_threads(requested: int | None = None) -> int:
    """Threads for torch: `requested`, else 2, else 1 when the load average already exceeds the cores.

    On a shared, oversubscribed machine two OpenMP threads spend their time waiting for each other at
    every barrier (measured here: 1.4 s vs 0.23 s per tiny training step at load 9 on 2 cores), so one
    thread is several times faster; on an idle machine two are faster.
    """
    if requested is not None:
        if int(requested) < 1:
            raise InputError(f"threads must be >= 1, got {requested}")
        return int(requested)
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] > cores
    except OSError:
        busy = False
    return 1 if busy else min(2, cores)
