"""Fine-tuning and prediction of Hugging Face sequence classifiers (AdamW, warmup, dynamic padding).

The training loop the tiny model is trained with and quantization-aware retraining runs on; it knows
nothing about HCCS (retraining puts HCCS into the model's attention first).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..errors import InputError


@dataclass
class TrainSettings:
    epochs: float = 1.0
    lr: float = 5e-5
    batch_size: int = 32
    max_len: int = 64
    seed: int = 0
    warmup_frac: float = 0.06
    weight_decay: float = 0.01
    max_steps: int | None = None  # cap on optimizer steps (a budget, whatever the epochs)
    sparse_embeddings: bool = False  # lazy Adam on the word embeddings: only rows seen get updated
    log_every: int = 20
    pad_to: int | None = None  # pad every batch to this many tokens (a fixed-length kernel), else to its longest


def encode(tokenizer, texts, max_len: int) -> list[list[int]]:
    if not len(texts):
        raise InputError("no texts to encode")
    return tokenizer(list(texts), truncation=True, max_length=max_len)["input_ids"]


def collate(ids: list[list[int]], pad_id: int, pad_to: int | None = None):
    """Padding to the longest sequence of the batch, or to `pad_to` tokens when that is longer."""
    L = max(max(len(x) for x in ids), pad_to or 0)
    input_ids = torch.full((len(ids), L), pad_id, dtype=torch.long)
    attention = torch.zeros((len(ids), L), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, :len(x)] = torch.tensor(x)
        attention[i, :len(x)] = 1
    return input_ids, attention


def build_optimizers(model, s: TrainSettings) -> list:
    """AdamW (decay on weight matrices only), plus SparseAdam for the word embeddings when they are sparse."""
    emb = model.get_input_embeddings()
    emb_params = {id(emb.weight)} if s.sparse_embeddings else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in emb_params:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "embeddings" in name else decay).append(p)
    opts = [torch.optim.AdamW([{"params": decay, "weight_decay": s.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=s.lr)]
    if s.sparse_embeddings:
        opts.append(torch.optim.SparseAdam([emb.weight], lr=s.lr))
    return opts


def train_classifier(model, tokenizer, texts, labels, settings: TrainSettings, progress: bool = True,
                     desc: str = "train") -> dict:
    """AdamW with linear warmup/decay over shuffled, dynamically padded batches; returns the history.

    History: {"steps", "seconds", "log_every", "loss": [mean loss of each `log_every` steps], ...}.
    """
    from tqdm.auto import tqdm

    s = settings
    labels = np.asarray(labels, dtype=np.int64)
    if len(texts) != len(labels):
        raise InputError(f"{len(texts)} texts but {len(labels)} labels")
    ids = encode(tokenizer, texts, s.max_len)
    steps_per_epoch = math.ceil(len(ids) / s.batch_size)
    total = max(1, math.ceil(s.epochs * steps_per_epoch))
    if s.max_steps is not None:
        total = max(1, min(total, int(s.max_steps)))
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    emb = model.get_input_embeddings()
    was_sparse = emb.sparse
    emb.sparse = s.sparse_embeddings
    opts = build_optimizers(model, s)
    warm = max(1, int(s.warmup_frac * total))
    lr_at = lambda step: min((step + 1) / warm, max(0.0, (total - step) / max(1, total - warm)))
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lr_at) for o in opts]
    model.train()
    losses, window, t0, step = [], [], time.perf_counter(), 0
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    try:
        while step < total:
            order = rng.permutation(len(ids))
            for start in range(0, len(order), s.batch_size):
                if step >= total:
                    break
                idx = order[start:start + s.batch_size]
                input_ids, attention = collate([ids[i] for i in idx], tokenizer.pad_token_id, s.pad_to)
                out = model(input_ids=input_ids, attention_mask=attention, labels=torch.from_numpy(labels[idx]))
                loss = out.loss
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{desc}: loss became {loss.item()} at step {step}")
                for o in opts:
                    o.zero_grad(set_to_none=True)
                loss.backward()
                for o, sch in zip(opts, scheds):
                    o.step()
                    sch.step()
                window.append(loss.item())
                step += 1
                if len(window) == s.log_every or step == total:
                    losses.append(float(np.mean(window)))
                    bar.set_postfix(loss=f"{losses[-1]:.3f}")
                    window = []
                bar.update(1)
    finally:
        bar.close()
        emb.sparse = was_sparse
        model.eval()
    return {"steps": step, "steps_per_epoch": steps_per_epoch, "epochs_done": step / steps_per_epoch,
            "seconds": time.perf_counter() - t0, "log_every": s.log_every, "loss": losses,
            "settings": asdict(s), "n_train": len(ids)}


