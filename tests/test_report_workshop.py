"""The workshop pieces of the library: the start-here widget and the install check."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import rel_entr
from scipy.stats import kendalltau

from hccs_lab import install_check as IC
from hccs_lab.capture import example_row
from hccs_lab.widgets.start_here import StartHere


@pytest.fixture(scope="module")
def row():
    return example_row()


def test_example_row_is_the_models_own_pre_softmax_logits(row):
    # independent path: the heads engineer's capture of the same text through the hccs_lab attention
    from hccs_lab.capture import attention_for_text

    ta = attention_for_text("minilm-l6", row.text, row.layer, row.head, max_len=64)
    assert ta.tokens == row.tokens
    ref = ta.logits[row.query][ta.mask[row.query]].astype(np.float64)
    np.testing.assert_allclose(row.logits, ref - ref.max(), atol=2e-4)


def test_evaluate_matches_an_independent_computation(row):
    lab = StartHere(row)
    B, S, D = 1200, 15, 70
    ev = lab.evaluate(B, S, D)
    # by hand: int8 grid with the row max on 127, the DESIGN.md i16+div formula, scipy's KL and tau
    x = np.clip(np.rint(row.logits / lab.scale + 127), -128, 127).astype(np.int64)
    d = np.minimum(127 - x, D)
    s = B - S * d
    p = s * (32767 // s.sum()) / 32767
    soft = np.exp(row.logits) / np.exp(row.logits).sum()
    np.testing.assert_array_equal(x.astype(np.int8), lab.x_int8)
    np.testing.assert_allclose(ev.hccs, p, rtol=0, atol=0)
    assert ev.kl == pytest.approx(float(rel_entr(soft, np.maximum(p, 2.0**-16)).sum()), rel=1e-9)
    assert ev.tau == pytest.approx(kendalltau(soft, p).statistic, abs=1e-12)


def test_invalid_parameters_are_named_and_not_drawn(row):
    lab = StartHere(row)
    ev = lab.evaluate(100, 10, 20)  # S*D = 200 > B
    assert not ev.valid and ev.hccs is None and ev.kl is None
    assert any("B - S*D" in p for p in ev.problems)
    assert "not valid" in lab.readout_html(ev)


def test_search_is_the_minimum_of_its_grid(row):
    lab = StartHere(row)
    D_values, S_values = range(8, 128, 24), range(1, 40, 6)
    best = lab.search(D_values, S_values)
    n = len(row.logits)
    Bmax = 32767 // n
    brute = min((lab.evaluate(Bmax, S, D).kl, S, D) for D, S in itertools.product(D_values, S_values) if S * D <= Bmax)
    assert (best.kl, best.params.S, best.params.D) == brute


def test_sliders_drive_the_figure_headless(row):
    lab = StartHere(row)
    fig = lab.figure
    before = np.array(fig.data[1].y)
    lab.sliders["S"].value = lab.params.S - 4  # what a slider drag does in the browser
    after = np.array(fig.data[1].y)
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, lab.evaluate(*lab.params.__dict__.values()).hccs)
    ev = lab.set_params(2000, 28, 70)
    assert (lab.sliders["B"].value, lab.sliders["S"].value, lab.sliders["D"].value) == (2000, 28, 70)
    assert f"{ev.kl:.4f}" in lab.readout.value
    np.testing.assert_array_equal(np.array(fig.data[1].y), ev.hccs)


def test_start_here_rejects_bad_rows():
    with pytest.raises(ValueError, match="one row"):
        StartHere(np.zeros((2, 8)))
    with pytest.raises(ValueError, match="NaN or inf"):
        StartHere(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="outside"):
        example_row(layer=9)


def test_install_check_passes_here_and_names_what_is_missing(monkeypatch, tmp_path):
    report = IC.install_check()
    assert report.ok, str(report)
    names = {c.name for c in report}
    assert {"torch", "jupyterlab-plotly", "all-MiniLM-L6-v2", IC.DATA_FILE, "g++"} <= names
    page = report._repr_html_()
    assert "<table" in page and "<td>ok</td>" in page
    assert not any(ord(ch) > 0x2000 for ch in page), "status marks must be plain text (no emoji)"
    assert "&#9989;" not in page and "&#10060;" not in page

    monkeypatch.setattr(IC, "_labextension_dirs", lambda: [tmp_path])
    monkeypatch.setattr(IC.shutil, "which", lambda name: None)
    broken = IC.install_check()
    assert not broken.ok
    missing = {c.name for c in broken.failed}
    assert missing == {"jupyterlab_widgets", "jupyterlab-plotly", "anywidget", "g++"}
    assert "MISSING" in str(broken) and "4 problem(s)" in str(broken)
    assert broken._repr_html_().count("<b>MISSING</b>") == 4
