"""Files: atomic writes, and the committed benchmark results notebooks and reports read.

Every file hccs_lab writes appears whole or not at all: a temp file in the target's folder is
written, then renamed over the target (`os.replace` is atomic on one file system); on any failure
the temp file is removed and the old target, if any, is left untouched.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from .errors import InputError, MissingError


@contextmanager
def atomic_open(path, mode: str = "w") -> Iterator[IO]:
    """Open a temp file beside `path` for writing; it replaces `path` when the block succeeds."""
    if mode not in ("w", "wb"):
        raise InputError(f"atomic_open writes only ('w' or 'wb'), got mode {mode!r}")
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; ours are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> Path:
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def write_bytes(path, data: bytes) -> Path:
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


RESULTS_ENV = "HCCS_LAB_RESULTS"


def results_dir() -> Path:
    """The folder of committed full-run results: $HCCS_LAB_RESULTS, else `benchmarks/results/` of the checkout.

    The checkout is found from the working directory upwards (notebooks run in `notebooks/`), then
    from this package's source folder (an editable install). A wheel install has neither: point
    HCCS_LAB_RESULTS at a copy of the results folder.
    """
    env = os.environ.get(RESULTS_ENV)
    if env:
        return Path(env).expanduser()
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parent]
    for start in starts:
        for d in (start, *start.parents):
            cand = d / "benchmarks" / "results"
            if cand.is_dir() and (d / "hccs_lab").is_dir():
                return cand
    return Path("benchmarks") / "results"


def committed_result(name: str, required: bool = True) -> Path | None:
    """Path of a committed result file such as "qat_minilm-l6.json"; a clear MissingError when absent.

    With `required=False` a missing file gives None instead.
    """
    path = results_dir() / name
    if path.is_file():
        return path
    if not required:
        return None
    raise MissingError(
        f"committed result {name} not found in {path.parent} (it is written by the full benchmark run in "
        f"benchmarks/; set {RESULTS_ENV} to the folder that holds it, or run the benchmark to create it)"
    )
