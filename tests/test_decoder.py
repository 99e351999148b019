"""SmolLM2-135M (a real decoder: Llama family, grouped-query, causal) through the hccs_lab seam.

One model load per module (the dequantized copy under the cache folder; the first run of a machine
builds it from the GGUF, about 40 s). Everything else runs on a few short windows.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hccs_lab import softmax
from hccs_lab.models import attention, decoders
from hccs_lab.retrain.controls import constant_tables

TEXTS = [
    "The quick brown fox jumps over the lazy dog near the river bank today.",
    "Paris is the capital of France.",
    "Hi",
]


@pytest.fixture(scope="module")
def loaded():
    from hccs_lab.models import load

    torch.manual_seed(0)
    return load("smollm2-135m")


@pytest.fixture(scope="module")
def eager(loaded):
    """The same weights with transformers' own eager attention (the reference)."""
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(decoders.cache_folder()), attn_implementation="eager",
                                             dtype=torch.float32)
    return m.eval()


@pytest.fixture(scope="module")
def padded(loaded):
    return loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")


@pytest.fixture(scope="module")
def captured(loaded, eager, padded):
    got = {}

    def obs(layer, lg, km):
        got[layer] = (lg.detach().clone(), torch.broadcast_to(km, lg.shape).clone())

    with torch.no_grad(), attention.observe(loaded.model, obs):
        ours = loaded.model(**padded, output_attentions=True)
    with torch.no_grad():
        ref = eager(**padded, output_attentions=True)
    return got, ours, ref


def test_shape_and_name(loaded):
    assert (loaded.n_layers, loaded.n_heads, loaded.causal) == (30, 9, True)
    assert loaded.model.config.num_key_value_heads == 3
    assert [decoders.kv_head(loaded, h) for h in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_softmax_of_captured_logits_is_eager_attention(captured, padded):
    got, ours, ref = captured
    assert torch.equal(ours.logits, ref.logits)  # nothing attached: bit-for-bit eager
    valid_q = padded["attention_mask"].bool()[:, None, :, None]
    for layer in range(30):
        lg, km = got[layer]
        p = softmax(lg.double(), mask=km)
        diff = ((p - ref.attentions[layer].double()).abs() * valid_q).amax().item()
        assert diff < 1e-5, (layer, diff)


def test_key_mask_is_causal_and_padding(captured, padded):
    got, _, _ = captured
    am = padded["attention_mask"].bool()
    n = am.shape[1]
    want = torch.tril(torch.ones(n, n, dtype=torch.bool))[None, None] & am[:, None, None, :]
    for layer in (0, 29):
        assert torch.equal(got[layer][1], want.expand_as(got[layer][1]))


def test_gqa_head_mapping_against_eager_projections(eager, captured, padded):
    """Query head h meets key/value head h // 3, exactly as the eager model's repeat_kv does."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    got, _, _ = captured
    layer = 4
    hidden = {}
    block = eager.model.layers[layer]
    hook = block.input_layernorm.register_forward_hook(lambda m, i, o: hidden.setdefault("x", o))
    with torch.no_grad():
        eager(**padded)
    hook.remove()
    x, att = hidden["x"], block.self_attn
    hd = att.head_dim
    q = att.q_proj(x).view(*x.shape[:2], -1, hd).transpose(1, 2)
    k = att.k_proj(x).view(*x.shape[:2], -1, hd).transpose(1, 2)
    cos, sin = eager.model.rotary_emb(x, torch.arange(x.shape[1])[None])
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    lg = got[layer][0]
    for h in range(9):
        ref = (q[:, h] @ k[:, h // 3].transpose(-1, -2)) * hd ** -0.5
        assert (ref - lg[:, h]).abs().max().item() < 1e-4
        if h % 3:  # another key/value head would give other logits
            wrong = (q[:, h] @ k[:, (h // 3 + 1) % 3].transpose(-1, -2)) * hd ** -0.5
            assert (wrong - lg[:, h]).abs().max().item() > 1e-2


def test_future_keys_never_enter_a_statistic(loaded):
    from hccs_lab.calibrate import row_stats
    from hccs_lab.capture import capture_logits, head_statistics

    bank = capture_logits(loaded, TEXTS, max_len=16, batch_size=4, progress=False)
    vl = bank.mask.sum(1)
    # causal rows with right padding: row of query position i has exactly keys 0..i
    assert np.array_equal(vl, bank.query_pos + 1)
    assert np.array_equal(bank.mask, np.arange(bank.seq_len)[None, :] < vl[:, None])
    assert np.all(bank.logits.transpose(0, 2, 1, 3)[:, :, ~bank.mask] == 0.0)  # future keys stored as 0
    hr = bank[3, 5]
    poisoned = type(hr)(np.where(hr.mask, hr.logits, 1e4).astype(np.float32), hr.mask, hr.text_index, hr.query_pos)
    a, b = head_statistics(hr), head_statistics(poisoned)
    assert a == b
    sa, sb = row_stats(hr.logits, hr.mask, a["scale"]), row_stats(poisoned.logits, poisoned.mask, a["scale"])
    assert np.array_equal(sa.N, sb.N) and np.array_equal(sa.T, sb.T) and np.allclose(sa.w, sb.w)
    assert np.array_equal(sa.N, vl)
    assert np.array_equal(hr.valid_len, vl)


def test_attention_matrix_of_a_sentence_is_causal(loaded):
    from hccs_lab.capture import attention_for_text

    ta = attention_for_text(loaded, TEXTS[1], layer=2, head=7)
    n = len(ta.tokens)
    assert ta.mask.shape == (n, n) and np.array_equal(ta.mask, np.tril(np.ones((n, n), bool)))
    assert np.allclose(ta.probs.sum(1), 1.0) and np.all(ta.probs[~ta.mask] == 0)


@pytest.fixture(scope="module")
def windows(loaded):
    from hccs_lab.data import text

    _, held = text.split()
    return text.token_windows(loaded.tokenizer, held, 48, n=3)


def test_text_split_is_deterministic_and_disjoint():
    from hccs_lab.data import text

    cal, held = text.split()
    assert len(cal) + len(held) == len(text.articles()) and len(held) >= 20
    assert not {a.title for a in cal} & {a.title for a in held}
    assert text.split() == (cal, held)
    assert "'''" not in held[0].text and "==" not in held[0].text


def test_perplexity_matches_transformers_loss(loaded, windows):
    from hccs_lab.retrain import perplexity as ppl

    ours = ppl.perplexity(loaded, windows, batch_size=2, progress=False)
    ref = ppl.reference_perplexity(loaded, windows, batch_size=2)
    assert ours.tokens == windows.shape[0] * (windows.shape[1] - 1)
    assert abs(ours.perplexity - ref.perplexity) / ref.perplexity < 1e-4
    assert 1.0 < ours.perplexity < 200.0


def test_controls_and_hccs_plug_into_the_seam(loaded, windows):
    from hccs_lab.retrain import perplexity as ppl

    f32 = ppl.perplexity(loaded, windows[:1], progress=False).perplexity
    uni = ppl.perplexity(loaded, windows[:1], ppl.uniform_probs(), progress=False).perplexity
    from hccs_lab.calibrate import default_params

    tables = constant_tables(30, 9, default_params(windows.shape[1]), 0.05)
    for variant in ("i16-div", "u8-clb"):
        got = ppl.perplexity(loaded, windows[:1], ppl.DeployedProbs(tables, variant), progress=False).perplexity
        assert math.isfinite(got) and got > f32
    assert uni > f32


def test_perplexity_command_writes_the_contract(tmp_path):
    import json

    from hccs_lab.cli import main

    out = tmp_path / "ppl.json"
    rc = main(["perplexity", "--model", "smollm2-135m", "--texts", "1", "--seq-len", "64", "--calibration-texts", "2",
               "--rows-per-head", "64", "--granularity", "global", "--variant", "u8-clb", "--variant", "i16-div",
               "--calibration-target", "aie4ml", "--batch-size", "2", "--out", str(out), "--quiet"])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["model"] == "smollm2-135m" and r["seq_len"] == 64 and r["tokens"] == 63
    assert r["float32"]["perplexity"] > 1
    assert r["hccs"]["granularity"] == "global" and r["hccs"]["variant"] == "u8-clb"
    assert {x["variant"] for x in r["hccs_all"]} == {"u8-clb", "i16-div"}
    assert set(r["controls"]) == {"uniform", "int8_softmax", "default_params"}
    assert r["controls"]["uniform"]["perplexity"] > r["float32"]["perplexity"]
