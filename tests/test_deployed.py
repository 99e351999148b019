"""`hccs_deployed`: bit for bit the integer kernel of DESIGN.md read as probabilities, straight-through in torch.

The expectation is always DESIGN.md's definition written out with the reference pieces:
`hccs_int(quantize_logits(logits, scale, mask), params, out, recip, mask=mask if padding ==
"exclude" else None) / full_scale`, head by head. Rows: random logits of several spreads and
lengths (>= 100,000 rows per variant and padding mode), and logits captured from MiniLM's real
heads with their calibrated per-head parameters.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import hccs_lab
from hccs_lab.core import VARIANTS, HCCSParams, full_scale, hccs_deployed, hccs_float, hccs_int, quantize_logits
from hccs_lab.core import split_variant
from hccs_lab.errors import InputError, InputTypeError

PADDINGS = ("exclude", "as_min")
torch.set_num_threads(2)


def expected(logits, params_per_head, scales, variant, mask, padding):
    """DESIGN.md's definition, head by head: logits [N, H, Lq, Lk], mask broadcasting to it."""
    out, recip = split_variant(variant)
    mask = np.broadcast_to(mask, logits.shape)
    res = np.empty(logits.shape, np.float64)
    for h, (prm, sc) in enumerate(zip(params_per_head, scales)):
        q = quantize_logits(logits[:, h], sc, mask=mask[:, h])
        p = hccs_int(q, prm, out, recip, mask=mask[:, h] if padding == "exclude" else None)
        res[:, h] = p / full_scale(out)
    return res.astype(logits.dtype)


def random_case(seed: int, n: int, rows: int, heads: int = 4):
    """About `rows` random rows as logits [N, H, n, n] with ragged valid lengths, per-head parameters valid for n."""
    rng = np.random.default_rng(seed)
    N = max(1, rows // (heads * n))
    spread = rng.choice([0.3, 2.0, 8.0], size=(N, heads, 1, 1))
    logits = (rng.normal(0, 1, (N, heads, n, n)) * spread).astype(np.float32)
    lengths = rng.integers(1, n + 1, N)
    lengths[0] = n
    mask = (np.arange(n) < lengths[:, None])[:, None, None, :]
    params = []
    for _ in range(heads):
        D = int(rng.integers(0, 128))
        S = int(rng.integers(0, 9))
        top = 32767 // n
        lo = max(1, S * D)
        if lo > top:
            S, lo = 0, 1
        params.append(HCCSParams(int(rng.integers(lo, top + 1)), S, D))
    scales = rng.uniform(0.01, 0.2, heads).astype(np.float32).astype(np.float64)  # exact in float32 tables too
    return logits, mask, params, scales


def as_tables(params, scales):
    t = lambda f: torch.tensor([float(f(p)) for p in params]).view(-1, 1, 1)
    return (t(lambda p: p.B), t(lambda p: p.S), t(lambda p: p.D)), torch.tensor(scales, dtype=torch.float32).view(-1, 1, 1)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("padding", PADDINGS)
def test_equals_hccs_int_on_100k_random_rows(variant, padding):
    rows = 0
    for seed, n in enumerate((7, 32, 64, 128)):
        logits, mask, params, scales = random_case(seed, n, rows=26_000)
        prm, sc = as_tables(params, scales)
        got = hccs_deployed(logits, prm, sc.numpy().astype(np.float64), variant, mask=mask, padding=padding)
        want = expected(logits, params, scales, variant, mask, padding)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
        if n == 64:  # torch in: the same numbers
            got_t = hccs_deployed(torch.from_numpy(logits), prm, sc.double(), variant, mask=torch.from_numpy(mask),
                                  padding=padding)
            np.testing.assert_array_equal(got_t.numpy(), want)
        rows += logits.shape[0] * logits.shape[1] * logits.shape[2]
    assert rows >= 100_000


@pytest.fixture(scope="module")
def captured():
    """MiniLM's layer logits on real sentences (through the attention seam) and a per-head calibration."""
    from hccs_lab.calibrate import calibrate
    from hccs_lab.capture import capture_logits
    from hccs_lab.data import calibration_texts, load_split
    from hccs_lab.models import load
    from hccs_lab.models.attention import observe
    from hccs_lab.retrain import HCCSTables

    loaded = load("minilm-l6")
    cal = calibrate(capture_logits(loaded, calibration_texts(16), max_len=64, progress=False), 64, progress=False,
                    target="aie4ml")
    tables = HCCSTables.from_calibration(cal, loaded.n_layers, loaded.n_heads)
    texts = load_split("test").texts[:24]  # padded to 64 keys: 24 x 12 heads x 64 queries x 6 layers = 110,592 rows
    enc = loaded.tokenizer(texts, padding="max_length", truncation=True, max_length=64, return_tensors="pt")
    seen = {}
    with torch.no_grad(), observe(loaded.model, lambda l, x, k: seen.__setitem__(l, (x.clone(), k.clone()))):
        loaded.model(**enc)
    return seen, tables, cal


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("padding", PADDINGS)
def test_equals_hccs_int_on_captured_minilm_rows(captured, variant, padding):
    seen, tables, cal = captured
    rows = 0
    for layer, (logits, keymask) in seen.items():
        prm = (tables.B[layer], tables.S[layer], tables.D[layer])
        got = hccs_deployed(logits, prm, tables.scale[layer], variant, mask=keymask, padding=padding)
        params = [cal.params(layer, h) for h in range(logits.shape[1])]
        scales = [float(tables.scale[layer][h]) for h in range(logits.shape[1])]
        want = expected(logits.numpy(), params, scales, variant, keymask.numpy(), padding)
        np.testing.assert_array_equal(got.numpy(), want)
        rows += int(np.prod(logits.shape[:-1]))
    assert rows >= 100_000
    # the two padding modes differ exactly where padding exists: as_min gives padded keys their share
    if padding == "as_min":
        logits, keymask = seen[0]
        prm = (tables.B[0], tables.S[0], tables.D[0])
        ex = hccs_deployed(logits, prm, tables.scale[0], variant, mask=keymask, padding="exclude")
        am = hccs_deployed(logits, prm, tables.scale[0], variant, mask=keymask, padding="as_min")
        pad = ~torch.broadcast_to(keymask, logits.shape)
        assert torch.all(ex[pad] == 0) and not torch.equal(am, ex)  # padded keys take part in Z
        if variant.startswith("i16"):  # aie4ml's rule n*(B - S*D) >= 256: the floor score is > 0, and so is Q15
            assert torch.all(am[pad] > 0)


def gradients(x0, prm, sc, mask, variant, padding):
    """(gradient through hccs_deployed, gradient through hccs_float) of the same random weighting of the output."""
    x = x0.clone().requires_grad_(True)
    w = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(0))
    (hccs_deployed(x, prm, sc, variant, mask=mask, padding=padding) * w).sum().backward()
    g_dep = x.grad.clone()
    x.grad = None
    (hccs_float(x, prm, sc, mask=mask) * w).sum().backward()
    return g_dep, x.grad


# params of the logits' dtype take the blockwise backward of deployed_torch; float32 params with
# float64 logits promote, and take hccs_float's autograd graph itself
@pytest.mark.parametrize("params_dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_gradient_is_hccs_floats(variant, params_dtype):
    logits, mask, params, scales = random_case(3, 16, rows=16 * 40 * 3, heads=3)
    prm, sc = as_tables(params, scales)
    prm = tuple(p.to(params_dtype) for p in prm)
    x = torch.from_numpy(logits).double()
    for m in (torch.from_numpy(mask), None):
        for padding in PADDINGS:
            g_dep, g_float = gradients(x, prm, sc.double(), m, variant, padding)
            assert torch.equal(g_dep, g_float) and g_dep.abs().sum() > 0
    y = hccs_deployed(x.requires_grad_(True), prm, sc.double(), variant, mask=torch.from_numpy(mask), padding="as_min")
    # forward is still the integer output exactly (the straight-through term adds exactly 0)
    want = expected(logits.astype(np.float64), params, scales, variant, mask, "as_min")
    np.testing.assert_array_equal(y.detach().numpy(), want)


def test_torch_gradient_on_captured_minilm_rows_is_hccs_floats(captured):
    """What QAT runs: float32 logits of a real layer, its per-head float32 tables, the seam's [N, 1, Lq, Lk] mask."""
    seen, tables, _ = captured
    for layer in (0, 5):
        logits, keymask = seen[layer]
        prm = (tables.B[layer], tables.S[layer], tables.D[layer])
        g_dep, g_float = gradients(logits[:8], prm, tables.scale[layer], keymask[:8], "u8-clb", "as_min")
        assert torch.equal(g_dep, g_float) and g_dep.abs().sum() > 0


def test_gradient_reaches_tensor_parameters_and_scale():
    logits, mask, params, scales = random_case(5, 12, rows=12 * 10 * 2, heads=2)
    (B, S, D), sc = as_tables(params, scales)
    for t in (B, S, D, sc):
        t.requires_grad_(True)
    y = hccs_deployed(torch.from_numpy(logits), (B, S, D), sc, "u8-clb", mask=torch.from_numpy(mask))
    (y ** 2).sum().backward()
    assert B.grad is not None and sc.grad is not None and torch.isfinite(sc.grad).all()


def test_scalar_params_and_public_export():
    assert hccs_lab.hccs_deployed is hccs_deployed
    rng = np.random.default_rng(1)
    x = rng.normal(0, 2, (50, 64))
    p = HCCSParams(400, 3, 80)
    for v in VARIANTS:
        o, r = split_variant(v)
        np.testing.assert_array_equal(hccs_deployed(x, p, 0.05, v), hccs_int(quantize_logits(x, 0.05), p, o, r) / full_scale(o))


def test_bad_input_is_a_clear_error():
    x = np.zeros((2, 8))
    with pytest.raises(InputError, match="variant"):
        hccs_deployed(x, HCCSParams(10, 1, 5), 0.1, "u8-fast")
    with pytest.raises(InputError, match="padding"):
        hccs_deployed(x, HCCSParams(10, 1, 5), 0.1, "u8-clb", padding="zero")
    with pytest.raises(InputTypeError, match="float logits"):
        hccs_deployed(x.astype(np.int8), HCCSParams(10, 1, 5), 0.1, "u8-clb")
    with pytest.raises(InputError, match="integers"):
        hccs_deployed(np.zeros((1, 2, 3, 8)), (np.array([10.5, 10]), 1, 5), 0.1, "u8-clb")
    with pytest.raises(InputError, match="invalid for n=8"):
        hccs_deployed(x, HCCSParams(10, 3, 5), 0.1, "u8-clb")


def test_bad_torch_input_is_a_clear_error():
    p = (torch.tensor(10.0), torch.tensor(1.0), torch.tensor(5.0))
    x = torch.zeros(2, 3, 8)
    x[1, 2, 4] = float("nan")
    x[0, 0, 0] = float("-inf")
    with pytest.raises(InputError, match="NaN or inf in 2 row"):
        hccs_deployed(x, p, 0.1, "u8-clb")
    keep = torch.ones(2, 3, 8, dtype=torch.bool)
    keep[0, 0, 0] = keep[1, 2, 4] = False  # masked keys may hold anything
    assert torch.all(torch.isfinite(hccs_deployed(x, p, 0.1, "u8-clb", mask=keep, padding="exclude")))
    with pytest.raises(InputTypeError, match="mask must be boolean"):
        hccs_deployed(torch.zeros(2, 8), p, 0.1, "u8-clb", mask=torch.ones(2, 8))
    with pytest.raises(InputError, match="does not broadcast"):
        hccs_deployed(torch.zeros(2, 8), p, 0.1, "u8-clb", mask=torch.ones(3, 8, dtype=torch.bool))
    with pytest.raises(InputError, match="scale must be finite and > 0"):
        hccs_deployed(torch.zeros(2, 8), p, 0.0, "u8-clb")
    with pytest.raises(InputTypeError, match="float logits"):
        hccs_deployed(torch.zeros(2, 8, dtype=torch.int8), p, 0.1, "u8-clb")
    with pytest.raises(InputError, match="invalid for n=8"):
        hccs_deployed(torch.zeros(2, 8), (torch.tensor(10.0), torch.tensor(3.0), torch.tensor(5.0)), 0.1, "u8-clb")

