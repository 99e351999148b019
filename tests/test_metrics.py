"""hccs_lab.metrics against direct formulas, scipy.stats and hand-worked tie rules."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import kendalltau, spearmanr

from hccs_lab.metrics import KL_FLOOR, js, kendall_tau, kl, rank_preservation, spearman, topk_overlap

FAST = settings(deadline=None, max_examples=60)


def normalised(rng, shape, zeros=0.0):
    p = rng.random(shape) ** 3
    p[rng.random(shape) < zeros] = 0.0
    p[..., 0] += 1e-3  # never an all-zero row
    return p / p.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# kl, js


def test_kl_matches_direct_formula_with_the_documented_floor():
    rng = np.random.default_rng(0)
    p = normalised(rng, (20, 16), zeros=0.2)
    q = normalised(rng, (20, 16), zeros=0.3)  # zeros in q where p has mass
    want = [sum(pi * math.log(pi / max(qi, 2.0**-16)) for pi, qi in zip(pr, qr) if pi > 0) for pr, qr in zip(p, q)]
    np.testing.assert_allclose(kl(p, q), want, rtol=1e-12)
    assert KL_FLOOR == 2.0**-16


def test_kl_zero_in_q_is_charged_at_the_floor_never_nan():
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([1.0, 0.0, 0.0])
    # 0.5*ln(0.5/1) + 0.5*ln(0.5/2**-16); the p=0 key adds nothing
    want = 0.5 * math.log(0.5) + 0.5 * math.log(0.5 * 2**16)
    assert kl(p, q) == pytest.approx(want, rel=1e-12)
    assert np.isfinite(kl(p, np.zeros(3)))
    assert kl(p, p) == 0.0
    # a custom floor
    assert kl(p, q, floor=1e-3) == pytest.approx(0.5 * math.log(0.5) + 0.5 * math.log(500), rel=1e-12)


def test_kl_non_negative_and_masked_keys_ignored():
    rng = np.random.default_rng(1)
    p = normalised(rng, (30, 10))
    q = normalised(rng, (30, 10))
    assert (kl(p, q) >= 0).all()
    mask = np.ones((30, 10), bool)
    mask[:, 7:] = False
    pm = np.where(mask, p, 0.0)
    pm /= pm.sum(-1, keepdims=True)
    q_garbage = q.copy()
    q_garbage[:, 7:] = 123.0
    np.testing.assert_allclose(kl(pm, q_garbage, mask=mask), kl(pm[:, :7], q[:, :7]), rtol=1e-12)
    mask[3] = False
    assert kl(pm, q, mask=mask)[3] == 0.0 and js(pm, q, mask=mask)[3] == 0.0


@FAST
@given(st.integers(0, 2**32 - 1), st.integers(1, 20))
def test_js_symmetric_and_bounded_by_ln2(seed, n):
    rng = np.random.default_rng(seed)
    p = normalised(rng, (5, n), zeros=0.4)
    q = normalised(rng, (5, n), zeros=0.4)
    d = js(p, q)
    np.testing.assert_allclose(d, js(q, p), rtol=1e-12, atol=1e-15)
    assert (d >= -1e-15).all() and (d <= math.log(2) + 1e-12).all()
    np.testing.assert_allclose(js(p, p), 0.0, atol=1e-15)
    mid = 0.5 * (p + q)
    direct = [0.5 * sum(a * math.log(a / m) for a, m in zip(pr, mr) if a > 0)
              + 0.5 * sum(b * math.log(b / m) for b, m in zip(qr, mr) if b > 0) for pr, qr, mr in zip(p, q, mid)]
    np.testing.assert_allclose(d, direct, rtol=1e-10, atol=1e-15)


def test_js_of_disjoint_rows_is_ln2():
    assert js(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(math.log(2), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# kendall tau-b, spearman against scipy


def scipy_rowwise(fn, a, b, mask=None):
    out = []
    for i in range(a.shape[0]):
        x, y = (a[i], b[i]) if mask is None else (a[i][mask[i]], b[i][mask[i]])
        if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
            out.append(0.0)  # scipy says NaN; the metric defines 0 for a constant or too short row
        else:
            out.append(fn(x, y).statistic)
    return np.array(out)


@st.composite
def tied_rows(draw):
    r = draw(st.integers(1, 6))
    n = draw(st.integers(1, 140))
    levels_a = draw(st.integers(1, 300))
    levels_b = draw(st.integers(1, 40))
    a = draw(arrays(np.int64, (r, n), elements=st.integers(0, levels_a)))
    b = draw(arrays(np.int64, (r, n), elements=st.integers(0, levels_b)))
    mask = draw(arrays(np.bool_, (r, n)))
    return a.astype(np.float64), b.astype(np.float64), mask


@FAST
@given(tied_rows())
def test_kendall_tau_b_matches_scipy(rows):
    a, b, mask = rows
    np.testing.assert_allclose(kendall_tau(a, b), scipy_rowwise(kendalltau, a, b), atol=1e-12)
    np.testing.assert_allclose(kendall_tau(a, b, mask=mask), scipy_rowwise(kendalltau, a, b, mask), atol=1e-12)


def test_kendall_tau_matches_scipy_on_softmax_vs_hccs_like_rows():
    # the real use: a continuous reference against a clipped, heavily tied surrogate, n = 128
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(64, 128))
    test = np.maximum(np.round(ref * 4), -3.0) + (rng.random((64, 128)) < 0.05)
    mask = np.arange(128) < rng.integers(1, 129, 64)[:, None]
    np.testing.assert_allclose(kendall_tau(ref, test), scipy_rowwise(kendalltau, ref, test), atol=1e-12)
    np.testing.assert_allclose(kendall_tau(ref, test, mask), scipy_rowwise(kendalltau, ref, test, mask), atol=1e-12)


def test_kendall_tau_hand_cases_and_shape():
    # a = [1, 2, 3], b = [1, 3, 2]: pairs (0,1) C, (0,2) C, (1,2) D -> (2 - 1)/3
    assert kendall_tau(np.array([1.0, 2, 3]), np.array([1.0, 3, 2])) == pytest.approx(1 / 3)
    assert kendall_tau(np.array([1.0, 2, 3]), np.array([3.0, 2, 1])) == pytest.approx(-1.0)
    assert kendall_tau(np.array([1.0, 1, 1]), np.array([1.0, 2, 3])) == 0.0  # constant side
    assert kendall_tau(np.array([5.0]), np.array([2.0])) == 0.0
    out = kendall_tau(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))
    assert out.shape == (2, 3)
    assert kendall_tau(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0,)


@FAST
@given(tied_rows())
def test_spearman_matches_scipy(rows):
    a, b, mask = rows
    np.testing.assert_allclose(spearman(a, b), scipy_rowwise(spearmanr, a, b), atol=1e-12)
    np.testing.assert_allclose(spearman(a, b, mask=mask), scipy_rowwise(spearmanr, a, b, mask), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# top-k overlap and the summary


def test_topk_overlap_tie_rules():
    a = np.array([5.0, 4.0, 3.0, 1.0, 0.0])
    # a's top 2 = {0, 1}; b's top 2 = {0, 2} -> overlap 1/2
    assert topk_overlap(a, np.array([9.0, 1.0, 8.0, 0.0, 0.0]), 2) == pytest.approx(0.5)
    # b: key 0 surely in; keys 1, 2, 3 tie for the one slot left, each with probability 1/3.
    # a's top 2 = {0, 1}: expected hits 1 + 1/3 -> (4/3)/2
    assert topk_overlap(a, np.array([9.0, 3.0, 3.0, 3.0, 0.0]), 2) == pytest.approx(2 / 3)
    # a surrogate that ties everything is a random pick: expected overlap k/n
    assert topk_overlap(a, np.ones(5), 3) == pytest.approx(3 / 5)
    assert topk_overlap(a, np.ones(5), 1) == pytest.approx(1 / 5)
    # k above n is capped at n: every key is in both top sets
    assert topk_overlap(a, -a, 10) == pytest.approx(1.0)
    # ties on the reference side count the same way: a ties keys 0 and 1 for top-1
    assert topk_overlap(np.array([2.0, 2.0, 0.0]), np.array([1.0, 2.0, 0.0]), 1) == pytest.approx(0.5)
    assert topk_overlap(np.array([2.0, 2.0, 0.0]), np.array([2.0, 2.0, 0.0]), 1) == pytest.approx(0.5)
    assert topk_overlap(np.array([3.0, 2.0, 0.0]), np.array([3.0, 2.0, 0.0]), 1) == 1.0


def _expected_overlap_brute(a, b, k):
    """Average the overlap over every tie-breaking order of both rows (exhaustive, tiny rows)."""
    import itertools

    n = len(a)
    tot, cnt = 0.0, 0
    for pa in itertools.permutations(range(n)):
        top_a = set(sorted(range(n), key=lambda j: (-a[j], pa[j]))[:k])
        for pb in itertools.permutations(range(n)):
            top_b = set(sorted(range(n), key=lambda j: (-b[j], pb[j]))[:k])
            tot += len(top_a & top_b) / k
            cnt += 1
    return tot / cnt


def test_topk_overlap_against_brute_force_with_masks():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 3, (40, 6)).astype(float)
    b = rng.integers(0, 2, (40, 6)).astype(float)
    mask = rng.random((40, 6)) < 0.7
    mask[0] = False
    for k in (1, 2, 4):
        got = topk_overlap(a, b, k, mask=mask)
        for i in range(40):
            idx = np.flatnonzero(mask[i])
            kk = min(k, len(idx))
            if kk == 0:
                assert got[i] == 1.0
                continue
            want = _expected_overlap_brute(a[i, idx], b[i, idx], kk)
            assert got[i] == pytest.approx(want)

def test_rank_preservation_summary_is_the_mean_over_rows_with_keys():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(10, 16))
    test = np.round(ref * 2)
    mask = rng.random((10, 16)) < 0.8
    mask[4] = False  # no valid key: left out of the means
    rp = rank_preservation(ref, test, mask=mask, k=3)
    keep = mask.any(-1)
    assert rp.rows == 9 and rp.k == 3
    assert rp.kendall_tau == pytest.approx(kendall_tau(ref, test, mask)[keep].mean())
    assert rp.top1 == pytest.approx(topk_overlap(ref, test, 1, mask)[keep].mean())
    assert rp.topk == pytest.approx(topk_overlap(ref, test, 3, mask)[keep].mean())
    assert rp.as_dict()["rows"] == 9
    perfect = rank_preservation(ref, ref)
    assert (perfect.kendall_tau, perfect.top1, perfect.topk, perfect.rows) == (1.0, 1.0, 1.0, 10)
    assert rank_preservation(ref, test, mask=np.zeros((10, 16), bool)).rows == 0


def test_torch_inputs_are_accepted():
    p = torch.softmax(torch.randn(3, 5), -1)
    np.testing.assert_allclose(kl(p, p), 0.0, atol=1e-7)
    np.testing.assert_allclose(kendall_tau(p, p), 1.0)


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_inputs_have_clear_errors():
    p = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="same shape"):
        kl(p, np.full((2, 4), 0.25))
    bad = p.copy()
    bad[1, 1] = np.nan
    for fn in (kl, js, kendall_tau, spearman, lambda a, b: topk_overlap(a, b, 1), rank_preservation):
        with pytest.raises(ValueError, match=r"NaN or inf in 1 row\(s\)"):
            fn(p, bad)
    with pytest.raises(ValueError, match="at least one key"):
        kendall_tau(np.zeros((2, 0)), np.zeros((2, 0)))
    with pytest.raises(TypeError, match="numeric"):
        kl(np.array(["a", "b"]), np.array(["a", "b"]))
    with pytest.raises(TypeError, match="mask must be boolean"):
        kl(p, p, mask=np.ones((2, 3), int))
    with pytest.raises(ValueError, match=r"mask of shape \(4,\) does not broadcast"):
        kendall_tau(p, p, mask=np.ones(4, bool))
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            topk_overlap(p, p, k)
