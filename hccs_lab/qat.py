"""HCCS in place of softmax inside real models, and quantization-aware retraining with it.

How HCCS gets in: `hccs_lab.attention.set_probs(model, fn)` makes the registered "hccs_lab"
attention function call `fn(layer, logits, keymask)` instead of softmax in every layer, for any model
hccs_lab can capture (BERT family, GPT-2, the tiny model). `HCCSProbs` is that fn: per layer it holds
the calibrated (B, S, D) and int8 scale of each head as tensors `[H, 1, 1]`, fixed before training
(the paper holds the calibration fixed like quantization bounds during QAT).

Forward, per head: the logits are shifted so the row max lands on 127 steps (as `quantize_logits`
does: only distances to the max matter to HCCS), fake-quantized to the int8 grid, then mapped by
`hccs_float`, the real-valued reading of HCCS, which on int8-grid input equals the integer i16+div
kernel up to the floor of its reciprocal. Masked keys are exactly 0.

Fake quantization library: torch's own (`torch.fake_quantize_per_channel_affine` for the logits,
one channel per head; `torch.ao.quantization` fused FakeQuantize modules with moving-average
observers for the optional int8 Linear layers). Why not Brevitas: it does resolve against the
pinned torch 2.13 (pip would add brevitas 0.13.4, dependencies, unfoldNd and a setuptools pin), but
it is one more heavy dependency with a dependency-injection quantizer layer, while what HCCS needs
(one int8 grid per head with a fixed scale and a straight-through gradient) is a single call of the
fake-quant op that ships with, and is tested together with, the torch we pin already. Both ops give
the straight-through estimator: gradient 1 inside the grid's range, 0 where the value saturates
(keys more than 255 steps below the row max, which any clip D <= 127 flattens anyway).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hccs_lab.surrogate import hccs_float, softmax

# ---------------------------------------------------------------------------------------------
# HCCS as the attention probabilities


@dataclass
class HCCSTables:
    """Per-layer tensors [H, 1, 1] of B, S, D and scale, built from a Calibration."""

    B: list
    S: list
    D: list
    scale: list
    granularity: str = "head"

    @property
    def n_layers(self) -> int:
        return len(self.B)

    @property
    def n_heads(self) -> int:
        return int(self.B[0].shape[0])

    @classmethod
    def from_calibration(cls, calibration, n_layers: int, n_heads: int) -> "HCCSTables":
        cols = {k: [] for k in ("B", "S", "D", "scale")}
        for layer in range(n_layers):
            per = {k: [] for k in cols}
            for head in range(n_heads):
                p = calibration.params(layer, head)
                per["B"].append(p.B)
                per["S"].append(p.S)
                per["D"].append(p.D)
                per["scale"].append(float(calibration.scale(layer, head)))
            for k in cols:
                cols[k].append(torch.tensor(per[k], dtype=torch.float32).view(n_heads, 1, 1))
        return cls(**cols, granularity=getattr(calibration, "granularity", "head"))

    def as_rows(self) -> list[dict]:
        return [{"layer": l, "head": h, "B": int(self.B[l][h]), "S": int(self.S[l][h]), "D": int(self.D[l][h]),
                 "scale": float(self.scale[l][h])} for l in range(self.n_layers) for h in range(self.n_heads)]


def fake_quantize_logits(logits: torch.Tensor, scale: torch.Tensor, keymask: torch.Tensor) -> torch.Tensor:
    """Logits [B, H, Lq, Lk] -> their int8-grid values (row max at 127 steps), straight-through gradient.

    Equals `quantize_logits(logits, scale, mask) * scale` (round half to even, saturate at -128),
    masked keys set to 0 (they are ignored downstream). `scale` is [H, 1, 1].
    """
    m = torch.broadcast_to(keymask, logits.shape)
    x = logits.masked_fill(~m, 0.0)
    mx = x.masked_fill(~m, float("-inf")).amax(-1, keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))  # all-masked rows
    h_scale = scale.reshape(-1)
    shifted = x - mx + 127.0 * scale
    q = torch.fake_quantize_per_channel_affine(shifted, h_scale, torch.zeros_like(h_scale, dtype=torch.int32),
                                               axis=1, quant_min=-128, quant_max=127)
    return q.masked_fill(~m, 0.0)


class HCCSProbs:
    """`fn(layer, logits, keymask) -> probs` for `hccs_lab.attention.set_probs`: int8 logits, then HCCS."""

    def __init__(self, tables: HCCSTables, quantize: bool = True):
        self.tables = tables
        self.quantize = quantize

    def params(self, layer: int, like: torch.Tensor):
        t = self.tables
        return tuple(x[layer].to(device=like.device, dtype=like.dtype) for x in (t.B, t.S, t.D, t.scale))

    def __call__(self, layer: int, logits: torch.Tensor, keymask: torch.Tensor) -> torch.Tensor:
        B, S, D, scale = self.params(layer, logits)
        if logits.shape[1] != B.shape[0]:
            raise ValueError(f"layer {layer} has {logits.shape[1]} heads but the calibration has {B.shape[0]}")
        m = torch.broadcast_to(keymask.to(torch.bool), logits.shape)
        x = fake_quantize_logits(logits, scale, m) if self.quantize else logits.masked_fill(~m, 0.0)
        return hccs_float(x, (B, S, D), scale, mask=m)


def use_hccs(model, tables: HCCSTables | None, quantize: bool = True):
    """Put HCCS (or, with None, exact softmax again) in every attention layer of a hccs_lab-installed model."""
    from hccs_lab.attention import set_probs

    set_probs(model, None if tables is None else HCCSProbs(tables, quantize=quantize))
    return model


# ---------------------------------------------------------------------------------------------
# optional int8 fake quantization of the Linear layers (torch.ao modules)


class FakeQuantLinear(nn.Module):
    """A Linear whose input (per-tensor uint8, moving-average range) and weight (per-channel int8) are fake-quantized."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        from torch.ao.quantization.fake_quantize import (default_fused_act_fake_quant,
                                                         default_fused_per_channel_wt_fake_quant)

        self.linear = linear
        self.input_fake_quant = default_fused_act_fake_quant()
        self.weight_fake_quant = default_fused_per_channel_wt_fake_quant()

    def forward(self, x):
        return F.linear(self.input_fake_quant(x), self.weight_fake_quant(self.linear.weight), self.linear.bias)


def fake_quantize_linears(model: nn.Module, skip: tuple[str, ...] = ("classifier",)) -> int:
    """Replace every nn.Linear (except those under a name in `skip`) by a FakeQuantLinear; returns the count."""
    targets = [(name, mod) for name, mod in model.named_modules()
               if isinstance(mod, nn.Linear) and not any(name == s or name.startswith(s + ".") for s in skip)]
    for name, mod in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, FakeQuantLinear(mod))
    return len(targets)


# ---------------------------------------------------------------------------------------------
# fine-tuning and evaluation of sequence classifiers


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


def encode(tokenizer, texts, max_len: int) -> list[list[int]]:
    if not len(texts):
        raise ValueError("no texts to encode")
    return tokenizer(list(texts), truncation=True, max_length=max_len)["input_ids"]


def collate(ids: list[list[int]], pad_id: int):
    """Dynamic padding to the longest sequence of the batch."""
    L = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), L), pad_id, dtype=torch.long)
    attention = torch.zeros((len(ids), L), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, :len(x)] = torch.tensor(x)
        attention[i, :len(x)] = 1
    return input_ids, attention


def _optimizers(model, s: TrainSettings):
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
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
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
    opts = _optimizers(model, s)
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
                input_ids, attention = collate([ids[i] for i in idx], tokenizer.pad_token_id)
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


@torch.no_grad()
def predict(model, tokenizer, texts, max_len: int = 64, batch_size: int = 128, progress: bool = False,
            desc: str = "eval") -> np.ndarray:
    from tqdm.auto import tqdm

    ids = encode(tokenizer, texts, max_len)
    model.eval()
    # sorting by length keeps padding (and time) low; predictions go back to the input order
    order = np.argsort([len(x) for x in ids], kind="stable")
    preds = np.empty(len(ids), dtype=np.int64)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
        idx = order[start:start + batch_size]
        input_ids, attention = collate([ids[i] for i in idx], tokenizer.pad_token_id)
        preds[idx] = model(input_ids=input_ids, attention_mask=attention).logits.argmax(-1).numpy()
    return preds


def accuracy(model, tokenizer, texts, labels, max_len: int = 64, progress: bool = False, desc: str = "eval") -> float:
    preds = predict(model, tokenizer, texts, max_len=max_len, progress=progress, desc=desc)
    return float(np.mean(preds == np.asarray(labels)))


# ---------------------------------------------------------------------------------------------
# attention fidelity: per-head KL of HCCS patterns against the float32 model's softmax


@torch.no_grad()
def attention_maps(model, tokenizer, texts, max_len: int = 64, probs_fn=None) -> dict:
    """Per layer: the logits' softmax and `probs_fn` probabilities, plus the row mask, on `texts` in one batch.

    Returns {"softmax": [L] of [N,H,Lq,Lk], "probs": [L] (None without probs_fn), "keymask": [N,1,1,Lk]
    bool, "rowmask": [N,Lq] bool (query positions that are real tokens)}.
    """
    from hccs_lab.attention import observe

    ids = encode(tokenizer, texts, max_len)
    input_ids, attention = collate(ids, tokenizer.pad_token_id)
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
    """Mean KL(p || q) over real query rows, per head: [L, H]."""
    from hccs_lab.metrics import kl

    out = []
    for p, q, km in zip(p_list, q_list, keymask_list):
        v = kl(p.numpy(), q.numpy(), mask=km.numpy())  # [N, H, Lq]
        w = rowmask.numpy()[:, None, :].astype(np.float64)
        out.append((v * w).sum(axis=(0, 2)) / np.maximum(w.sum(axis=(0, 2)), 1))
    return np.stack(out)


def mean_entropy(p_list, rowmask) -> np.ndarray:
    """Mean attention entropy (nats) over real query rows, per head: [L, H] (high = broad, low = focused)."""
    out = []
    w = rowmask.numpy()[:, None, :].astype(np.float64)
    for p in p_list:
        x = p.numpy().astype(np.float64)
        ent = -(np.where(x > 0, x * np.log(np.where(x > 0, x, 1)), 0)).sum(-1)
        out.append((ent * w).sum(axis=(0, 2)) / np.maximum(w.sum(axis=(0, 2)), 1))
    return np.stack(out)


# ---------------------------------------------------------------------------------------------
# figures (plotly), fed by the results dict that `hccs_lab.qat_cli.run_experiment` writes

PAPER_TABLE = {  # paper.md 5.2 / 5.4 (BERT-tiny and BERT-small on SST-2), validation accuracy
    "BERT-tiny SST-2": {"float32": 0.825, "hccs_direct": 0.619, "hccs_qat": 0.822,
                        "global": 0.817, "layer": 0.819, "head": 0.822},
    "BERT-small SST-2": {"float32": 0.893, "hccs_direct": 0.766, "hccs_qat": 0.878,
                         "global": 0.834, "layer": 0.842, "head": 0.878},
}


def results_table(results: dict) -> list[dict]:
    """Rows (source, float32, direct, after QAT, delta, global/layer/head) of ours next to the paper's."""
    ab = results.get("ablation", {})
    ours = {"source": f"ours: {results['model']} on RT{' (quick subset)' if results.get('quick') else ''}",
            "float32": results["float32"]["accuracy"], "hccs_direct": results["hccs_direct"]["accuracy"],
            "hccs_qat": results["hccs_qat"]["accuracy"],
            **{g: ab[g]["accuracy"] for g in ("global", "layer", "head") if g in ab}}
    rows = [ours] + [{"source": f"paper: {k}", **v} for k, v in PAPER_TABLE.items()]
    for r in rows:
        r["delta_qat"] = r["hccs_qat"] - r["float32"]
    return rows


def table_figure(results: dict):
    import plotly.graph_objects as go

    rows = results_table(results)
    cols = ["source", "float32", "hccs_direct", "hccs_qat", "delta_qat", "global", "layer", "head"]
    fmt = lambda v: v if isinstance(v, str) else ("" if v is None else f"{100 * v:+.1f}" if v < 0 else f"{100 * v:.1f}")
    cells = [[fmt(r.get(c)) for r in rows] for c in cols]
    fig = go.Figure(go.Table(header={"values": ["", "float32 %", "HCCS direct %", "HCCS after QAT %", "Δ QAT (pp)",
                                                "global %", "per-layer %", "per-head %"]},
                             cells={"values": cells}))
    fig.update_layout(title="Accuracy: ours (Rotten Tomatoes snippets, standing in for SST-2) vs the paper",
                      height=260, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def training_curves_figure(results: dict):
    import plotly.graph_objects as go

    fig = go.Figure()
    curves = {"float32 fine-tune": results.get("float32", {}).get("history")}
    for g, r in results.get("ablation", {}).items():
        curves[f"HCCS QAT ({g})"] = r.get("history")
    if "history" in results.get("hccs_qat", {}):
        curves.setdefault(f"HCCS QAT ({results['hccs_qat'].get('granularity', 'head')})", results["hccs_qat"]["history"])
    for name, h in curves.items():
        if not h or not h.get("loss"):
            continue
        every = h["log_every"]
        x = [min((i + 1) * every, h["steps"]) for i in range(len(h["loss"]))]
        fig.add_scatter(x=x, y=h["loss"], mode="lines+markers", name=name)
    fig.update_layout(title=f"Training loss (mean of every {every if curves else '?'} steps)",
                      xaxis_title="optimizer step", yaxis_title="cross-entropy", height=360)
    return fig


def head_kl_figure(results: dict):
    import plotly.graph_objects as go

    fid = results["fidelity"]
    labels = [f"L{r['layer']}H{r['head']}" for r in fid["heads"]]
    fig = go.Figure()
    fig.add_bar(x=labels, y=[r["kl_direct"] for r in fid["heads"]], name="HCCS direct (before retraining)")
    fig.add_bar(x=labels, y=[r["kl_qat"] for r in fid["heads"]], name="HCCS after QAT")
    fig.update_layout(barmode="group", yaxis_type="log", height=360,
                      title="Per-head KL(float32 softmax || HCCS attention), test sentences",
                      yaxis_title="mean KL (nats)")
    return fig


def attention_rows_figure(results: dict):
    """Broad and focused head: one sentence's attention of one query, float softmax vs HCCS direct vs after QAT."""
    from plotly.subplots import make_subplots

    ex = results["fidelity"]["examples"]
    fig = make_subplots(rows=1, cols=len(ex), subplot_titles=[f"{e['kind']} head L{e['layer']}H{e['head']}"
                                                              for e in ex])
    for c, e in enumerate(ex, start=1):
        for key, name in (("softmax", "float32 softmax"), ("direct", "HCCS direct"), ("qat", "HCCS after QAT")):
            fig.add_bar(x=e["tokens"], y=e[key], name=name, legendgroup=name, showlegend=c == 1, row=1, col=c)
    fig.update_layout(barmode="group", height=380, title="Attention of the [CLS] query over the keys of one test sentence")
    return fig


def load_saved_results(model: str = "tiny") -> dict | None:
    """The committed full-run results `benchmarks/results/qat_<model>.json` of a source checkout, or None."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / f"qat_{model}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())
