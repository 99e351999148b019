"""The hccs_lab attention function against transformers' own eager attention, and the capture bank."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hccs_lab import attention
from hccs_lab.data import load_split
from hccs_lab.models import load

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def minilm():
    return load("minilm-l6")


@pytest.fixture(scope="module")
def rt_texts():
    texts = load_split("test").texts
    # sentences of clearly different lengths so that the batch carries real padding
    by_len = sorted(texts[:200], key=len)
    return [by_len[0], by_len[60], by_len[120], by_len[-1]]


def _eager_twin(model):
    """The same weights run by transformers' own eager attention."""
    import copy

    twin = copy.deepcopy(model)
    twin.set_attn_implementation("eager")
    return twin.eval()


def _observed_logits(model, batch):
    seen = {}

    def grab(layer, logits, keymask):
        seen[layer] = (logits.detach().clone(), keymask.detach().clone())

    with torch.no_grad(), attention.observe(model, grab):
        out = model(**batch)
    return seen, out


def test_observed_logits_softmax_equals_eager_attentions_with_padding(minilm, rt_texts):
    batch = minilm.tokenizer(rt_texts, padding=True, return_tensors="pt")
    lengths = batch["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == len(rt_texts)  # the padding is real
    seen, ours = _observed_logits(minilm.model, batch)
    eager = _eager_twin(minilm.model)
    with torch.no_grad():
        ref = eager(**batch, output_attentions=True)
    assert sorted(seen) == list(range(6))
    for layer, (logits, keymask) in seen.items():
        assert logits.shape == ref.attentions[layer].shape == (4, 12, logits.shape[2], logits.shape[3])
        # the key mask is exactly the tokenizer's padding, broadcast over heads and queries
        km = torch.broadcast_to(keymask, logits.shape)
        expect = batch["attention_mask"].bool()[:, None, None, :].expand_as(logits)
        assert torch.equal(km, expect)
        probs = torch.softmax(logits.masked_fill(~km, float("-inf")), -1)
        assert torch.allclose(probs, ref.attentions[layer], atol=1e-5, rtol=0)
    assert torch.allclose(ours.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=0)


def test_installed_attention_without_observers_is_bit_exact_eager(minilm, rt_texts):
    batch = minilm.tokenizer(rt_texts[:3], padding=True, return_tensors="pt")
    eager = _eager_twin(minilm.model)
    with torch.no_grad():
        ours = minilm.model(**batch, output_attentions=True)
        ref = eager(**batch, output_attentions=True)
    for a, b in zip(ours.attentions, ref.attentions):
        assert torch.equal(a, b)
    assert torch.equal(ours.last_hidden_state, ref.last_hidden_state)


def test_set_probs_replaces_softmax_and_none_restores_it(minilm, rt_texts):
    batch = minilm.tokenizer(rt_texts[:2], padding=True, return_tensors="pt")
    calls = []

    def uniform(layer, logits, keymask):
        calls.append(layer)
        w = torch.broadcast_to(keymask, logits.shape).to(logits.dtype)
        return w / w.sum(-1, keepdim=True)

    with torch.no_grad():
        base = minilm.model(**batch, output_attentions=True)
        attention.set_probs(minilm.model, uniform)
        try:
            swapped = minilm.model(**batch, output_attentions=True)
        finally:
            attention.set_probs(minilm.model, None)
        back = minilm.model(**batch, output_attentions=True)
    assert calls == list(range(6))
    valid = batch["attention_mask"].sum(1)
    for layer in range(6):
        a = swapped.attentions[layer]
        for b in range(2):
            n = int(valid[b])
            assert torch.allclose(a[b, :, :, :n], torch.full_like(a[b, :, :, :n], 1.0 / n))
            assert torch.all(a[b, :, :, n:] == 0)
    assert not torch.allclose(swapped.last_hidden_state, base.last_hidden_state)
    assert torch.equal(back.last_hidden_state, base.last_hidden_state)


def test_state_does_not_leak_between_two_models(minilm, rt_texts):
    import copy

    other = copy.deepcopy(minilm.model)
    attention.install(other)
    # a deep copy carries its own state object after install? it must not share the original's
    from hccs_lab.attention import _state

    assert _state(other) is not _state(minilm.model)
    seen = []
    batch = minilm.tokenizer(rt_texts[:1], return_tensors="pt")
    with torch.no_grad(), attention.observe(minilm.model, lambda layer, lg, km: seen.append(layer)):
        other(**batch)
        assert seen == []
        minilm.model(**batch)
    assert seen == list(range(6))
    attention.set_probs(other, lambda layer, lg, km: torch.softmax(lg, -1) * 0)
    try:
        with torch.no_grad():
            a = minilm.model(**batch, output_attentions=True).attentions[0]
        assert float(a.sum()) > 0
    finally:
        attention.set_probs(other, None)


def test_install_is_idempotent_and_errors_are_clear(minilm):
    state = attention._state(minilm.model)
    attention.install(minilm.model)
    assert attention._state(minilm.model) is state
    with pytest.raises(TypeError, match="PreTrainedModel"):
        attention.install(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="callable"):
        with attention.observe(minilm.model, 3):
            pass


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=97, n_positions=64)
    return GPT2Model(cfg).eval()


def test_gpt2_causal_mask_is_honoured_like_eager():
    model = _tiny_gpt2()
    eager = _eager_twin(model)
    attention.install(model)
    ids = torch.randint(0, 97, (3, 11), generator=torch.Generator().manual_seed(1))
    am = torch.ones_like(ids)
    am[1, 7:] = 0  # right padding
    am[2, 4:] = 0
    seen, ours = _observed_logits(model, {"input_ids": ids, "attention_mask": am})
    with torch.no_grad():
        ref = eager(input_ids=ids, attention_mask=am, output_attentions=True)
    causal = torch.tril(torch.ones(11, 11, dtype=torch.bool))
    for layer in range(2):
        logits, keymask = seen[layer]
        km = torch.broadcast_to(keymask, logits.shape)
        expect = causal[None, None] & am.bool()[:, None, None, :]
        assert torch.equal(km, expect.expand_as(km))
        probs = torch.softmax(logits.masked_fill(~km, float("-inf")), -1)
        # rows whose query is itself padding keep keys 0..q of the causal mask only where not padded; compare valid queries
        for b in range(3):
            n = int(am[b].sum())
            assert torch.allclose(probs[b, :, :n, :], ref.attentions[layer][b, :, :n, :], atol=1e-5, rtol=0)
    for b in range(3):
        n = int(am[b].sum())
        assert torch.allclose(ours.last_hidden_state[b, :n], ref.last_hidden_state[b, :n], atol=1e-5, rtol=0)
