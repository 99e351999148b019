"""The hccs_lab attention function against transformers' own eager attention, and the capture bank."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hccs_lab.models import attention
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


@pytest.fixture(scope="module")
def minilm_eager(minilm):
    return _eager_twin(minilm.model)


def _observed_logits(model, batch):
    seen = {}

    def grab(layer, logits, keymask):
        seen[layer] = (logits.detach().clone(), keymask.detach().clone())

    with torch.no_grad(), attention.observe(model, grab):
        out = model(**batch)
    return seen, out


def test_observed_logits_softmax_equals_eager_attentions_with_padding(minilm, minilm_eager, rt_texts):
    batch = minilm.tokenizer(rt_texts, padding=True, return_tensors="pt")
    lengths = batch["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == len(rt_texts)  # the padding is real
    seen, ours = _observed_logits(minilm.model, batch)
    with torch.no_grad():
        ref = minilm_eager(**batch, output_attentions=True)
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


def test_installed_attention_without_observers_is_bit_exact_eager(minilm, minilm_eager, rt_texts):
    batch = minilm.tokenizer(rt_texts[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = minilm.model(**batch, output_attentions=True)
        ref = minilm_eager(**batch, output_attentions=True)
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


def test_state_does_not_leak_between_two_models(minilm, minilm_eager, rt_texts):
    other = attention.install(minilm_eager)  # a second model (a deep copy of the first) with the same weights
    from hccs_lab.models.attention import state_of

    assert state_of(other) is not state_of(minilm.model)
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
        other.set_attn_implementation("eager")  # back to being the eager reference


def test_install_is_idempotent_and_errors_are_clear(minilm):
    state = attention.state_of(minilm.model)
    attention.install(minilm.model)
    assert attention.state_of(minilm.model) is state
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


# ---------------------------------------------------------------------------------------------
# capture_logits and the LogitBank

from hccs_lab.capture import (  # noqa: E402
    BankSummary,
    HeadRows,
    LogitBank,
    RowReservoir,
    attention_for_text,
    capture_logits,
    head_statistics,
)
from hccs_lab.core import quantize_logits  # noqa: E402


def test_reservoir_keeps_capacity_and_samples_uniformly():
    capacity, batches, per_batch, trials = 100, 50, 40, 400
    total = batches * per_batch
    hits = np.zeros(total, dtype=np.int64)
    for seed in range(trials):
        res = RowReservoir(capacity, seed=seed)
        slot_row = np.full(capacity, -1)
        for b in range(batches):
            src, slots = res.plan(per_batch)
            assert len(np.unique(slots)) == len(slots)
            slot_row[slots] = b * per_batch + src
        assert res.seen == total and res.count == capacity
        assert np.all(slot_row >= 0) and len(np.unique(slot_row)) == capacity
        hits[slot_row] += 1
    # each row is kept with probability capacity / total; compare 10 position buckets (early vs late rows)
    buckets = hits.reshape(10, -1).sum(1)
    expected = trials * capacity / 10
    assert np.all(np.abs(buckets - expected) < 0.06 * expected), buckets
    from scipy.stats import chisquare

    assert chisquare(buckets).pvalue > 1e-4


def test_capture_streams_many_batches_into_a_bounded_bank(minilm):
    texts = load_split("train").texts[:32]
    bank = capture_logits(minilm, texts, max_len=32, batch_size=4, max_rows_per_head=64, seed=3, progress=False)
    enc = minilm.tokenizer(texts, truncation=True, max_length=32)
    total_rows = sum(len(ids) for ids in enc["input_ids"])
    assert bank.rows_seen == total_rows > 64
    assert bank.n_rows == 64 and bank.logits.shape == (6, 64, 12, 32) and bank.mask.shape == (64, 32)
    assert (bank.n_layers, bank.n_heads, bank.seq_len, bank.n_texts) == (6, 12, 32, 32)
    # the kept rows come from all over the stream, not just the first batches
    assert bank.text_index.max() > 16 and bank.text_index.min() < 16
    # every kept row is exactly the logits of its (text, query) through that head
    for r in (0, 63):
        t, q = int(bank.text_index[r]), int(bank.query_pos[r])
        for layer, head in ((0, 2), (5, 11)):
            ta = attention_for_text(minilm, texts[t], layer, head, max_len=32)
            n = len(ta.tokens)
            rows = bank[layer, head]
            assert rows.valid_len[r] == n and rows.mask[r, :n].all() and not rows.mask[r, n:].any()
            np.testing.assert_allclose(rows.logits[r, :n], ta.logits[q], atol=1e-4)
            assert np.all(rows.logits[r, n:] == 0)


def test_statistics_exclude_padding(minilm):
    texts = load_split("test").texts
    short = min(texts[:100], key=len)
    long_ = max(texts[:100], key=len)
    alone = capture_logits(minilm, [short], max_len=64, batch_size=1, progress=False)
    padded = capture_logits(minilm, [short, long_], max_len=64, batch_size=2, progress=False)
    mine = np.nonzero(padded.text_index == 0)[0]
    assert len(mine) == alone.n_rows
    for layer, head in ((0, 0), (3, 7)):
        a, p = alone[layer, head], padded[layer, head].take(mine)
        assert np.array_equal(a.mask, p.mask)
        np.testing.assert_allclose(a.logits, p.logits, atol=1e-4)
        sa, sp = head_statistics(a), head_statistics(p)
        for k in ("std", "p50", "p99", "entropy", "norm_entropy", "scale"):
            assert sa[k] == pytest.approx(sp[k], rel=1e-3, abs=1e-5), k
        # garbage under the mask must change nothing
        poisoned = HeadRows(np.where(p.mask, p.logits, 1e3).astype(np.float32), p.mask)
        assert head_statistics(poisoned) == head_statistics(p)


def test_gpt2_capture_masks_future_keys(minilm):
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    model = GPT2Model(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=len(minilm.tokenizer), n_positions=64)).eval()
    loaded = load((model, minilm.tokenizer))
    assert loaded.causal and (loaded.n_layers, loaded.n_heads) == (2, 2)
    texts = load_split("test").texts[:6]
    bank = capture_logits(loaded, texts, max_len=40, batch_size=3, progress=False)
    q = bank.query_pos
    expect = np.arange(40)[None, :] <= q[:, None]
    assert np.array_equal(bank.mask, expect)
    rows = bank[1, 1]
    assert np.array_equal(rows.valid_len, q + 1)
    assert np.all(rows.logits[~rows.mask] == 0)


def _synthetic_bank(seed=0):
    rng = np.random.default_rng(seed)
    L, R, H, n = 2, 30, 3, 16
    logits = (rng.normal(size=(L, R, H, n)) * rng.uniform(0.5, 6, size=(L, 1, H, 1))).astype(np.float32)
    valid = rng.integers(1, n + 1, size=R)
    mask = np.arange(n)[None, :] < valid[:, None]
    logits = logits * mask[None, :, None, :]
    return LogitBank("synthetic", 5, n, logits, mask, rng.integers(0, 5, R), rng.integers(0, n, R), rows_seen=R,
                     max_rows_per_head=R, texts=["a", "b", "c", "d", "e"])


def test_summary_matches_direct_numpy():
    from scipy.special import softmax as sp_softmax
    from scipy.stats import entropy as sp_entropy

    bank = _synthetic_bank()
    s = bank.summary()
    assert isinstance(s, BankSummary) and s.std.shape == (2, 3)
    for l in range(2):
        for h in range(3):
            x, m = bank.logits[l, :, h, :].astype(np.float64), bank.mask
            cent, ents, norms = [], [], []
            for r in range(x.shape[0]):
                row = x[r, m[r]]
                cent.extend(row - row.max())
                e = sp_entropy(sp_softmax(row))
                ents.append(e)
                norms.append(e / np.log(len(row)) if len(row) > 1 else 1.0)
            cent = np.array(cent)
            assert s.std[l, h] == pytest.approx(cent.std(), rel=1e-5)
            assert s.p90[l, h] == pytest.approx(np.percentile(-cent, 90), rel=1e-5)
            assert s.max_dist[l, h] == pytest.approx(-cent.min(), rel=1e-5)
            assert s.entropy[l, h] == pytest.approx(np.mean(ents), rel=1e-6)
            assert s.norm_entropy[l, h] == pytest.approx(np.mean(norms), rel=1e-6)
            assert s.broad[l, h] == (np.mean(norms) >= 0.5)
            assert s.scale[l, h] == pytest.approx(np.percentile(-cent, 99) / 127, rel=1e-5)
            assert s.rows[l, h] == 30
    recs = s.as_records()
    assert len(recs) == 6 and recs[4]["layer"] == 1 and recs[4]["head"] == 1


def test_head_rows_views():
    bank = _synthetic_bank(1)
    rows = bank[1, 2]
    scale = 0.05
    q = rows.int8(scale)
    assert q.dtype == np.int8 and np.array_equal(q, quantize_logits(rows.logits, scale, mask=rows.mask))
    assert np.all(q[~rows.mask] == -128) and np.all(q.max(1) == 127)
    p = rows.softmax()
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-12)
    assert np.all(p[~rows.mask] == 0)
    sub = rows.sample(7, seed=2)
    assert len(sub) == 7 and sub.text_index is not None
    with pytest.raises(IndexError, match="layer 2 out of range"):
        bank[2, 0]
    with pytest.raises(TypeError, match="bank\\[layer, head\\]"):
        bank[0]


def test_save_load_round_trip(tmp_path):
    bank = _synthetic_bank(2)
    path = bank.save(tmp_path / "bank.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["bank.npz"]  # no temp file left behind
    back = LogitBank.load(path)
    for k in ("logits", "mask", "text_index", "query_pos"):
        assert np.array_equal(getattr(back, k), getattr(bank, k))
    assert (back.model_name, back.n_texts, back.seq_len, back.rows_seen, back.texts) == (
        bank.model_name, bank.n_texts, bank.seq_len, bank.rows_seen, bank.texts)
    np.testing.assert_array_equal(back.summary().entropy, bank.summary().entropy)


def test_load_refuses_wrong_or_corrupt_files(tmp_path):
    bank = _synthetic_bank(3)
    good = bank.save(tmp_path / "good.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="corrupt or wrong file"):
        LogitBank.load(corrupt)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="corrupt or wrong file"):
        LogitBank.load(text)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ValueError, match="not an hccs-lab logit bank"):
        LogitBank.load(other)
    import json

    with np.load(good) as z:
        parts = {k: z[k] for k in z.files}
    meta = json.loads(str(parts["meta"]))
    meta["format_version"] = 99
    parts["meta"] = np.array(json.dumps(meta))
    future = tmp_path / "future.npz"
    np.savez(future, **parts)
    with pytest.raises(ValueError, match="format version 99"):
        LogitBank.load(future)
    with pytest.raises(FileNotFoundError):
        LogitBank.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match=".npz"):
        bank.save(tmp_path / "bank.txt")


def test_capture_rejects_bad_input(minilm):
    with pytest.raises(TypeError, match="list of strings"):
        capture_logits(minilm, "one text", progress=False)
    with pytest.raises(ValueError, match="empty"):
        capture_logits(minilm, [], progress=False)
    with pytest.raises(ValueError, match="max_rows_per_head"):
        capture_logits(minilm, ["fine"], max_rows_per_head=0, progress=False)


def test_load_accepts_a_local_folder_and_rejects_unknown_names(minilm, tmp_path):
    from transformers import GPT2Config, GPT2Model

    from hccs_lab.models import KNOWN_MODELS

    torch.manual_seed(0)
    model = GPT2Model(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=len(minilm.tokenizer), n_positions=64))
    model.save_pretrained(tmp_path / "tiny-gpt2")
    minilm.tokenizer.save_pretrained(tmp_path / "tiny-gpt2")
    loaded = load(tmp_path / "tiny-gpt2")
    assert (loaded.name, loaded.n_layers, loaded.n_heads, loaded.causal) == ("tiny-gpt2", 2, 2, True)
    assert loaded.model.config._attn_implementation == "hccs_lab" and not loaded.model.training
    with pytest.raises(ValueError) as e:
        load("bert-base-uncased")
    assert all(name in str(e.value) for name in KNOWN_MODELS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load(tmp_path / "empty")
    with pytest.raises(TypeError, match="tokenizer"):
        load((model, None))
    with pytest.raises(TypeError, match="name, a folder path"):
        load(3)
