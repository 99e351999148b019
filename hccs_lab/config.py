"""Process-wide settings read from the environment, in one place."""
from __future__ import annotations

import os
from pathlib import Path


def quick_mode() -> bool:
    """True when HCCS_LAB_QUICK is set (as `make test` does): notebooks and long runs use small subsets."""
    return os.environ.get("HCCS_LAB_QUICK", "").strip().lower() not in ("", "0", "false", "no")


def cache_dir() -> Path:
    """Where trained weights and captured banks are kept (HCCS_LAB_CACHE, else ~/.cache/hccs-lab)."""
    root = Path(os.environ.get("HCCS_LAB_CACHE") or Path.home() / ".cache" / "hccs-lab")
    root.mkdir(parents=True, exist_ok=True)
    return root
