"""Calibration: the exact search against brute force through hccs_int + metrics.kl, JSON, CLI."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from hccs_lab import calibrate as C
from hccs_lab.capture import LogitBank
from hccs_lab.metrics import kl as metrics_kl
from hccs_lab.core import HCCSParams, hccs_int, quantize_logits, softmax, valid_region


# ---------------------------------------------------------------------------------------------
# helpers: synthetic rows and a brute force that knows nothing of the search's algebra


def synthetic_rows(seed, rows=5, n=8, spread=2.0, min_keys=1):
    rng = np.random.default_rng(seed)
    x = (rng.standard_t(3, (rows, n)) * spread).astype(np.float32)
    lens = rng.integers(min_keys, n + 1, rows)
    mask = np.arange(n)[None, :] < lens[:, None]
    return x, mask


def brute_kl_rows(logits, mask, scale, cands):
    """[K, rows] KL of every candidate, by running hccs_int and metrics.kl directly."""
    keep = mask.any(-1)
    q = quantize_logits(logits, scale, mask)
    p = softmax(logits.astype(np.float64), mask)
    out = []
    for B, S, D in cands:
        h = hccs_int(q, HCCSParams(int(B), int(S), int(D)), "i16", "div", mask=mask)
        out.append(metrics_kl(p[keep], h[keep] / 32767.0, mask[keep]))
    return np.array(out)


def make_bank(seed, L=2, H=2, rows=4, n=8, spread=2.0):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_t(3, (L, rows, H, n)) * spread * rng.uniform(0.5, 2.0, (L, 1, H, 1))).astype(np.float32)
    lens = rng.integers(2, n + 1, rows)
    mask = np.arange(n)[None, :] < lens[:, None]
    logits = np.where(mask[None, :, None, :], logits, 0.0).astype(np.float32)
    return LogitBank(
        model_name="synthetic", n_texts=rows, seq_len=n, logits=logits, mask=mask,
        text_index=np.arange(rows), query_pos=np.zeros(rows, np.int64), texts=[f"text {i}" for i in range(rows)],
    )


# ---------------------------------------------------------------------------------------------
# the exact objective and the search


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_kl_equals_hccs_int_plus_metrics_kl(seed):
    # distances beyond 127 and 255 (saturation) on purpose: scale small against the spread
    x, m = synthetic_rows(seed, rows=6, n=16, spread=3.0)
    m[2] = False  # an all-masked row is dropped by both
    scale = 0.02
    cands = valid_region(16)
    pick = cands[np.random.default_rng(seed).choice(len(cands), 300, replace=False)]
    zero = cands[(cands[:, 0] == cands[:, 1] * cands[:, 2]) & (cands[:, 1] > 0)][:50]  # B == S*D: HCCS zeros
    pick = np.concatenate([pick, zero, [[2047, 0, 0], [1, 0, 127], [2047, 16, 127]]])
    want = brute_kl_rows(x, m, scale, pick).mean(1)
    got = C.exact_kl(C.row_stats(x, m, scale), pick)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("target,B_max", [("hccs-lab", 24), ("aie4ml", 64)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_grid_returns_the_brute_force_optimum_per_head(seed, target, B_max):
    x, m = synthetic_rows(seed, rows=4, n=8, spread=2.0 + seed)
    scale = [0.05, 0.02, 0.1, 0.01][seed]
    cands = valid_region(8, B_max=B_max)
    # the target's own rule, written out here: aie4ml needs n*(B - S*D) >= 256
    cands = cands[8 * (cands[:, 0] - cands[:, 1] * cands[:, 2]) >= 256] if target == "aie4ml" else cands
    brute = brute_kl_rows(x, m, scale, cands).mean(1)
    res = C.grid_search(C.row_stats(x, m, scale), 8, B_max=B_max, target=target)
    assert res.candidates == len(valid_region(8, B_max=B_max))
    assert res.kl == pytest.approx(brute.min(), abs=1e-12)
    # the returned parameters really achieve it, checked through hccs_int
    B, S, D = res.params.B, res.params.S, res.params.D
    assert brute_kl_rows(x, m, scale, [(B, S, D)]).mean() == pytest.approx(brute.min(), abs=1e-12)
    assert res.evaluated < res.candidates  # the bound pruned something


def test_grid_is_exact_over_the_whole_n128_region():
    # every valid triple for n=128 (218,957), each evaluated exactly by the vectorised objective
    x, m = synthetic_rows(7, rows=24, n=128, spread=1.5, min_keys=4)
    scale = 0.03
    stats = C.row_stats(x, m, scale)
    cands = valid_region(128)
    every = C.exact_kl(stats, cands)
    res = C.grid_search(stats, 128)
    assert res.candidates == len(cands)
    assert res.kl == pytest.approx(every.min(), abs=1e-12)
    assert res.evaluated < len(cands) // 20
    best = every.argmin()
    np.testing.assert_allclose(brute_kl_rows(x, m, scale, cands[[best]]).mean(), every[best], atol=1e-12)


@pytest.mark.parametrize("target,B_max", [("hccs-lab", 20), ("aie4ml", 48)])
@pytest.mark.parametrize("granularity", ["head", "layer", "global"])
@pytest.mark.parametrize("seed", [0, 1])
def test_calibrate_granularities_match_brute_force(seed, granularity, target, B_max):
    bank = make_bank(seed)
    cands = valid_region(8, B_max=B_max)
    cands = cands[8 * (cands[:, 0] - cands[:, 1] * cands[:, 2]) >= 256] if target == "aie4ml" else cands
    from hccs_lab.core import choose_scale

    per_head = {}
    for l in range(2):
        for h in range(2):
            r = bank[l, h]
            sc = choose_scale(r.logits, r.mask)
            per_head[l, h] = brute_kl_rows(r.logits, r.mask, sc, cands)  # [K, rows]
    cal = C.calibrate(bank, 8, granularity=granularity, progress=False, B_max=B_max, target=target)
    assert len(cal.heads) == 4 and cal.granularity == granularity and cal.target == target
    groups = {"head": [[k] for k in per_head], "layer": [[(l, 0), (l, 1)] for l in range(2)],
              "global": [list(per_head)]}[granularity]
    for keys in groups:
        pooled = np.concatenate([per_head[k] for k in keys], axis=1).mean(1)
        chosen = cal.params(*keys[0])
        assert all(cal.params(*k) == chosen for k in keys)
        i = np.flatnonzero((cands == [chosen.B, chosen.S, chosen.D]).all(1))[0]
        assert pooled[i] == pytest.approx(pooled.min(), abs=1e-12)
        for k in keys:  # each head's kl_after is its own mean KL under the chosen set
            assert cal.entry(*k).kl_after == pytest.approx(per_head[k][i].mean(), abs=1e-12)


def test_default_before_params_and_gradient_method():
    assert C.default_params(128) == HCCSParams(254, 2, 127)
    x, m = synthetic_rows(3, rows=30, n=32, spread=1.5, min_keys=8)
    p_grid, sc, kl_grid = C.calibrate_rows(x, m, 32)
    p_grad, sc2, kl_grad = C.calibrate_rows(x, m, 32, method="gradient")
    assert sc == sc2
    assert p_grid.is_valid(32) and p_grad.is_valid(32)
    stats = C.row_stats(x, m, sc)
    before = C.objective(stats, C.default_params(32))
    assert kl_grid <= kl_grad + 1e-12  # the grid is the optimum of the whole set
    assert kl_grad < before  # the polished relaxation beats the uncalibrated default
    assert C.objective(stats, p_grad) == pytest.approx(kl_grad, abs=1e-12)


def test_scale_search_keeps_the_best_scale():
    x, m = synthetic_rows(5, rows=20, n=16, spread=2.0, min_keys=4)
    p1, s1, k1 = C.calibrate_rows(x, m, 16, B_max=60)
    p3, s3, k3 = C.calibrate_rows(x, m, 16, scale_multipliers=(0.5, 1.0, 2.0), B_max=60)
    assert k3 <= k1 + 1e-15
    assert s3 in (s1 * 0.5, s1, s1 * 2.0)
    assert C.objective(C.row_stats(x, m, s3), p3) == pytest.approx(k3, abs=1e-12)
    assert p3.B <= 60


def test_bad_inputs_are_named():
    x, m = synthetic_rows(0)
    with pytest.raises(ValueError, match="method"):
        C.calibrate_rows(x, m, 8, method="adam")
    with pytest.raises(ValueError, match="seq_len"):
        C.grid_search(C.row_stats(x, m, 0.1), 4)
    with pytest.raises(ValueError, match="no row has a valid key"):
        C.row_stats(x, np.zeros_like(m), 0.1)
    with pytest.raises(TypeError, match="boolean"):
        C.row_stats(x, m.astype(int), 0.1)
    with pytest.raises(ValueError, match="granularity"):
        C.calibrate(make_bank(0), 8, granularity="tensor", progress=False)


# ---------------------------------------------------------------------------------------------
# Calibration <-> JSON


@pytest.fixture(scope="module")
def calibration():
    return C.calibrate(make_bank(4, L=2, H=3), 8, progress=False, B_max=30, target="hccs-lab")


def test_every_result_satisfies_the_constraints(calibration):
    for h in calibration.heads:
        assert h.params.is_valid(calibration.seq_len)
        assert 0.0 <= h.kl_after <= h.kl_before
    assert {(h.layer, h.head) for h in calibration.heads} == {(l, h) for l in range(2) for h in range(3)}
    assert calibration.data_fingerprint == C.fingerprint_texts([f"text {i}" for i in range(4)])


def test_json_round_trip_is_exact(calibration, tmp_path):
    path = calibration.to_json(tmp_path / "cal.json")
    back = C.Calibration.from_json(path)
    assert back == calibration
    assert back.to_dict() == calibration.to_dict()
    assert os.listdir(tmp_path) == ["cal.json"]  # no temp file left behind
    d = json.loads(path.read_text())
    assert set(d["heads"][0]) == {"layer", "head", "B", "S", "D", "scale", "kl_before", "kl_after"}
    assert back.params(1, 2) == calibration.params(1, 2) and back.scale(0, 1) == calibration.scale(0, 1)
    rows = back.table()
    assert [r["layer"] for r in rows] == [0, 1]
    assert rows[1]["kl_after"] == pytest.approx(np.mean([calibration.entry(1, h).kl_after for h in range(3)]))


def _write(tmp_path, d, name="bad.json"):
    p = tmp_path / name
    p.write_text(json.dumps(d) if not isinstance(d, str) else d)
    return p


def _mutations(d):
    def drop_head(x):
        x["heads"].pop(3)

    def bad_params(x):
        x["heads"][0].update(B=10, S=5, D=3)  # B - S*D < 0

    def overflow(x):
        x["heads"][1]["B"] = 32767 // x["seq_len"] + 1  # n*B > 32767

    def version(x):
        x["schema_version"] = 99

    def b_string(x):
        x["heads"][0]["B"] = "12"

    def b_float(x):
        x["heads"][0]["B"] = 12.0

    def b_bool(x):
        x["heads"][0]["S"] = True

    def dup(x):
        x["heads"][1] = dict(x["heads"][0])

    def nan_scale(x):
        x["heads"][0]["scale"] = -1.0

    def no_model(x):
        del x["model"]

    def heads_not_list(x):
        x["heads"] = {"0": 1}

    def layer_mixed(x):
        x["granularity"] = "layer"

    def wrong_schema(x):
        x["schema"] = "something-else"

    return {
        "missing head": (drop_head, "missing"),
        "invalid params": (bad_params, "B - S\\*D"),
        "int16 overflow": (overflow, "overflow"),
        "schema version": (version, "schema_version 99"),
        "B as string": (b_string, "B must be an integer"),
        "B as float": (b_float, "B must be an integer"),
        "S as bool": (b_bool, "S must be an integer"),
        "duplicate": (dup, "duplicate"),
        "negative scale": (nan_scale, "scale"),
        "missing model": (no_model, "missing field 'model'"),
        "heads not a list": (heads_not_list, "'heads' must be a list"),
        "layer granularity mixed": (layer_mixed, "different parameter sets"),
        "other schema": (wrong_schema, "not an hccs-lab calibration"),
    }


@pytest.mark.parametrize("case", list(_mutations({})))
def test_corrupt_or_incompatible_files_are_refused(calibration, tmp_path, case):
    d = calibration.to_dict()
    if case == "layer granularity mixed":
        assert len({(h["B"], h["S"], h["D"]) for h in d["heads"][:3]}) > 1  # heads of layer 0 differ
    fn, pattern = _mutations(d)[case]
    fn(d)
    with pytest.raises(ValueError, match=pattern):
        C.Calibration.from_json(_write(tmp_path, d))


def test_truncated_empty_and_missing_files(calibration, tmp_path):
    text = calibration.to_json(tmp_path / "good.json").read_text()
    with pytest.raises(ValueError, match="not valid JSON"):
        C.Calibration.from_json(_write(tmp_path, text[: len(text) // 2], "trunc.json"))
    with pytest.raises(ValueError, match="not valid JSON"):
        C.Calibration.from_json(_write(tmp_path, "", "empty.json"))
    with pytest.raises(ValueError, match="top level"):
        C.Calibration.from_json(_write(tmp_path, [1, 2], "list.json"))
    with pytest.raises(FileNotFoundError):
        C.Calibration.from_json(tmp_path / "nope.json")


# ---------------------------------------------------------------------------------------------
# the command line, end to end on the real model


def test_cli_end_to_end_minilm(tmp_path, capsys):
    from hccs_lab.cli import main

    out = tmp_path / "cal.json"
    rc = main(["calibrate", "--model", "minilm-l6", "--samples", "4", "--seq-len", "32", "--out", str(out), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "KL before" in text and "wrote" in text
    cal = C.Calibration.from_json(out)
    assert (cal.model, cal.n_layers, cal.n_heads, cal.seq_len, cal.samples) == ("minilm-l6", 6, 12, 32, 4)
    assert len(cal.heads) == 72
    for h in cal.heads:
        assert h.params.is_valid(32)
        assert h.kl_after <= h.kl_before + 1e-12  # the default set is one of the candidates
    assert cal.mean_kl_after < cal.mean_kl_before


def test_cli_refuses_bad_arguments(tmp_path, capsys):
    from hccs_lab.cli import main

    assert main(["calibrate", "--samples", "0", "--out", str(tmp_path / "x.json")]) == 2
    assert "--samples must be >= 1" in capsys.readouterr().err
    assert main(["calibrate", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


# ---------------------------------------------------------------------------------------------
# figure data (the notebook's plots draw these)


def test_fidelity_data_against_direct_computation(calibration):
    from hccs_lab.viz import calibration as P

    bank = make_bank(4, L=2, H=3)
    r = bank[1, 2]
    params, scale = calibration.params(1, 2), calibration.scale(1, 2)
    d = P.fidelity_data(r.logits, r.mask, params, scale)
    keep = r.mask.any(-1)
    p = softmax(r.logits[keep].astype(np.float64), r.mask[keep])
    q = hccs_int(quantize_logits(r.logits[keep], scale, r.mask[keep]), params, mask=r.mask[keep]) / 32767.0
    # rank 1 is each row's softmax max; HCCS gives that key B * (32767 // Z) / 32767
    top = p.argmax(-1)
    assert d["softmax"][0] == pytest.approx(p.max(-1).mean())
    assert d["hccs"][0] == pytest.approx(q[np.arange(len(q)), top].mean())
    assert d["count"][0] == keep.sum()
    assert d["kl"] == pytest.approx(calibration.entry(1, 2).kl_after, abs=1e-12)
    assert np.all(np.diff(d["softmax"][np.isfinite(d["softmax"])]) <= 1e-12)  # sorted by softmax
    fig = P.fidelity_figure({"a": (r.logits, r.mask, params, scale), "b": (r.logits, r.mask, params, scale)})
    assert len(fig.data) == 4


def test_comparison_table_and_heatmap(calibration):
    from hccs_lab.viz import calibration as P

    glob = C.calibrate(make_bank(4, L=2, H=3), 8, granularity="global", progress=False, B_max=30, target="hccs-lab")
    rows = {r["name"]: r for r in P.comparison_table({"head": calibration, "global": glob})}
    assert rows["head"]["gap_to_best"] == 0.0 and rows["global"]["gap_to_best"] >= 0.0
    assert rows["global"]["param_sets"] == 1
    assert rows["global"]["mean_kl"] == pytest.approx(glob.kl_grid().mean())
    fig = P.kl_heatmap(calibration)
    np.testing.assert_array_equal(np.asarray(fig.data[1].z), calibration.kl_grid("after"))


@pytest.mark.parametrize("n", [64, 128, 258, 259, 512, 2048, 8192])
def test_default_params_are_valid_for_long_rows(n):
    p = C.default_params(n)
    assert p.is_valid(n) and p.B == p.S * p.D  # the max(0, D - d) ramp at every length
    assert p.D == min(127, 32767 // n)


def test_zero_score_floor_may_push_kl_a_little_below_zero(calibration):
    # HCCS scores 0 at the clip when B == S*D; q is floored at 2**-16 there, so it sums to over 1
    # and the KL of a near-perfect fit dips below 0: such a calibration is still valid
    cal = calibration
    h = cal.heads[0]
    bad = dataclasses.replace(h, kl_after=-1e-4)
    ok = dataclasses.replace(cal, heads=(bad,) + cal.heads[1:])
    assert ok.heads[0].kl_after == -1e-4
    with pytest.raises(ValueError, match="finite KL >= 0"):
        dataclasses.replace(cal, heads=(dataclasses.replace(h, kl_after=-0.1),) + cal.heads[1:])
