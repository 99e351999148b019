"""Widget update methods against direct computations with hccs_lab.surrogate and hccs_lab.metrics."""
from __future__ import annotations

import html
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hccs_lab import metrics
from hccs_lab.capture import attention_for_text, capture_logits
from hccs_lab.data import load_split
from hccs_lab.models import load
from hccs_lab.core import HCCSParams, choose_scale, hccs_int, quantize_logits, softmax, target_violations
from hccs_lab.widgets.figures import from_typed_array
from hccs_lab.widgets.playground_view import CROSS, RING
from hccs_lab.widgets import ClipSlopePlayground, HeadExplorer
from hccs_lab.core import VARIANTS
from hccs_lab.widgets.binned import BinnedRows
from hccs_lab.widgets.explorer import METRICS, centered_histogram, rank_profile
from hccs_lab.widgets.playground import INT_CLASS, PLOT_CLASS, READOUT_CLASS
from hccs_lab.widgets.ranges import slider_bounds, start_params

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def minilm():
    return load("minilm-l6")


@pytest.fixture(scope="module")
def bank(minilm):
    return capture_logits(minilm, load_split("test").texts[:10], max_len=48, batch_size=5, progress=False)


def direct(rows_logits, mask, params, scale, variant):
    """The playground's definitions written out with the reference functions."""
    out, recip = variant.split("-")
    p = softmax(rows_logits.astype(np.float64), mask=mask)
    x = quantize_logits(rows_logits, scale, mask=mask)
    ints = hccs_int(x, params, out=out, recip=recip, mask=mask)
    q = ints / (32767.0 if out == "i16" else 255.0)
    return p, ints, q


def test_binned_metrics_equal_direct_computation_for_every_variant(bank):
    rows = bank[1, 4]
    scale = choose_scale(rows.logits, mask=rows.mask)
    br = BinnedRows(rows.logits, rows.mask, scale)
    for variant in VARIANTS:
        for params in (HCCSParams(680, 3, 40), HCCSParams(682, 31, 22), HCCSParams(1, 0, 0), HCCSParams(200, 2, 100)):
            p, ints, q = direct(rows.logits, rows.mask, params, scale, variant)
            pm = br.point(params, variant)
            np.testing.assert_allclose(pm.kl_rows, metrics.kl(p, q, rows.mask), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(pm.tau_rows, metrics.kendall_tau(p, q, rows.mask), rtol=1e-9, atol=1e-12)
            np.testing.assert_array_equal(br.key_probs(pm), np.where(rows.mask, q, 0))
            for r in (0, len(rows) - 1):
                got_int, _ = br.key_output(pm, r)
                np.testing.assert_array_equal(got_int, ints[r])


def test_kl_map_equals_mean_kl_of_i16_div_everywhere_it_is_valid(bank):
    rows = bank[0, 2]
    scale = choose_scale(rows.logits, mask=rows.mask)
    br = BinnedRows(rows.logits, rows.mask, scale)
    B = 300
    m = br.kl_map(B)
    S, D = np.meshgrid(np.arange(128), np.arange(128), indexing="ij")
    assert np.array_equal(np.isfinite(m), S * D <= B)
    for s, d in ((0, 0), (1, 127), (3, 100), (5, 60), (12, 25), (127, 2), (10, 30)):  # (5,60), (10,30): B = S*D
        p, _, q = direct(rows.logits, rows.mask, HCCSParams(B, s, d), scale, "i16-div")
        assert m[s, d] == pytest.approx(metrics.kl(p, q, rows.mask).mean(), rel=1e-9)
    assert np.isnan(br.kl_map(700)).all()  # n*B > 32767 for n = 48


@pytest.fixture()
def playground(bank):
    return ClipSlopePlayground(bank[2, 5], params=(600, 4, 50), title="L2 H5")


def test_playground_update_shows_what_the_direct_computation_gives(playground, bank):
    rows = bank[2, 5]
    pg = playground
    for variant in ("i16-div", "u8-clb"):
        pg.set_variant(variant)
        pg.set_row(3)
        st = pg.set_params(S=7, D=40)
        params = HCCSParams(600, 7, 40)
        p, ints, q = direct(rows.logits, rows.mask, params, pg.scale, variant)
        kl_rows = metrics.kl(p, q, rows.mask)
        assert st.valid and st.params == (600, 7, 40)
        assert st.kl_mean == pytest.approx(kl_rows.mean(), rel=1e-9)
        assert st.kl_p95 == pytest.approx(np.percentile(kl_rows, 95), rel=1e-9)
        assert st.kendall_tau == pytest.approx(metrics.kendall_tau(p, q, rows.mask).mean(), rel=1e-9)
        assert st.top1 == pytest.approx(metrics.topk_overlap(p, q, 1, rows.mask).mean())
        assert st.top5 == pytest.approx(metrics.topk_overlap(p, q, 5, rows.mask).mean())
        # the probability figure: row 3, keys in softmax-rank order
        valid = np.nonzero(rows.mask[3])[0]
        order = valid[np.argsort(-p[3, valid], kind="stable")]
        sm, hc = pg.prob_fig.data
        assert (sm.name, hc.name) == ("softmax", "HCCS")
        np.testing.assert_allclose(sm.y, p[3, order], rtol=1e-12)
        np.testing.assert_allclose(hc.y, q[3, order], rtol=1e-12)
        np.testing.assert_array_equal(hc.customdata, ints[3, order])
        np.testing.assert_array_equal(sm.x, np.arange(1, valid.size + 1))
        assert f"{kl_rows.mean():.5f}" in pg.readout.value
        assert INT_CLASS in pg.readout.value
        assert " ".join(str(int(v)) for v in ints[3, order][:8]) in pg.readout.value
    # the KL map with the current point marked
    m = pg.kl_map()
    p, _, q = direct(rows.logits, rows.mask, HCCSParams(600, 7, 40), pg.scale, "i16-div")
    assert m[7, 40] == pytest.approx(metrics.kl(p, q, rows.mask).mean(), rel=1e-9)
    shown = from_typed_array(pg.map_fig.data[0].z)
    np.testing.assert_allclose(shown, np.log10(m.T), equal_nan=True)
    marker = pg.map_fig.layout.images[0]
    assert (marker.x, marker.y) == (7, 40)


def test_sliders_drive_the_update_and_carry_the_agreed_names(playground, bank):
    pg = playground
    assert [s.description for s in (pg.d_slider, pg.s_slider, pg.b_slider, pg.scale_slider)] == [
        "clip D", "slope S", "base B", "scale"]
    assert READOUT_CLASS == "hccs-kl-readout" and READOUT_CLASS in pg.readout._dom_classes
    assert PLOT_CLASS == "hccs-playground-plot" and PLOT_CLASS in pg.prob_fig._dom_classes
    before = pg.state.kl_mean
    pg.s_slider.value = 9
    assert pg.state.params == (600, 9, 50) and pg.state.valid and pg.state.kl_mean != before
    pg.variant_dropdown.value = "u8-div"
    assert pg.state.variant == "u8-div"
    rows = bank[2, 5]
    pg.scale_slider.value = pg.scale_slider.value * 1.5
    p, _, q = direct(rows.logits, rows.mask, HCCSParams(600, 9, 50), pg.scale, "u8-div")
    assert pg.state.kl_mean == pytest.approx(metrics.kl(p, q, rows.mask).mean(), rel=1e-9)


def test_invalid_parameters_are_shown_as_invalid_never_clamped(playground):
    pg = playground
    good = pg.set_params(B=600, S=4, D=50)
    shown_y = np.array(pg.prob_fig.data[1].y)
    st = pg.set_params(S=20, D=40)  # 20*40 = 800 > B
    assert not st.valid
    assert st.violations == HCCSParams(600, 20, 40).violations(pg.n) and len(st.violations) == 1
    assert (pg.s_slider.value, pg.d_slider.value) == (20, 40)  # the sliders stay where they were put
    assert "invalid" in pg.readout.value
    for v in st.violations:
        assert html.escape(v) in pg.readout.value
    np.testing.assert_array_equal(pg.prob_fig.data[1].y, shown_y)  # the plot keeps the last valid state
    assert st.kl_mean == good.kl_mean and st.shown_params == (600, 4, 50)
    marker = pg.map_fig.layout.images[0]
    assert (marker.x, marker.y) == (20, 40) and marker.source == CROSS
    st = pg.set_params(B=0)
    assert not st.valid and any("B = 0 < 1" in v for v in st.violations)
    st = pg.set_params(B=32767 // pg.n + 1)  # past n*B <= 32767: shown as such, and the slider widens to show it
    assert not st.valid and any("n*B" in v for v in st.violations) and pg.b_slider.value == 32767 // pg.n + 1
    st = pg.set_params(B=600, S=4, D=50)
    assert st.valid and pg.map_fig.layout.images[0].source == RING
    with pytest.raises(ValueError, match="variant"):
        pg.set_variant("i32-div")


def test_the_start_is_a_valid_point_to_drag_from_not_the_optimum(bank):
    pg = ClipSlopePlayground(bank[0, 0])
    B, S, D = pg.params
    assert (B, S, D) == tuple(start_params(pg.n).as_dict().values()) and pg.state.deployable
    m = pg.kl_map(B)
    assert m[S, D] > 1.5 * np.nanmin(m)  # exercise 1 is left to do


def test_slider_ranges_follow_the_valid_region(playground):
    pg = playground
    for B, S, D in ((600, 4, 50), (600, 12, 36), (300, 0, 90), (682, 31, 22)):
        st = pg.set_params(B=B, S=S, D=D)
        assert st.valid
        b = slider_bounds(B, S, D, pg.n)
        assert (pg.s_slider.min, pg.s_slider.max) == b.S == (0, min(127, B // D if D else 127))
        assert (pg.d_slider.min, pg.d_slider.max) == b.D == (0, min(127, B // S if S else 127))
        assert (pg.b_slider.min, pg.b_slider.max) == b.B == (max(1, S * D), 32767 // pg.n)
        # every position of every slider is a valid point
        for s in (b.S[0], b.S[1]):
            assert HCCSParams(B, s, D).is_valid(pg.n)
        for d in (b.D[0], b.D[1]):
            assert HCCSParams(B, S, d).is_valid(pg.n)
        assert HCCSParams(b.B[0], S, D).is_valid(pg.n) and HCCSParams(b.B[1], S, D).is_valid(pg.n)


def test_a_point_valid_for_hccs_but_not_for_aie4ml_is_flagged_with_the_rule(playground):
    pg = playground
    st = pg.set_params(B=600, S=10, D=60)  # B - S*D = 0: fine for HCCS, refused by aie4ml
    assert st.valid and np.isfinite(st.kl_mean) and not st.deployable
    assert st.target_violations == target_violations(HCCSParams(600, 10, 60), pg.n, "aie4ml")
    assert "not deployable on aie4ml" in pg.readout.value
    assert html.escape(st.target_violations[0]) in pg.readout.value
    st = pg.set_target("hccs-lab")
    assert st.deployable and "valid</b> for target hccs-lab" in pg.readout.value


def test_head_explorer_figures_match_direct_computations(bank, minilm):
    picked = []
    ex = HeadExplorer(bank, minilm, on_select=lambda *a: picked.append(a))
    s = bank.summary()
    np.testing.assert_array_equal(np.asarray(ex.grid_fig.data[0].z), s.norm_entropy)
    ex.set_metric("std")
    np.testing.assert_array_equal(np.asarray(ex.grid_fig.data[0].z), s.std)
    assert set(METRICS) >= {"norm_entropy", "std"}
    ex.select(3, 7)
    box = ex.grid_fig.layout.shapes[0]
    assert (box.x0 + box.x1) / 2 == 7 and (box.y0 + box.y1) / 2 == 3
    assert picked[-1] == ("minilm-l6", 3, 7)  # what the session file remembers
    rows = bank[3, 7]
    cent = []
    for r in range(len(rows)):
        v = rows.logits[r, rows.mask[r]].astype(np.float64)
        cent.extend(v - v.max())
    counts, edges = np.histogram(np.array(cent), bins=60)
    np.testing.assert_array_equal(ex.hist_fig.data[0].y, counts)
    np.testing.assert_allclose(ex.hist_fig.data[0].x, 0.5 * (edges[1:] + edges[:-1]), rtol=1e-6)
    # rank profile: mean and p10/p90 over the rows that have a key at that rank, on a log axis in powers of ten
    p = rows.softmax()
    per_rank = {}
    for r in range(len(rows)):
        for k, v in enumerate(sorted(p[r, rows.mask[r]], reverse=True)):
            per_rank.setdefault(k, []).append(v)
    mean = np.array([np.mean(per_rank[k]) for k in sorted(per_rank)])
    np.testing.assert_allclose(ex.rank_fig.data[2].y, mean, rtol=1e-9)
    np.testing.assert_allclose(ex.rank_fig.data[1].y, [np.percentile(per_rank[k], 10) for k in sorted(per_rank)])
    assert ex.rank_fig.data[1].fill == "tonexty"
    assert ex.rank_fig.layout.yaxis.type == "log" and ex.rank_fig.layout.yaxis.exponentformat == "power"
    # broad / focused split
    broad, focused = ex.split()
    assert len(broad) + len(focused) == 72 and len(broad) == int(s.broad.sum())
    assert f"<b>broad</b> {len(broad)} heads" in ex.split_html.value
    # a click on the heatmap selects that head
    ex._on_grid_click(ex.grid_fig.data[0], SimpleNamespace(point_inds=[0], xs=[11], ys=[5]), None)
    assert (ex.layer, ex.head) == (5, 11) and picked[-1] == ("minilm-l6", 5, 11)
    # the sentence: a query x key matrix of that head, the tokens shaded by the chosen query's attention
    ex.set_sentence(2)
    ex.set_query(1)
    t = ex._sentences[2]
    ta = attention_for_text(minilm, bank.texts[t], 5, 11, max_len=48)
    np.testing.assert_allclose(ex.token_weights, ta.probs[1], rtol=1e-6)
    z = np.array([[np.nan if v is None else v for v in row] for row in ex.matrix_fig.data[0].z])
    np.testing.assert_allclose(z, np.where(ta.mask, ta.probs, np.nan), atol=1e-5, equal_nan=True)
    assert list(ex.matrix_fig.data[0].y) == [f"{i}:{tok}" for i, tok in enumerate(ta.tokens)]
    np.testing.assert_allclose(ex.strip_fig.data[0].customdata, ta.probs[1], atol=1e-6)
    assert list(ex.strip_fig.data[0].text) == ta.tokens
    for tok in ta.tokens:
        assert html.escape(tok) in ex.sentence_html.value
    # a click on a matrix row or on a token makes it the query
    ex._on_matrix_click(ex.matrix_fig.data[0], SimpleNamespace(point_inds=[[4, 2]], xs=["2:x"], ys=[f"4:{ta.tokens[4]}"]), None)
    assert ex.query == 4
    box = ex.matrix_fig.layout.shapes[0]
    assert (box.y0, box.y1) == (3.5, 4.5)
    ex._on_strip_click(ex.strip_fig.data[0], SimpleNamespace(point_inds=[3]), None)
    assert ex.query == 3 and json.loads(ex.matrix_fig.data[0].meta)["query"] == 3
    # every head of the layer on this sentence, small multiples
    assert len(ex.layer_fig.data) == 12
    for h in (0, 11):
        ta_h = attention_for_text(minilm, bank.texts[t], 5, h, max_len=48)
        zh = np.array([[np.nan if v is None else v for v in row] for row in ex.layer_fig.data[h].z])
        np.testing.assert_allclose(zh, np.where(ta_h.mask, ta_h.probs, np.nan), atol=1e-3, equal_nan=True)
    # your own sentence
    ex.text_box.value = "the film is a triumph of style over substance"
    own = attention_for_text(minilm, "the film is a triumph of style over substance", 5, 11, max_len=48)
    assert ex.own_text is not None and list(ex.strip_fig.data[0].text) == own.tokens
    assert "your sentence" in ex.readout.value
    ex.layer_dropdown.value = 1
    assert (ex.layer, ex.head) == (1, 11)


def test_a_causal_head_shows_a_lower_triangle_with_only_valid_keys(bank, minilm, monkeypatch):
    from hccs_lab.capture import TextAttention
    from hccs_lab.widgets import explorer as E

    def causal(loaded, text, layer, head, max_len=128):
        n = 6
        lg = np.random.default_rng(layer * 100 + head).normal(size=(n, n)).astype(np.float32)
        mask = np.tril(np.ones((n, n), bool))
        lg = np.where(mask, lg, 0.0)
        return TextAttention([f"t{i}" for i in range(n)], lg, mask, softmax(lg.astype(np.float64), mask=mask), layer, head)

    monkeypatch.setattr(E, "attention_for_text", causal)
    ex = HeadExplorer(bank, minilm)
    ex.set_query(2)
    z = np.array([[np.nan if v is None else v for v in row] for row in ex.matrix_fig.data[0].z])
    assert np.isnan(z[np.triu_indices(6, 1)]).all() and np.isfinite(z[np.tril_indices(6)]).all()
    np.testing.assert_allclose(np.nansum(z, 1), 1.0, atol=1e-5)  # each row's valid keys carry all of it
    assert ex.token_weights[3:].sum() == 0 and ex.token_weights[:3].sum() == pytest.approx(1.0, abs=1e-6)
    assert "line-through" in ex.sentence_html.value  # the keys row 2 may not see


def test_helpers_and_errors(bank):
    rows = bank[4, 1]
    c, n = centered_histogram(rows, bins=10)
    assert n.sum() == rows.mask.sum() and c.shape == (10,)
    prof = rank_profile(rows)
    assert prof.ranks[0] == 1 and np.all(prof.p10 <= prof.mean + 1e-12) and np.all(prof.mean <= prof.p90 + 1e-12)
    with pytest.raises(TypeError, match="LogitBank"):
        HeadExplorer(rows)
    with pytest.raises(ValueError, match="metric"):
        HeadExplorer(bank, metric="bogus")
    with pytest.raises(ValueError, match="valid key"):
        BinnedRows(np.zeros((2, 3)), np.zeros((2, 3), bool), 0.1)


def test_playground_picks_heads_snaps_saves_and_generates(bank, tmp_path):
    from hccs_lab.calibrate import Calibration, calibrate_rows

    picked = []
    pg = ClipSlopePlayground(bank, layer=2, head=5, on_select=lambda *a: picked.append(a),
                             calibration_path=tmp_path / "mine.json", kernel_dir=tmp_path / "kernels")
    assert (pg.layer_dropdown.value, pg.head_dropdown.value) == (2, 5) and picked == []
    pg.head_dropdown.value = 7  # what the head picker does
    assert (pg.layer, pg.head) == (2, 7) and picked == [("minilm-l6", 2, 7)]
    rows = bank[2, 7]
    assert pg.scale == pytest.approx(choose_scale(rows.logits, mask=rows.mask))
    # snap to calibrated: the grid search of this head's rows under the chosen target
    want, scale, _ = calibrate_rows(rows.logits, rows.mask, pg.n, target="aie4ml")
    pg.run_action(pg.snap_to_calibrated)
    assert pg.params == (want.B, want.S, want.D) and pg.scale == pytest.approx(scale)
    assert "calibrated" in pg.status.value and pg.state.deployable
    # save: no file yet, so every head is calibrated first; then this head's entry is what is shown
    pg.set_params(S=pg.params[1] - 1)
    pg.run_action(pg.save_params)
    cal = Calibration.from_json(tmp_path / "mine.json")
    assert cal.params(2, 7) == HCCSParams(*pg.params) and cal.scale(2, 7) == pytest.approx(pg.scale)
    assert "wrote" in pg.status.value
    pg.select_head(0, 1)
    pg.run_action(pg.save_params)  # a second head: the file is updated, the first one kept
    cal2 = Calibration.from_json(tmp_path / "mine.json")
    assert cal2.params(0, 1) == HCCSParams(*pg.params) and cal2.params(2, 7) == cal.params(2, 7)
    assert "updated" in pg.status.value
    # generate kernel: n = 48 is no multiple of 32, so the kernel is refused with the reason, not a traceback
    pg.run_action(pg.generate_kernel)
    assert "not done" in pg.status.value and "multiple of 32" in pg.status.value


def test_generate_kernel_writes_the_aie_kernel_of_the_shown_parameters(tmp_path):
    from hccs_lab.capture import HeadRows

    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (40, 64)).astype(np.float32)
    pg = ClipSlopePlayground(HeadRows(logits, np.ones_like(logits, bool)), params=(500, 4, 60), variant="u8-clb")
    pg.run_action(lambda: pg.generate_kernel(tmp_path))
    manifest = json.loads((tmp_path / "u8-clb" / "kernel.json").read_text())
    assert manifest["params"] == {"B": 500, "S": 4, "D": 60} and manifest["variant"] == "u8-clb"
    assert manifest["seq_len"] == 64 and "kernel" in pg.status.value


def test_latest_only_sends_at_once_without_a_browser_and_one_at_a_time_with_one():
    import plotly.graph_objects as go

    from hccs_lab.widgets.figures import LatestOnly, live_figure

    fig = live_figure(data=[go.Scatter(y=[0, 1])])
    value = {"y": 0}

    def render(f):
        with f.batch_update():
            f.data[0].y = [value["y"], 1]

    lo = LatestOnly(fig, render)
    for v in (1, 2, 3):  # no front end: every request goes out
        value["y"] = v
        lo.request()
    assert lo.sent == 3 and list(fig.data[0].y) == [3, 1]

    def drawn():  # what plotly.js answers after it drew the newest update
        fig._js2py_layoutDelta = {"layout_delta": {}, "layout_edit_id": fig._last_layout_edit_id}

    drawn()
    assert fig.has_front_end
    value["y"] = 4
    lo.request()
    assert lo.sent == 4 and lo.in_flight
    for v in (5, 6):  # while the browser draws 4: only marked stale
        value["y"] = v
        lo.request()
    assert lo.sent == 4 and lo.dirty
    drawn()  # drawn: the newest state (6) goes out, 5 is never sent
    assert lo.sent == 5 and list(fig.data[0].y) == [6, 1]


def test_deferred_work_runs_at_once_outside_a_kernel_even_under_a_running_loop():
    # Playwright's sync API leaves its loop marked running while the test goes on; work deferred
    # onto that loop would never run, so outside a kernel it must run at once.
    import asyncio
    import threading

    from hccs_lab.widgets.figures import Later, running_loop

    ran, seen = [], []

    async def inside_a_loop():
        seen.append((asyncio.get_event_loop().is_running(), running_loop()))
        Later(lambda: ran.append(1), delay=5.0).request()

    # a thread of its own: in the full suite this thread may already carry Playwright's loop
    t = threading.Thread(target=lambda: asyncio.run(inside_a_loop()))
    t.start()
    t.join(10)
    assert seen == [(True, None)] and ran == [1]


def test_flow_slider_tells_the_browser_when_its_value_was_handled():
    from hccs_lab.widgets.slider import FlowIntSlider

    s = FlowIntSlider(value=3, min=0, max=10, description="slope S")
    log = []
    s.observe(lambda c: log.append(("observer", c["new"])), names="value")
    s.send = lambda content, buffers=None: log.append(("sent", content))
    s.set_state({"value": 7})  # a value from the browser
    assert log == [("observer", 7), ("sent", {"done": True})]  # the answer comes after every observer ran
    s.value = 20  # from code: clamped to the range, no answer needed
    assert s.value == 10 and log[-1] == ("observer", 10)


def test_the_widgets_carry_the_theme_css():
    from hccs_lab.widgets.figures import THEME_CSS, theme_html

    assert 'data-jp-theme-light="false"' in THEME_CSS and THEME_CSS in theme_html().value
