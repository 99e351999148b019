"""What the notebooks share (hccs_lab.session): the chosen head, the bank cache, your calibration file."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hccs_lab import session as S
from hccs_lab.calibrate import Calibration, calibrate
from hccs_lab.capture import LogitBank
from hccs_lab.core import HCCSParams


def fake_bank(model="fake", layers=2, heads=3, rows=80, n=32, seed=0) -> LogitBank:
    rng = np.random.default_rng(seed)
    lg = rng.normal(0, 2, (layers, rows, heads, n)).astype(np.float32)
    mask = np.ones((rows, n), bool)
    mask[:, n // 2:] = rng.random((rows, n - n // 2)) < 0.7
    return LogitBank(model, 4, n, np.where(mask[None, :, None, :], lg, 0.0).astype(np.float32), mask,
                     np.zeros(rows, np.int64), np.zeros(rows, np.int64))


def test_the_chosen_head_round_trips_and_falls_back_to_the_default(tmp_path):
    path = tmp_path / "s.json"
    assert S.chosen_head(("minilm-l6", 1, 4), path=path) == S.ChosenHead("minilm-l6", 1, 4, "default")
    S.remember_head("fake", 1, 2, path=path)
    rec = json.loads(path.read_text())
    assert (rec["model"], rec["layer"], rec["head"]) == ("fake", 1, 2) and "updated" in rec
    bank = fake_bank()
    assert S.chosen_head(("minilm-l6", 0, 0), bank, path=path) == S.ChosenHead("fake", 1, 2, "session file")
    # a remembered head that the given bank does not have is not used
    assert S.chosen_head(("fake", 0, 0), fake_bank(layers=1), path=path).source == "default"
    assert S.chosen_head(("other", 0, 0), {"other": bank}, path=path).source == "default"
    path.write_text("{not json")
    assert S.chosen_head(("fake", 0, 1), path=path).source == "default"
    with pytest.raises(ValueError):
        S.remember_head("fake", -1, 0, path=path)


def test_the_session_file_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(S.SESSION_ENV, str(tmp_path / "elsewhere.json"))
    S.remember_head("fake", 0, 1)
    assert S.read_session()["head"] == 1 and (tmp_path / "elsewhere.json").is_file()


def test_a_capture_is_cached_per_model_texts_and_length(tmp_path, monkeypatch):
    import hccs_lab.capture as C

    monkeypatch.setenv("HCCS_LAB_CACHE", str(tmp_path))
    calls = []

    def fake_capture(model, texts, max_len=128, **kw):
        calls.append((model, tuple(texts), max_len))
        return fake_bank(model=model, n=max_len)

    monkeypatch.setattr(C, "capture_logits", fake_capture)
    S._MEMORY.clear()
    a = S.cached_capture("fake", ["a b", "c"], max_len=32)
    S._MEMORY.clear()  # a new process: read back from disk, no second capture
    b = S.cached_capture("fake", ["a b", "c"], max_len=32)
    assert len(calls) == 1 and np.array_equal(a.logits, b.logits) and b.model_name == "fake"
    S.cached_capture("fake", ["a b", "c"], max_len=16)
    S.cached_capture("fake", ["a b", "d"], max_len=32)
    assert len(calls) == 3  # other texts or another length: another capture
    assert len(list((tmp_path / "banks").glob("fake-*.npz"))) == 3
    banks = S.Banks(["fake"], ["a b", "c"], max_len=32)
    assert list(banks) == ["fake"] and banks["fake"] is S.cached_capture("fake", ["a b", "c"], max_len=32)
    with pytest.raises(KeyError):
        banks["nope"]


def test_saving_one_head_updates_the_calibration_file_atomically(tmp_path):
    bank = fake_bank()
    cal = calibrate(bank, 32, granularity="layer", progress=False)
    path = tmp_path / "my_calibration_fake.json"
    S.save_head_params(path, cal, 1, 2, HCCSParams(300, 5, 40), 0.05, 0.123)
    back = Calibration.from_json(path)
    assert back.params(1, 2) == HCCSParams(300, 5, 40) and back.scale(1, 2) == 0.05
    assert back.entry(1, 2).kl_after == pytest.approx(0.123) and back.entry(1, 2).kl_before == cal.entry(1, 2).kl_before
    assert back.granularity == "head"  # one head of a per-layer set changed: the file is per head now
    for l, h in bank.heads():
        if (l, h) != (1, 2):
            assert back.params(l, h) == cal.params(l, h)
    # parameters the file's target refuses are not written, and the old file stays
    before = path.read_text()
    with pytest.raises(ValueError, match="aie4ml"):
        S.save_head_params(path, back, 0, 0, HCCSParams(300, 5, 60), 0.05, 0.1)  # B - S*D = 0
    assert path.read_text() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_calibration_file_prefers_yours(tmp_path):
    (tmp_path / "calibration_fake.json").write_text("{}")
    assert S.calibration_file("fake", tmp_path).name == "calibration_fake.json"
    S.user_calibration_path("fake", tmp_path).write_text("{}")
    assert S.calibration_file("fake", tmp_path).name == "my_calibration_fake.json"
