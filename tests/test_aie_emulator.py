"""The emulator runs each kernel IR bit for bit like hccs_int (the independent reference)."""
import numpy as np
import pytest

from hccs_lab import HCCSParams, hccs_int
from hccs_lab.aie.emulator import Emulator, bf16_round, emulate_kernel
from hccs_lab.aie.kernels import HCCS_SCHEDULES, HCCS_VARIANTS, hccs_kernel, reference_kernel, rho_bound
from hccs_lab.core import max_base
from hccs_lab.aie.testrows import hard_rows

ROWS_PER_CASE = 100_000


def param_sets(n: int):
    """Corners of the valid region for n: max base, zero slope, zero clip, floor score exactly 0, small Z."""
    top = max_base(n)
    return [
        HCCSParams(top, 127 if top >= 127 * 127 else top // 127, 127),
        HCCSParams(top, 0, 50),
        HCCSParams(200 if n <= 128 else 100, 3, 0),
        HCCSParams(127 * 5, 5, 127),       # B == S*D: far keys score exactly 0
        HCCSParams(1, 0, 0),               # Z = n only: the reciprocal is at its largest
        HCCSParams(2, 1, 2),               # Z can be 2: the u8 reciprocal needs 32 bits
        HCCSParams(min(top, 180), 2, 40),
    ]


@pytest.mark.parametrize("n", [32, 64, 128, 256])
@pytest.mark.parametrize("variant", HCCS_VARIANTS)
def test_emulator_matches_hccs_int_on_100k_rows(n, variant):
    out, recip = variant.split("-")
    sets = [p for p in param_sets(n) if p.is_valid(n)]
    assert len(sets) >= 5
    per = -(-ROWS_PER_CASE // len(sets))
    total = 0
    for j, p in enumerate(sets):
        x = hard_rows(n, per, seed=1000 * n + j)
        ref = hccs_int(x, p, out=out, recip=recip)
        for schedule in HCCS_SCHEDULES:
            got = emulate_kernel(hccs_kernel(p, variant, "aie-ml", n, schedule), x)
            assert got.dtype == ref.dtype
            bad = np.flatnonzero((got != ref).any(axis=1))
            assert bad.size == 0, f"{variant} {schedule} n={n} {p}: {bad.size} rows differ, first {x[bad[0]]}"
        total += len(x)
    assert total >= ROWS_PER_CASE


def test_wide_reciprocal_path_is_exercised():
    # the u8 reciprocal at Z=2 is 255<<14: the kernel must take the 32-bit path and still be exact
    p = HCCSParams(2, 1, 2)
    assert rho_bound(p, "u8-div", 32) > 32767
    x = np.full((1, 32), -100, np.int8)
    x[0, 0] = 100  # Z = 2 + 31*0 = 2: p[0] = min(255, (2 * (255 << 14)) >> 15) = 255
    for variant, schedule in (("u8-div", "wide64x1"), ("u8-clb", "paper")):
        k = hccs_kernel(p, variant, "aie-ml", 32, schedule)
        assert k.params["wide_rho"] == 1
        out, recip = variant.split("-")
        assert emulate_kernel(k, x)[0, 0] == 255 == hccs_int(x, p, out=out, recip=recip)[0, 0]
    # our u8-clb schedules need no reciprocal at all: sat((s*255) >> k) is the same number
    k = hccs_kernel(p, "u8-clb", "aie-ml", 32, "wide64x1")
    assert k.params["wide_rho"] == 0 and emulate_kernel(k, x)[0, 0] == 255


VALID_LEN_ROWS = 20_000


@pytest.mark.parametrize("n", [32, 64, 128])
@pytest.mark.parametrize("variant", HCCS_VARIANTS)
def test_valid_length_kernels_match_hccs_int(n, variant):
    """Keys at or past the row's valid length get exactly 0 and take no part in max or Z; random
    lengths with 0 and n included; every schedule; the parameter corners."""
    out, recip = variant.split("-")
    rng = np.random.default_rng(n)
    sets = [p for p in param_sets(n) if p.is_valid(n)]
    per = -(-VALID_LEN_ROWS // len(sets))
    for j, p in enumerate(sets):
        x = hard_rows(n, per, seed=77 * n + j)
        vl = rng.integers(0, n + 1, size=len(x))
        vl[:4] = [0, n, 1, n - 1]
        ref = hccs_int(x, p, out=out, recip=recip, valid_len=vl)
        for schedule in HCCS_SCHEDULES:
            k = hccs_kernel(p, variant, "aie-ml", n, schedule, valid_len=True)
            got = emulate_kernel(k, x, vl)
            bad = np.flatnonzero((got != ref).any(axis=1))
            assert bad.size == 0, f"{variant} {schedule} n={n} {p}: {bad.size} rows differ, first length {vl[bad[0]]}"
        assert not emulate_kernel(k, x[:1], np.array([0])).any()  # an empty row is all zeros


def test_valid_length_is_checked():
    k = hccs_kernel(HCCSParams(100, 2, 30), "u8-clb", "aie-ml", 64, valid_len=True)
    x = np.zeros((3, 64), np.int8)
    with pytest.raises(ValueError, match="takes a per-row valid length"):
        emulate_kernel(k, x)
    with pytest.raises(ValueError, match=r"\[0, 64\]"):
        emulate_kernel(k, x, np.array([0, 65, 3]))
    with pytest.raises(ValueError, match="shape"):
        emulate_kernel(k, x, np.array([1, 2]))
    with pytest.raises(TypeError, match="integers"):
        emulate_kernel(k, x, np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="without valid-length"):
        emulate_kernel(hccs_kernel(HCCSParams(100, 2, 30), "u8-clb", "aie-ml", 64), x, np.array([1, 2, 3]))


AIE4ML_ROWS = 100_000


@pytest.mark.parametrize("variant", HCCS_VARIANTS)
def test_aie4ml_kernels_match_hccs_int_inside_its_rules(variant):
    """aie4ml's linear softmax_i8 and tiled softmax_i8_tiled as IR: bit-exact with hccs_int on
    every head aie4ml accepts (n*(B - S*D) >= 256), >= 100k rows per variant and layout."""
    from hccs_lab.aie.aie4ml import aie4ml_kernel
    from hccs_lab.core.params import target_violations

    out, recip = variant.split("-")
    cases = [(n, p) for n in (32, 64, 128) for p in param_sets(n)
             if p.is_valid(n) and not target_violations(p, n, "aie4ml")]
    assert len(cases) >= 9
    per = -(-AIE4ML_ROWS // len(cases)) // 4 * 4 + 4  # whole 4-row bands, plus a ragged tail below
    total = 0
    for j, (n, p) in enumerate(cases):
        x = hard_rows(n, per + (j % 3), seed=500 + j)
        ref = hccs_int(x, p, out=out, recip=recip)
        for layout in ("linear", "tiled"):
            got = emulate_kernel(aie4ml_kernel(p, variant, "aie-ml", n, layout), x)
            bad = np.flatnonzero((got != ref).any(axis=1))
            assert bad.size == 0, f"aie4ml {layout} {variant} n={n} {p}: {bad.size} rows differ"
        total += len(x)
    assert total >= AIE4ML_ROWS


def test_aie4ml_kernel_refuses_heads_outside_its_rules():
    from hccs_lab.aie.aie4ml import aie4ml_kernel

    with pytest.raises(ValueError, match="256"):
        aie4ml_kernel(HCCSParams(127, 1, 127), "u8-clb", "aie-ml", 32)
    with pytest.raises(ValueError, match="multiple of 32"):
        aie4ml_kernel(HCCSParams(100, 1, 20), "u8-clb", "aie-ml", 40, "linear")
    assert aie4ml_kernel(HCCSParams(100, 1, 20), "u8-clb", "aie-ml", 40, "tiled").n == 40


def test_hand_computed_row():
    # n=32, B=10, S=2, D=3: x = [5, 4, 3, 0, ...]: d = [0,1,2,3,3,...], s = [10,8,6,4,...], Z = 24+29*4 = 140
    x = np.zeros((1, 32), np.int8)
    x[0, :3] = [5, 4, 3]
    p = HCCSParams(10, 2, 3)
    got = emulate_kernel(hccs_kernel(p, "i16-div", "aie-ml", 32, "paper"), x)[0]
    rho = 32767 // 140
    assert got[:4].tolist() == [10 * rho, 8 * rho, 6 * rho, 4 * rho]
    got8 = emulate_kernel(hccs_kernel(p, "u8-clb", "aie-ml", 32, "wide64"), x)[0]
    rho8 = 255 << (15 - 7)  # floor(log2 140) = 7
    assert got8[:2].tolist() == [(10 * rho8) >> 15, (8 * rho8) >> 15]


def test_captured_minilm_rows_bit_exact():
    from hccs_lab.capture import capture_logits
    from hccs_lab.models import load

    texts = ["A gripping, beautifully shot film.", "The plot is thin and the jokes fall flat.",
             "An uneven but often charming comedy about growing up.", "Not worth the ticket."]
    bank = capture_logits(load("minilm-l6"), texts, max_len=32, progress=False)
    assert bank.seq_len == 32
    p = HCCSParams(300, 6, 45)
    checked = 0
    for layer, head in [(0, 0), (2, 5), (5, 11)]:
        rows = bank[layer, head]
        x = rows.int8(scale=0.1)
        for variant in HCCS_VARIANTS:
            out, recip = variant.split("-")
            ref = hccs_int(x, p, out=out, recip=recip)
            for schedule in ("paper", "wide64"):
                assert np.array_equal(emulate_kernel(hccs_kernel(p, variant, "aie-mlv2", 32, schedule), x), ref)
        checked += len(x)
    assert checked > 50


def test_bad_input_is_rejected_clearly():
    k = hccs_kernel(HCCSParams(100, 2, 30), "u8-clb", "aie-ml", 64)
    with pytest.raises(TypeError, match="int8"):
        Emulator(k).run(np.zeros((3, 64), np.int16))
    with pytest.raises(ValueError, match=r"\[rows, 64\]"):
        Emulator(k).run(np.zeros((3, 32), np.int8))
    with pytest.raises(ValueError, match="multiple of 32"):
        hccs_kernel(HCCSParams(100, 2, 30), "u8-clb", "aie-ml", 48)
    with pytest.raises(ValueError, match="not a multiple of 64"):
        hccs_kernel(HCCSParams(100, 2, 30), "u8-clb", "aie-ml", 96, "wide64x1")
    x96 = hard_rows(96, 500, seed=96)
    k96 = hccs_kernel(HCCSParams(100, 2, 30), "u8-clb", "aie-ml", 96)  # the default picks a schedule that covers it
    assert np.array_equal(emulate_kernel(k96, x96), hccs_int(x96, HCCSParams(100, 2, 30), out="u8", recip="clb"))
    with pytest.raises(ValueError, match="n\\*B"):
        hccs_kernel(HCCSParams(1000, 2, 30), "u8-clb", "aie-ml", 64)


def test_references_approximate_softmax():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 2, size=(300, 128)).astype(np.float32)
    sm = np.exp(x - x.max(1, keepdims=True))
    sm /= sm.sum(1, keepdims=True)
    for variant, tol in [("bf16-lut", 0.02), ("bf16-exp2", 0.02), ("bf16-bittrick", 0.06)]:
        y = emulate_kernel(reference_kernel(variant, 128), x)
        rel = np.abs(y - sm).max() / sm.max()
        assert rel < tol, (variant, rel)
        assert np.all(y == bf16_round(y))  # outputs are bf16 values


def test_srs_rounding_and_saturation_by_hand():
    from hccs_lab.aie.emulator import srs

    acc = np.array([5, -5, 6, -6, 7, 300, -300, 383], dtype=np.int64)
    # shift 1: values /2 = 2.5, -2.5, 3, -3, 3.5, 150, -150, 191.5
    assert srs(acc, 1, "int8", "floor", "none").tolist() == [2, -3, 3, -3, 3, 150 - 256, -150 + 256, 191 - 256]
    assert srs(acc, 1, "int8", "floor", "saturate").tolist() == [2, -3, 3, -3, 3, 127, -128, 127]
    assert srs(acc, 1, "int8", "symmetric_inf", "saturate").tolist() == [3, -3, 3, -3, 4, 127, -128, 127]
    assert srs(acc, 1, "int8", "conv_even", "saturate").tolist() == [2, -2, 3, -3, 4, 127, -128, 127]
    assert srs(np.array([-1, 256, 255]), 0, "uint8", "floor", "saturate").tolist() == [0, 255, 255]
    assert srs(np.array([-1, 256, 255]), 0, "uint8", "floor", "none").tolist() == [255, 0, 255]


def test_random_valid_params_property():
    """200 random (B, S, D) drawn from the whole valid region, every variant, random n."""
    from hccs_lab.core import valid_region

    rng = np.random.default_rng(7)
    for n in (32, 64, 128, 256):
        region = valid_region(n, B_max=None if n > 32 else 1023)
        for B, S, D in region[rng.integers(0, len(region), 50)]:
            p = HCCSParams(int(B), int(S), int(D))
            x = hard_rows(n, 64, seed=int(B) * 7 + int(S))
            v = HCCS_VARIANTS[int(rng.integers(0, 4))]
            out, recip = v.split("-")
            k = hccs_kernel(p, v, "aie-ml", n, HCCS_SCHEDULES[int(rng.integers(0, len(HCCS_SCHEDULES)))])
            assert np.array_equal(emulate_kernel(k, x), hccs_int(x, p, out=out, recip=recip)), (n, p, v, k.schedule)
