"""HCCS reference semantics (hccs_lab.surrogate) against hand arithmetic, a slow pure-Python
reference written straight from DESIGN.md, and the properties the design promises."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from hccs_lab.core import (
    HCCSParams,
    choose_scale,
    hccs_float,
    hccs_int,
    max_base,
    quantize_logits,
    softmax,
    valid_region,
)

VARIANTS = [("i16", "div"), ("i16", "clb"), ("u8", "div"), ("u8", "clb")]
FAST = settings(deadline=None, max_examples=60)


# ---------------------------------------------------------------------------------------------
# the slow reference: one row, plain Python integers, line by line from DESIGN.md


def reference_row(x, B, S, D, out, recip, valid=None):
    """Returns (p as a list of ints, Z). Masked keys get 0; an all-masked row is zeros with Z = 0."""
    n = len(x)
    keys = [i for i in range(n) if valid is None or valid[i]]
    if not keys:
        return [0] * n, 0
    m = max(int(x[i]) for i in keys)
    p = [0] * n
    s = {}
    for i in keys:
        d = min(m - int(x[i]), D)  # m >= x, so this is the unsigned 8-bit distance 0..255
        s[i] = B - S * d
    Z = sum(s.values())
    if recip == "div":
        rho = 32767 // Z if out == "i16" else (255 << 15) // Z
    else:
        k = Z.bit_length() - 1  # floor(log2 Z)
        rho = 32767 >> k if out == "i16" else 255 << (15 - k)
    for i in keys:
        if out == "i16":
            p[i] = max(-32768, min(32767, s[i] * rho))
        else:
            p[i] = max(0, min(255, (s[i] * rho) >> 15))
    return p, Z


def reference(x, params, out, recip, mask=None):
    x2 = np.asarray(x).reshape(-1, x.shape[-1])
    m2 = None if mask is None else np.broadcast_to(mask, x.shape).reshape(-1, x.shape[-1])
    rows = [reference_row(list(x2[r]), params.B, params.S, params.D, out, recip,
                          None if m2 is None else list(m2[r])) for r in range(x2.shape[0])]
    p = np.array([r[0] for r in rows], dtype=np.int64).reshape(x.shape)
    Z = np.array([r[1] for r in rows], dtype=np.int64).reshape(x.shape[:-1])
    return p, Z


# ---------------------------------------------------------------------------------------------
# strategies: int8 rows (often narrow, so clipping and ties both happen) and params drawn from
# the valid region for their n


@st.composite
def params_for(draw, n):
    b_max = 32767 // n
    D = draw(st.integers(0, 127))
    s_max = min(127, b_max // D) if D else 127
    S = draw(st.integers(0, s_max))
    B = draw(st.integers(max(1, S * D), b_max))
    return HCCSParams(B, S, D)


@st.composite
def case(draw, max_rows=5, max_n=40, with_mask=False):
    n = draw(st.integers(1, max_n) | st.sampled_from([64, 128, 256]))
    r = draw(st.integers(1, max_rows))
    lo = draw(st.integers(-128, 127))
    hi = draw(st.integers(lo, 127))
    x = draw(arrays(np.int8, (r, n), elements=st.integers(lo, hi)))
    params = draw(params_for(n))
    if not with_mask:
        return x, params
    mask = draw(arrays(np.bool_, (r, n)))
    return x, params, mask


def as_int(a):
    return np.asarray(a).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# hand-computed cases


def test_hand_case_all_variants():
    # x = [10, 7, 3, -20], B=100, S=10, D=8
    # m = 10; m - x = [0, 3, 7, 30]; d = min(., 8) = [0, 3, 7, 8]
    # s = 100 - 10*d = [100, 70, 30, 20]; Z = 220
    x = np.array([10, 7, 3, -20], np.int8)
    p = HCCSParams(100, 10, 8)
    # i16+div: rho = 32767 // 220 = 148 (220*148 = 32560, 220*149 = 32780 > 32767)
    #          p = 148*s = [14800, 10360, 4440, 2960], sum 32560 = 32767 - 207
    assert hccs_int(x, p, "i16", "div").tolist() == [14800, 10360, 4440, 2960]
    # u8+div: rho = (255 << 15) // 220 = 8355840 // 220 = 37981 (220*37981 = 8355820)
    #         s*rho >> 15: 3798100/32768 = 115.9, 2658670/32768 = 81.1, 1139430/32768 = 34.8,
    #         759620/32768 = 23.2 -> [115, 81, 34, 23]
    assert hccs_int(x, p, "u8", "div").tolist() == [115, 81, 34, 23]
    # i16+clb: k = floor(log2 220) = 7 (128 <= 220 < 256); rho = 32767 >> 7 = 255
    #          p = 255*s = [25500, 17850, 7650, 5100]  (no saturation; overshoot 56100/32767)
    assert hccs_int(x, p, "i16", "clb").tolist() == [25500, 17850, 7650, 5100]
    # u8+clb: rho = 255 << (15 - 7) = 65280; s*65280 >> 15 = floor(s*255/128):
    #         25500/128 = 199.2, 17850/128 = 139.5, 7650/128 = 59.8, 5100/128 = 39.8
    assert hccs_int(x, p, "u8", "clb").tolist() == [199, 139, 59, 39]


def test_hand_case_clb_at_exact_power_of_two():
    # x = [0, -1, -3, -90], B=40, S=4, D=4: d = [0, 1, 3, 4]; s = [40, 36, 28, 24]; Z = 128 = 2**7
    # At Z = 2**k the shift is the exact division, so clb == div:
    #   i16: 32767 >> 7 = 255 = 32767 // 128 -> p = 255*s = [10200, 9180, 7140, 6120]
    #   u8:  255 << 8 = 65280 = 8355840 // 128 -> p = floor(s*255/128) = [79, 71, 55, 47]
    x = np.array([0, -1, -3, -90], np.int8)
    p = HCCSParams(40, 4, 4)
    for recip in ("div", "clb"):
        assert hccs_int(x, p, "i16", recip).tolist() == [10200, 9180, 7140, 6120]
        assert hccs_int(x, p, "u8", recip).tolist() == [79, 71, 55, 47]


def test_hand_case_clb_just_below_power_of_two_and_saturation():
    # three equal keys, B=85, S=0: Z = 255 = 2**8 - 1, k = 7
    #   i16+div: 32767 // 255 = 128 -> 85*128 = 10880 each
    #   i16+clb: 32767 >> 7 = 255 -> 85*255 = 21675 each (1.99x, the worst case)
    x = np.array([9, 9, 9], np.int8)
    p = HCCSParams(85, 0, 0)
    assert hccs_int(x, p, "i16", "div").tolist() == [10880] * 3
    assert hccs_int(x, p, "i16", "clb").tolist() == [21675] * 3
    # one key, B=200: Z = 200, k = 7
    #   i16+div: 32767 // 200 = 163 -> 32600
    #   i16+clb: 255*200 = 51000 -> saturates to 32767
    #   u8+div:  8355840 // 200 = 41779 -> 200*41779 >> 15 = 8355800/32768 = 254.99 -> 254
    #   u8+clb:  200*65280 >> 15 = 398 -> saturates to 255
    x = np.array([5], np.int8)
    p = HCCSParams(200, 0, 0)
    assert hccs_int(x, p, "i16", "div").tolist() == [32600]
    assert hccs_int(x, p, "i16", "clb").tolist() == [32767]
    assert hccs_int(x, p, "u8", "div").tolist() == [254]
    assert hccs_int(x, p, "u8", "clb").tolist() == [255]


def test_hand_case_distance_beyond_int8():
    # x = [127, -128]: m - x = 255, which only fits in the unsigned 8-bit domain; D = 127 clips it
    # B=127, S=1, D=127: s = [127, 127 - 127] = [127, 0]; Z = 127
    # i16+div: 32767 // 127 = 258 (127*258 = 32766) -> [32766, 0]
    x = np.array([127, -128], np.int8)
    assert hccs_int(x, HCCSParams(127, 1, 127), "i16", "div").tolist() == [32766, 0]


def test_hand_case_u8_clb_can_exceed_twice_div_by_one():
    # x = [-2, -2, -5, -6], B=294, S=22, D=8: d = [0, 0, 3, 4]; s = [294, 294, 228, 206]; Z = 1022
    # u8+div: rho = 8355840 // 1022 = 8175; key 2: 228*8175 = 1863900 >> 15 = 56 (56.88 floored)
    # u8+clb: k = 9, rho = 255 << 6 = 16320; key 2: 228*16320 = 3720960 >> 15 = 113 (113.55)
    # rho_clb = 16320 <= 2*rho_div = 16350, but the floors make 113 = 2*56 + 1.
    x = np.array([-2, -2, -5, -6], np.int8)
    p = HCCSParams(294, 22, 8)
    assert hccs_int(x, p, "u8", "div")[2] == 56
    assert hccs_int(x, p, "u8", "clb")[2] == 113


# ---------------------------------------------------------------------------------------------
# the slow reference on many rows


@pytest.mark.parametrize("out,recip", VARIANTS)
def test_matches_slow_reference_on_many_rows(out, recip):
    rng = np.random.default_rng(7)
    for n in (1, 3, 17, 128):
        region = valid_region(n, B_max=2000)
        for params in region[rng.integers(0, len(region), 12)]:
            p = HCCSParams(*map(int, params))
            centre = rng.integers(-128, 128)
            x = np.clip(centre - rng.exponential(rng.uniform(1, 60), (6, n)), -128, 127).astype(np.int8)
            mask = rng.random((6, n)) < 0.8
            mask[0] = False  # one all-masked row
            for m in (None, mask):
                got = hccs_int(x, p, out, recip, mask=m)
                want, _ = reference(x, p, out, recip, m)
                assert got.dtype == (np.int16 if out == "i16" else np.uint8)
                np.testing.assert_array_equal(as_int(got), want, err_msg=f"{p} n={n} mask={m is not None}")


@FAST
@given(case(with_mask=True))
def test_matches_slow_reference_property(c):
    x, p, mask = c
    for out, recip in VARIANTS:
        for m in (None, mask):
            want, _ = reference(x, p, out, recip, m)
            np.testing.assert_array_equal(as_int(hccs_int(x, p, out, recip, mask=m)), want)


def test_leading_axes_and_large_batches_match_row_by_row():
    # more rows than one internal chunk, with three leading axes
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (3, 5, 700, 64)).astype(np.int8)
    p = HCCSParams(300, 5, 40)
    for out, recip in VARIANTS:
        got = hccs_int(x, p, out, recip)
        assert got.shape == x.shape
        for idx in [(0, 0, 0), (2, 4, 699), (1, 3, 350)]:
            want, _ = reference(x[idx][None], p, out, recip)
            np.testing.assert_array_equal(as_int(got[idx]), want[0])


# ---------------------------------------------------------------------------------------------
# properties


@FAST
@given(case())
def test_nonnegative_order_preserving_and_max_on_top(c):
    x, p = c
    xi = x.astype(np.int64)
    for out, recip in VARIANTS:
        q = as_int(hccs_int(x, p, out, recip))
        assert (q >= 0).all()
        # weak order preservation: x_i >= x_j  =>  p_i >= p_j, over all pairs
        ge_x = xi[:, :, None] >= xi[:, None, :]
        ge_p = q[:, :, None] >= q[:, None, :]
        assert not (ge_x & ~ge_p).any()
        # the row max gets the largest value
        top = np.take_along_axis(q, xi.argmax(-1)[:, None], -1)[:, 0]
        np.testing.assert_array_equal(top, q.max(-1))


@FAST
@given(case(with_mask=True))
def test_div_row_sum_bounds(c):
    x, p, mask = c
    for m in (None, mask):
        _, Z = reference(x, p, "i16", "div", m)
        live = Z > 0
        # i16: sum = Z * (32767 // Z) and Z*(32767//Z) > 32767 - Z (the remainder is < Z)
        total = as_int(hccs_int(x, p, "i16", "div", mask=m)).sum(-1)
        assert (total[live] <= 32767).all()
        assert (total[live] > 32767 - Z[live]).all()
        assert (total[~live] == 0).all()
        # u8 (derivation): rho = floor(255*2**15 / Z), p_i = floor(s_i*rho / 2**15).
        #   upper: sum p_i <= sum s_i*rho / 2**15 = Z*rho / 2**15 <= 255 (so 255 never saturates);
        #   lower: Z*rho >= 255*2**15 - (Z - 1) (division remainder), and each floor of an integer
        #   over 2**15 loses at most (2**15 - 1)/2**15, only on keys with s_i > 0 (n_pos of them):
        #   2**15 * sum >= 255*2**15 - (Z - 1) - n_pos*(2**15 - 1).
        q8 = as_int(hccs_int(x, p, "u8", "div", mask=m))
        q16 = as_int(hccs_int(x, p, "i16", "div", mask=m))
        n_pos = (q16 > 0).sum(-1)  # 32767 // Z >= 1, so an i16 output is > 0 exactly when s_i > 0
        s8 = q8.sum(-1)
        assert (s8[live] <= 255).all()
        lower = 255 * 2**15 - (Z[live] - 1) - n_pos[live] * (2**15 - 1)
        assert (2**15 * s8[live] >= lower).all()


@FAST
@given(case(with_mask=True))
def test_clb_between_div_and_twice_div(c):
    x, p, mask = c
    # i16: 2**k <= Z < 2**(k+1) gives 32767 >> k >= 32767 // Z, and 32767 // Z >= 2**(14-k), so
    # rho_clb = 2**(15-k) - 1 < 2*rho_div: the clb output lies in [div, 2*div].
    div = as_int(hccs_int(x, p, "i16", "div", mask=mask))
    clb = as_int(hccs_int(x, p, "i16", "clb", mask=mask))
    assert (div <= clb).all() and (clb <= 2 * div).all()
    # u8: rho_clb = 255*2**(15-k) <= 2*rho_div as well, but floor(2a) can be 2*floor(a) + 1
    # (see test_hand_case_u8_clb_can_exceed_twice_div_by_one), so the bound is 2*div + 1.
    div = as_int(hccs_int(x, p, "u8", "div", mask=mask))
    clb = as_int(hccs_int(x, p, "u8", "clb", mask=mask))
    assert (div <= clb).all() and (clb <= 2 * div + 1).all()


@FAST
@given(case(), st.integers(-255, 255))
def test_shift_invariance(c, shift):
    x, p = c
    xi = x.astype(np.int64)
    shift = int(np.clip(shift, -128 - xi.min(), 127 - xi.max()))  # no saturation
    y = (xi + shift).astype(np.int8)
    for out, recip in VARIANTS:
        np.testing.assert_array_equal(hccs_int(x, p, out, recip), hccs_int(y, p, out, recip))


@FAST
@given(case(with_mask=True))
def test_mask_and_valid_len_equal_slicing(c):
    x, p, mask = c
    r, n = x.shape
    rng = np.random.default_rng(int(x.sum()) % 1000)
    vl = rng.integers(0, n + 1, r)
    for out, recip in VARIANTS:
        by_len = hccs_int(x, p, out, recip, valid_len=vl)
        by_mask = hccs_int(x, p, out, recip, mask=mask)
        for i in range(r):
            if vl[i]:
                np.testing.assert_array_equal(by_len[i, :vl[i]], hccs_int(x[i, :vl[i]], p, out, recip))
            assert (by_len[i, vl[i]:] == 0).all()
            if mask[i].any():
                np.testing.assert_array_equal(by_mask[i, mask[i]], hccs_int(x[i, mask[i]], p, out, recip))
            assert (by_mask[i, ~mask[i]] == 0).all()
    # float paths follow the same rule
    xf = x.astype(np.float64) * 0.25
    for fn in (lambda a, m: hccs_float(a, p, 0.25, mask=m), softmax):
        got = fn(xf, mask)
        for i in range(r):
            if mask[i].any():
                np.testing.assert_allclose(got[i, mask[i]], fn(xf[i, mask[i]], None), rtol=1e-12, atol=1e-15)
            assert (got[i, ~mask[i]] == 0).all()


def test_all_masked_rows_are_zero():
    x = np.array([[3, 1, -4], [5, 5, 5]], np.int8)
    mask = np.array([[False] * 3, [True, False, True]])
    p = HCCSParams(50, 2, 10)
    for out, recip in VARIANTS:
        q = hccs_int(x, p, out, recip, mask=mask)
        assert (q[0] == 0).all() and q[1, 1] == 0 and q[1, 0] == q[1, 2] > 0
        assert (hccs_int(x, p, out, recip, valid_len=np.array([0, 3]))[0] == 0).all()
    xf = x.astype(np.float32)
    for res in (hccs_float(xf, p, 0.5, mask=mask), softmax(xf, mask=mask),
                hccs_float(torch.tensor(xf), p, 0.5, mask=torch.tensor(mask)).numpy(),
                softmax(torch.tensor(xf), mask=torch.tensor(mask)).numpy()):
        assert np.isfinite(res).all() and (res[0] == 0).all()
        assert res[1, 1] == 0 and res[1, 0] == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# the real-valued reading


@FAST
@given(case(), st.floats(0.01, 3.0), st.floats(-50, 50))
def test_float_agrees_with_int_within_rounding(c, scale, offset):
    x, p = c
    logits = x.astype(np.float64) * scale + offset  # logits on the int8 grid of step `scale`
    pf = hccs_float(logits, p, scale)
    pi = as_int(hccs_int(x, p, "i16", "div"))
    # int: p_i = s_i * (32767 // Z); float: p_i = s_i / Z. So 32767*pf - pi = s_i * frac(32767/Z)
    # lies in [0, s_i), and s_i = pf_i * Z with Z = B / pf_max (the max key scores s = B).
    gap = 32767 * pf - pi
    s = pf * (p.B / pf.max(-1, keepdims=True))
    tol = 1e-6 * 32767
    assert (gap >= -tol).all()
    assert (gap < s + tol).all()
    np.testing.assert_allclose(pf.sum(-1), 1.0, rtol=1e-12)


@FAST
@given(case(with_mask=True), st.floats(0.05, 2.0))
def test_numpy_and_torch_paths_agree(c, scale):
    x, p, mask = c
    logits = x.astype(np.float64) * scale + np.linspace(0, 0.3, x.shape[-1])  # off the grid too
    t = torch.tensor(logits)
    for m in (None, mask):
        tm = None if m is None else torch.tensor(m)
        np.testing.assert_allclose(hccs_float(t, p, scale, mask=tm).numpy(), hccs_float(logits, p, scale, mask=m),
                                   rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(softmax(t, mask=tm).numpy(), softmax(logits, mask=m), rtol=1e-12, atol=1e-15)
    # params as a triple of tensors broadcasting per "head" ([heads, 1, 1]) vs one call per head
    B = torch.tensor([[[float(p.B)]], [[float(p.B) + 3]]])
    S = torch.tensor([[[float(p.S)]], [[0.0]]])
    D = torch.tensor([[[float(p.D)]], [[5.0]]])
    sc = torch.tensor([[[scale]], [[2 * scale]]])
    both = hccs_float(torch.stack([t, t]), (B, S, D), sc)
    for h in range(2):
        one = hccs_float(logits, (B[h].item(), S[h].item(), D[h].item()), sc[h].item())
        np.testing.assert_allclose(both[h].numpy(), one, rtol=1e-12, atol=1e-15)


def test_softmax_matches_torch_and_float32_stays_float32():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4, 9)).astype(np.float32)
    np.testing.assert_allclose(softmax(logits), torch.softmax(torch.tensor(logits), -1).numpy(), rtol=1e-5)
    assert hccs_float(logits, HCCSParams(10, 1, 5), 0.5).dtype == np.float32


def test_hccs_float_gradcheck_in_logits_and_parameters():
    # one row away from every kink: distinct logits, the max unique, no distance near D*scale
    logits = torch.tensor([[3.0, 2.1, 1.3, -0.2, -7.9, 0.6]], dtype=torch.float64, requires_grad=True)
    B = torch.tensor(100.0, dtype=torch.float64, requires_grad=True)
    S = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    D = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)  # clips only the -7.9 key (21.8 steps)
    scale = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True, True, True, False]])

    def f(lg, b, s, d, sc):
        return hccs_float(lg, (b, s, d), sc, mask=mask)

    assert torch.autograd.gradcheck(f, (logits, B, S, D, scale), eps=1e-6, atol=1e-8)
    # masked keys get no gradient, and an all-masked row gives finite zero gradients
    lg = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    sc = torch.tensor(0.25, dtype=torch.float64, requires_grad=True)
    m = torch.tensor([[False, False, False], [True, True, False]])
    out = hccs_float(lg, (B, S, D), sc, mask=m)
    (out * torch.arange(6.0, dtype=torch.float64).reshape(2, 3)).sum().backward()
    assert torch.isfinite(lg.grad).all() and torch.isfinite(sc.grad) and torch.isfinite(S.grad)
    assert (lg.grad[0] == 0).all() and lg.grad[1, 2] == 0


# ---------------------------------------------------------------------------------------------
# quantisation, scale choice, the valid region


def test_quantize_logits_rounds_saturates_and_centres():
    logits = np.array([[1.0, 0.74, 0.76, -100.0]])
    # centred: max -> 127; (0.74 - 1)/0.5 = -0.52 -> 126.48 -> 126; -0.48 -> 126.52 -> 127 (nearest);
    # -101/0.5 = -202 -> -75
    assert quantize_logits(logits, 0.5).tolist() == [[127, 126, 127, -75]]
    # uncentred: 1/0.01 = 100, 74, 76, -10000 -> saturates at -128
    assert quantize_logits(logits, 0.01, center=False).tolist() == [[100, 74, 76, -128]]
    # half to even: 2.5 -> 2, 3.5 -> 4; and saturation at the top
    assert quantize_logits(np.array([2.5, 3.5, 900.0]), 1.0, center=False).tolist() == [2, 4, 127]
    # masked keys become -128 and are left out of the max; NaN under the mask is fine
    q = quantize_logits(np.array([[0.0, np.nan, -1.0]]), 0.1, mask=np.array([[True, False, True]]))
    assert q.tolist() == [[127, -128, 117]]
    # one scale per head [heads, 1] against logits [heads, rows, n]
    lg = np.array([[[0.0, -1.0]], [[0.0, -1.0]]])
    assert quantize_logits(lg, np.array([[0.1], [1.0]])).tolist() == [[[127, 117]], [[127, 126]]]


def test_quantized_hccs_equals_float_hccs_on_the_grid():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (50, 32))
    scale = choose_scale(logits)
    q = quantize_logits(logits, scale)
    p = HCCSParams(500, 3, 100)
    gap = 32767 * hccs_float(q.astype(np.float64) * scale, p, scale) - as_int(hccs_int(q, p))
    assert gap.min() > -1e-6 and gap.max() < p.B


def test_choose_scale_percentile_and_max():
    # max-centred distances of the two rows: [0, 1, 2, 3] and [0, 10, 20, 30]
    logits = np.array([[3.0, 2.0, 1.0, 0.0], [30.0, 20.0, 10.0, 0.0]])
    assert choose_scale(logits, percentile=None) == pytest.approx(30 / 127)
    assert choose_scale(logits, percentile=50.0) == pytest.approx(np.percentile([0, 1, 2, 3, 0, 10, 20, 30], 50) / 127)
    assert choose_scale(np.zeros((2, 3))) == 1.0
    with pytest.raises(ValueError, match="no unmasked logits"):
        choose_scale(logits, mask=np.zeros((2, 4), bool))


def test_valid_region_is_exactly_the_constraints():
    # brute force over every integer triple for a long row (B <= 32767 // 2000 = 16)
    n = 2000
    got = {tuple(map(int, r)) for r in valid_region(n)}
    want = {(B, S, D) for B in range(1, 17) for S in range(128) for D in range(128)
            if B - S * D >= 0 and n * B <= 32767}
    assert got == want
    assert max_base(128) == 255 and max_base(1) == 32767
    region = valid_region(128, B_max=40)
    assert all(HCCSParams(*map(int, r)).is_valid(128) for r in region[::97])
    assert region[:, 0].max() == 40


# ---------------------------------------------------------------------------------------------
# bad input


def test_nan_and_inf_name_the_number_of_rows():
    logits = np.zeros((4, 5))
    logits[1, 2] = np.nan
    logits[3, 0] = np.inf
    logits[3, 1] = -np.inf
    p = HCCSParams(10, 1, 5)
    for call in (lambda a: hccs_float(a, p, 0.5), softmax, lambda a: quantize_logits(a, 0.5), choose_scale,
                 lambda a: hccs_float(torch.tensor(a), p, 0.5), lambda a: softmax(torch.tensor(a))):
        with pytest.raises(ValueError, match=r"NaN or inf in 2 row\(s\)"):
            call(logits)


def test_empty_last_axis_and_scalars():
    p = HCCSParams(10, 1, 5)
    with pytest.raises(ValueError, match="empty last axis"):
        hccs_int(np.zeros((3, 0), np.int8), p)
    for call in (lambda a: hccs_float(a, p, 0.5), softmax, lambda a: quantize_logits(a, 0.5)):
        with pytest.raises(ValueError, match="empty last axis"):
            call(np.zeros((3, 0)))
    with pytest.raises(ValueError, match="at least one axis"):
        hccs_int(np.int8(3), p)


@pytest.mark.parametrize("bad", [np.zeros(4, np.int16), np.zeros(4, np.uint8), np.zeros(4), [1, 2, 3]])
def test_hccs_int_rejects_non_int8(bad):
    with pytest.raises(TypeError, match="int8"):
        hccs_int(bad, HCCSParams(10, 1, 5))


def test_other_type_errors():
    p = HCCSParams(10, 1, 5)
    with pytest.raises(TypeError, match="numpy int8"):
        hccs_int(torch.zeros(4, dtype=torch.int8), p)
    with pytest.raises(TypeError, match="HCCSParams"):
        hccs_int(np.zeros(4, np.int8), (10, 1, 5))
    with pytest.raises(TypeError, match="float logits"):
        hccs_float(np.zeros(4, np.int64), p, 1.0)
    with pytest.raises(TypeError, match="float logits"):
        softmax(torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="out must be one of"):
        hccs_int(np.zeros(4, np.int8), p, out="i32")
    with pytest.raises(ValueError, match="recip must be one of"):
        hccs_int(np.zeros(4, np.int8), p, recip="newton")
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        hccs_float(np.zeros(4), p, 0.0)


def test_bad_masks_and_valid_lengths():
    x = np.zeros((2, 4), np.int8)
    p = HCCSParams(10, 1, 5)
    with pytest.raises(ValueError, match=r"mask of shape \(3,\) does not broadcast"):
        hccs_int(x, p, mask=np.ones(3, bool))
    with pytest.raises(TypeError, match="mask must be boolean"):
        hccs_int(x, p, mask=np.ones((2, 4), np.int64))
    with pytest.raises(ValueError, match="does not broadcast"):
        hccs_float(torch.zeros(2, 4), p, 1.0, mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be boolean"):
        softmax(torch.zeros(2, 4), mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="valid_len has shape"):
        hccs_int(x, p, valid_len=np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"valid_len must lie in \[0, 4\]"):
        hccs_int(x, p, valid_len=np.array([1, 5]))
    with pytest.raises(TypeError, match="valid_len must hold integers"):
        hccs_int(x, p, valid_len=np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="either mask or valid_len"):
        hccs_int(x, p, mask=np.ones((2, 4), bool), valid_len=np.array([1, 2]))


@pytest.mark.parametrize("params,n,message", [
    (HCCSParams(260, 1, 1), 128, "n*B = 33280 > 32767 for n=128, B=260"),
    (HCCSParams(0, 0, 0), 4, "B = 0 < 1"),
    (HCCSParams(10, 128, 0), 4, "S = 128 outside [0, 127]"),
    (HCCSParams(10, -1, 0), 4, "S = -1 outside [0, 127]"),
    (HCCSParams(10, 0, 128), 4, "D = 128 outside [0, 127]"),
    (HCCSParams(10, 0, -2), 4, "D = -2 outside [0, 127]"),
    (HCCSParams(10, 2, 6), 4, "B - S*D = 10 - 2*6 = -2 < 0"),
])
def test_each_broken_constraint_is_named_with_its_numbers(params, n, message):
    assert not params.is_valid(n)
    assert any(message in v for v in params.violations(n))
    with pytest.raises(ValueError) as err:
        params.validate(n)
    assert message in str(err.value)
    with pytest.raises(ValueError) as err:
        hccs_int(np.zeros(n, np.int8), params)
    assert message in str(err.value)
    with pytest.raises(ValueError) as err:
        hccs_float(np.zeros(n), params, 1.0)
    assert message in str(err.value)


def test_several_broken_constraints_are_all_listed():
    v = HCCSParams(300, 200, 3).violations(128)
    assert len(v) == 3  # S out of range, B - S*D < 0, n*B too large


def test_params_must_be_integers():
    for bad in (1.5, 2.0, "3", None, True, np.float32(4)):
        with pytest.raises(TypeError, match="must be an integer"):
            HCCSParams(bad, 0, 0)
    p = HCCSParams(np.int64(5), np.int16(1), np.uint8(3))
    assert type(p.B) is int and p.as_dict() == {"B": 5, "S": 1, "D": 3}
    with pytest.raises(ValueError, match="positive integer"):
        p.validate(0)
