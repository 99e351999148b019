"""What a (possibly HCCS-substituted) classifier gets right, and how close its attention stays to softmax."""
from __future__ import annotations

import numpy as np
import torch

from ..core.metrics import entropy, kl
from ..core.relaxed import softmax
from ..models.attention import observe
from ..models.finetune import collate, encode


@torch.no_grad()
def predict(model, tokenizer, texts, max_len: int = 64, batch_size: int = 32, progress: bool = False,
            desc: str = "eval", pad_to: int | None = None) -> np.ndarray:
    """Predicted classes; `pad_to` pads every sentence to that many tokens (a fixed-length kernel
    without a mask sees its padding), otherwise batches are padded to their longest sentence only."""
    from tqdm.auto import tqdm

    ids = encode(tokenizer, texts, max_len)
    model.eval()
    # sorting by length keeps padding (and time) low; predictions go back to the input order
    # (batches of 32 x 64 tokens keep a layer's activations in cache: 19% faster than 128 on 2 cores)
    order = np.argsort([len(x) for x in ids], kind="stable")
    preds = np.empty(len(ids), dtype=np.int64)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
        idx = order[start:start + batch_size]
        input_ids, attention = collate([ids[i] for i in idx], tokenizer.pad_token_id, pad_to)
        preds[idx] = model(input_ids=input_ids, attention_mask=attention).logits.argmax(-1).numpy()
    return preds


def correct(model, tokenizer, texts, labels, max_len: int = 64, progress: bool = False, desc: str = "eval",
            pad_to: int | None = None) -> np.ndarray:
    """Per test sentence, whether the model classifies it right (boolean [n]): what paired intervals use."""
    preds = predict(model, tokenizer, texts, max_len=max_len, progress=progress, desc=desc, pad_to=pad_to)
    return preds == np.asarray(labels)


def accuracy(model, tokenizer, texts, labels, max_len: int = 64, progress: bool = False, desc: str = "eval",
             pad_to: int | None = None) -> float:
    return float(np.mean(correct(model, tokenizer, texts, labels, max_len, progress, desc, pad_to)))


# ---------------------------------------------------------------------------------------------
# attention fidelity: per-head KL of HCCS patterns against the float32 model's softmax


@torch.no_grad()
def attention_maps(model, tokenizer, texts, max_len: int = 64, probs_fn=None, pad_to: int | None = None) -> dict:
    """Per layer: the logits' softmax and `probs_fn` probabilities, plus the row mask, on `texts` in one batch.

    Returns {"softmax": [L] of [N,H,Lq,Lk], "probs": [L] (None without probs_fn), "keymask": [N,1,1,Lk]
    bool, "rowmask": [N,Lq] bool (query positions that are real tokens)}.
    """
    ids = encode(tokenizer, texts, max_len)
    input_ids, attention = collate(ids, tokenizer.pad_token_id, pad_to)
    soft, probs, keym = {}, {}, {}

    def grab(layer, logits, keymask):
        m = torch.broadcast_to(keymask.to(torch.bool), logits.shape)
        soft[layer] = softmax(logits.detach().float(), mask=m)
        keym[layer] = m
        if probs_fn is not None:
            probs[layer] = probs_fn(layer, logits.detach().float(), m)

    model.eval()
    with observe(model, grab):
        model(input_ids=input_ids, attention_mask=attention)
    layers = sorted(soft)
    return {"softmax": [soft[l] for l in layers], "probs": [probs[l] for l in layers] if probs_fn else None,
            "keymask": [keym[l] for l in layers], "rowmask": attention.bool()}


def per_head_kl(p_list, q_list, keymask_list, rowmask) -> np.ndarray:
    """Mean KL(p || q) over real query rows, per head: [L, H].

    q is renormalised over the real keys first: a kernel's output need not sum to 1 there (CLB's
    reciprocal overshoots up to 2x, and a kernel without a mask gives padded keys a share), and KL
    compares shapes of distributions.
    """
    out = []
    for p, q, km in zip(p_list, q_list, keymask_list):
        qm = np.where(km.numpy(), q.numpy(), 0.0)
        qm = qm / np.maximum(qm.sum(-1, keepdims=True), 1e-30)
        v = kl(p.numpy(), qm, mask=km.numpy())  # [N, H, Lq]
        w = rowmask.numpy()[:, None, :].astype(np.float64)
        out.append((v * w).sum(axis=(0, 2)) / np.maximum(w.sum(axis=(0, 2)), 1))
    return np.stack(out)


def mean_entropy(p_list, rowmask) -> np.ndarray:
    """Mean attention entropy (nats) over real query rows, per head: [L, H] (high = broad, low = focused)."""
    out = []
    w = rowmask.numpy()[:, None, :].astype(np.float64)
    for p in p_list:
        ent = entropy(p.numpy())
        out.append((ent * w).sum(axis=(0, 2)) / np.maximum(w.sum(axis=(0, 2)), 1))
    return np.stack(out)


def attention_fidelity(float_model_, qat_model, tok, fn, texts, max_len: int, pad_to: int | None = None) -> dict:
    """Per-head KL of HCCS attention `fn` (direct on the float model, and after QAT) against float32 softmax.

    `fn` is the probability function evaluated (`substitute.hccs_probs`: the deployed kernel or the
    real-valued reading). The float32 model runs with softmax (HCCS is read off its logits layer by
    layer); the retrained one runs with `fn` in place, as deployed. Both are left with exact softmax.
    """
    from ..models.attention import set_probs

    set_probs(float_model_, None)
    ref = attention_maps(float_model_, tok, texts, max_len, probs_fn=fn, pad_to=pad_to)
    set_probs(qat_model, fn)
    try:
        after = attention_maps(qat_model, tok, texts, max_len, probs_fn=fn, pad_to=pad_to)
    finally:
        set_probs(qat_model, None)
    rm = ref["rowmask"]
    kl_direct = per_head_kl(ref["softmax"], ref["probs"], ref["keymask"], rm)
    kl_qat = per_head_kl(ref["softmax"], after["probs"], ref["keymask"], rm)
    kl_self = per_head_kl(after["softmax"], after["probs"], after["keymask"], rm)
    ent = mean_entropy(ref["softmax"], rm)
    L, H = ent.shape
    heads = [{"layer": l, "head": h, "entropy_float": float(ent[l, h]), "kl_direct": float(kl_direct[l, h]),
              "kl_qat": float(kl_qat[l, h]), "kl_self_after_qat": float(kl_self[l, h])}
             for l in range(L) for h in range(H)]
    broad = np.unravel_index(np.argmax(ent), ent.shape)
    focused = np.unravel_index(np.argmin(ent), ent.shape)
    n_tok = int(rm[0].sum())
    tokens = tok.convert_ids_to_tokens(tok(texts[0], truncation=True, max_length=max_len)["input_ids"])[:n_tok]
    examples = []
    for kind, (l, h) in (("broad", broad), ("focused", focused)):
        examples.append({"kind": kind, "layer": int(l), "head": int(h), "text": texts[0], "query": 0,
                         "tokens": [f"{i}:{t}" for i, t in enumerate(tokens)],
                         "softmax": ref["softmax"][l][0, h, 0, :n_tok].tolist(),
                         "direct": ref["probs"][l][0, h, 0, :n_tok].tolist(),
                         "qat": after["probs"][l][0, h, 0, :n_tok].tolist()})
    return {"texts": len(texts), "heads": heads, "examples": examples,
            "what": "mean KL(float32 softmax || HCCS, renormalised over the real keys) over real query rows of test "
                    "sentences; kl_direct: HCCS on the float32 model's logits; kl_qat: HCCS inside the retrained "
                    "model; kl_self_after_qat: the retrained model's own softmax vs its HCCS"}
