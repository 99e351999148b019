"""Perplexity of a causal LM on fixed-length token windows, softmax or a replacement in every head.

    from hccs_lab.retrain import perplexity as ppl
    f32 = ppl.perplexity(loaded, windows)                                   # the model as it is
    hc = ppl.perplexity(loaded, windows, ppl.DeployedProbs(tables, "u8-clb"))

`perplexity` runs the windows through the model with `probs_fn` in the attention seam (None: the
model's own softmax, bit-for-bit eager) and returns exp(mean next-token NLL) over every predicted
token (seq_len - 1 per window). `reference_perplexity` computes the same figure from transformers'
own `labels=` loss, as a check.

Probability functions for the seam (`fn(layer, logits, keymask) -> probs`):

* `DeployedProbs(tables, variant, padding)` (`retrain.substitute`): the exact integer output of the deployed kernel in
  every head (DESIGN.md's `hccs_deployed`: int8 logits on the head's scale, `hccs_int`, divided by
  the full scale), with each head's calibrated (B, S, D) and scale. `padding="exclude"` is our
  kernels with a per-row valid length (a causal row i sees keys 0..i); `"as_min"` a kernel without
  a mask (aie4ml): future keys enter as -128, take part in the max and in Z, and receive
  probability, so the model attends to tokens it has not yet seen. That is not a causal LM any more
  and its perplexity is reported only to show what deploying causal attention without a mask does.
* `uniform_probs()`: uniform causal attention over the valid keys (HCCS with S = 0);
* `int8_softmax_probs(tables)`: exact softmax of the same int8-grid logits HCCS sees (quantization
  alone, no clipped-linear shape);
* `default_tables(tables, seq_len, target)` (`retrain.controls`): the uncalibrated default parameter set at each head's scale.

`run(settings)` is the `hccs-lab perplexity` pipeline: held-out windows, calibration windows
captured once, head / layer / global calibrations from that one capture, every requested variant,
and the controls; `finetune` is the short HCCS fine-tune on next-token loss the benchmark runs.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..calibrate.calibration import GRANULARITIES
from ..core import split_variant
from ..errors import InputError
from ..models.attention import set_probs, state_of
from .controls import default_tables, int8_softmax_probs, uniform_probs  # the classifier's controls
from .substitute import DeployedProbs, HCCSProbs, HCCSTables, padding_for

@dataclass(frozen=True)
class Perplexity:
    perplexity: float
    nll: float  # mean next-token negative log-likelihood (nats)
    tokens: int  # predicted tokens
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"perplexity": self.perplexity, "nll": self.nll, "tokens": self.tokens, "seconds": round(self.seconds, 2)}


def _check_windows(windows) -> torch.Tensor:
    w = torch.as_tensor(np.asarray(windows), dtype=torch.long)
    if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 2:
        raise InputError(f"windows must be int token ids [n_windows, seq_len >= 2], got shape {tuple(w.shape)}")
    return w


def _causal_lm(loaded):
    model = loaded.model
    if not getattr(loaded, "causal", False) or not hasattr(model, "lm_head"):
        raise InputError(f"perplexity needs a causal language model with an LM head; {loaded!r} is not one")
    return model


def perplexity(loaded, windows, probs_fn=None, batch_size: int = 8, progress: bool = True,
               desc: str = "perplexity") -> Perplexity:
    """exp(mean NLL) of next-token prediction over the windows, `probs_fn` in every attention layer."""
    from tqdm.auto import tqdm

    model = _causal_lm(loaded)
    w = _check_windows(windows)
    prev = state_of(model).probs_fn
    set_probs(model, probs_fn)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            for s in tqdm(range(0, len(w), batch_size), desc=desc, unit="batch", disable=not progress, leave=False):
                ids = w[s : s + batch_size]
                logits = model(input_ids=ids).logits[:, :-1].float()
                nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                                        reduction="sum")
                total += float(nll)
                count += ids[:, 1:].numel()
    finally:
        set_probs(model, prev)
        model.train(was_training)
    mean = total / count
    return Perplexity(math.exp(mean), mean, count, time.perf_counter() - t0)


def reference_perplexity(loaded, windows, batch_size: int = 8) -> Perplexity:
    """The same figure from transformers' own loss (`labels=input_ids`), softmax attention."""
    model = _causal_lm(loaded)
    w = _check_windows(windows)
    prev = state_of(model).probs_fn
    set_probs(model, None)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for s in range(0, len(w), batch_size):
                ids = w[s : s + batch_size]
                loss = model(input_ids=ids, labels=ids).loss
                n = ids[:, 1:].numel()
                total += float(loss) * n
                count += n
    finally:
        set_probs(model, prev)
        model.train(was_training)
    mean = total / count
    return Perplexity(math.exp(mean), mean, count)


# ---------------------------------------------------------------------------------------------
# the `hccs-lab perplexity` pipeline


@dataclass
class PerplexitySettings:
    model: str = "smollm2-135m"
    texts: int = 64  # held-out windows evaluated
    seq_len: int = 128
    calibration_texts: int = 64  # calibration windows captured (the paper's 64 samples)
    rows_per_head: int = 1024  # reservoir rows per head for per-head calibration
    pooled_rows_per_head: int = 256  # rows per head pooled for layer / global calibration
    variants: tuple = ("u8-clb",)
    granularities: tuple = GRANULARITIES
    target: str = "hccs-lab"  # the kernel that runs: hccs-lab (valid lengths) or aie4ml (no mask)
    calibration_target: str | None = None  # whose parameter rules calibration obeys (default: target's)
    batch_size: int = 8
    calibration_file: str | None = None
    controls: bool = True

    def check(self) -> "PerplexitySettings":
        for k in ("texts", "calibration_texts", "rows_per_head", "pooled_rows_per_head", "batch_size"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"{k} must be a positive integer, got {v!r}")
        if not 2 <= self.seq_len <= 32767:
            raise InputError(f"seq_len must lie in [2, 32767], got {self.seq_len}")
        for v in self.variants:
            split_variant(v)
        if not self.variants:
            raise InputError("at least one variant is needed")
        bad = [g for g in self.granularities if g not in GRANULARITIES]
        if bad or not self.granularities:
            raise InputError(f"granularities must be among {', '.join(GRANULARITIES)}, got {list(self.granularities)}")
        from ..core import TARGETS

        for k in ("target", "calibration_target"):
            v = getattr(self, k)
            if v is not None and v not in TARGETS or (k == "target" and v is None):
                raise InputError(f"{k} must be one of {', '.join(TARGETS)}, got {v!r}")
        if self.target == "aie4ml" and self.calibration_target == "hccs-lab":
            raise InputError("parameters calibrated under hccs-lab's rules may break aie4ml's (n*(B - S*D) >= 256)")
        return self

    @property
    def rules(self) -> str:
        return self.calibration_target or self.target


def subsample_bank(bank, rows: int, seed: int = 0):
    """The same bank with at most `rows` of its rows (shared by every head), drawn without replacement."""
    from ..capture import LogitBank

    if rows >= bank.n_rows:
        return bank
    idx = np.sort(np.random.default_rng(seed).choice(bank.n_rows, size=rows, replace=False))
    return LogitBank(bank.model_name, bank.n_texts, bank.seq_len, bank.logits[:, idx], bank.mask[idx],
                     bank.text_index[idx], bank.query_pos[idx], rows_seen=bank.rows_seen,
                     max_rows_per_head=rows, seed=seed, texts=bank.texts)


def calibrate_decoder(loaded, s: PerplexitySettings, progress: bool = True) -> tuple:
    """Capture the calibration windows once; ({granularity: Calibration}, info dict).

    Per head: every reservoir row (`rows_per_head`). Layer and global pool many heads' rows; the
    exact grid search over the pooled set grows faster than linearly with its size, so those pool
    `pooled_rows_per_head` rows of each head (the same rows for every head).
    """
    from ..calibrate import calibrate, fingerprint_texts
    from ..capture import capture_logits
    from ..data import text

    t0 = time.perf_counter()
    texts = text.calibration_texts(loaded.tokenizer, s.calibration_texts, s.seq_len)
    bank = capture_logits(loaded, texts, max_len=s.seq_len, batch_size=s.batch_size,
                          max_rows_per_head=s.rows_per_head, progress=progress)
    t_capture = time.perf_counter() - t0
    fp = fingerprint_texts(texts)
    cals, seconds = {}, {}
    for g in s.granularities:
        b = bank if g == "head" else subsample_bank(bank, s.pooled_rows_per_head)
        t = time.perf_counter()
        cals[g] = calibrate(b, s.seq_len, granularity=g, samples=s.calibration_texts, progress=progress,
                            data_fingerprint=fp, target=s.rules)
        seconds[g] = time.perf_counter() - t
    info = {"texts": s.calibration_texts, "rows_per_head": int(bank.n_rows), "rows_seen": int(bank.rows_seen),
            "pooled_rows_per_head": min(s.pooled_rows_per_head, bank.n_rows), "target": s.rules,
            "capture_seconds": round(t_capture, 2), "seconds": {g: round(v, 2) for g, v in seconds.items()},
            "mean_kl": {g: c.mean_kl_after for g, c in cals.items()},
            "mean_kl_default": cals[s.granularities[0]].mean_kl_before}
    return cals, info, bank


def run(s: PerplexitySettings, loaded=None, progress: bool = True, calibrations: dict | None = None) -> dict:
    """Everything `hccs-lab perplexity` writes (see DESIGN.md), as a dict."""
    from ..data import text
    from ..models import load

    s.check()
    t0 = time.perf_counter()
    loaded = load(s.model) if loaded is None else loaded
    L, H = loaded.n_layers, loaded.n_heads
    windows = text.heldout_windows(loaded.tokenizer, s.texts, s.seq_len)
    f32 = perplexity(loaded, windows, None, s.batch_size, progress, "float32")
    cals = dict(calibrations or {})
    info = {}
    primary_g = None
    if s.calibration_file:
        from ..calibrate import Calibration

        c = Calibration.from_json(s.calibration_file)
        primary_g = c.granularity
        check_calibration(c, loaded, s.seq_len)
        cals[c.granularity] = c
        info["file"] = {"path": str(s.calibration_file), "granularity": c.granularity, "seq_len": c.seq_len,
                        "target": getattr(c, "target", None)}
    missing = tuple(g for g in s.granularities if g not in cals)
    if missing:
        s_missing = PerplexitySettings(**{**asdict(s), "granularities": missing})
        got, cap_info, _ = calibrate_decoder(loaded, s_missing, progress)
        cals.update(got)
        info.update(cap_info)
    padding = padding_for(s.target)
    rows = []
    for g in [g for g in GRANULARITIES if g in cals]:
        tables = HCCSTables.from_calibration(cals[g], L, H)
        for v in s.variants:
            r = perplexity(loaded, windows, DeployedProbs(tables, v, padding), s.batch_size, progress, f"hccs {g} {v}")
            rows.append({"granularity": g, "variant": v, "padding": padding, **r.as_dict(),
                         "ratio_to_float32": r.perplexity / f32.perplexity})
    primary_g = primary_g or next(g for g in GRANULARITIES if g in cals)
    primary = next(r for r in rows if r["granularity"] == primary_g and r["variant"] == s.variants[0])
    out = {
        "model": loaded.name,
        "seq_len": int(s.seq_len),
        "texts": int(windows.shape[0]),
        "tokens": int(f32.tokens),
        "data": {"source": "gensim enwiki sample (held-out articles)", "windows": int(windows.shape[0])},
        "float32": f32.as_dict(),
        "hccs": {"perplexity": primary["perplexity"], "variant": primary["variant"], "granularity": primary_g,
                 "padding": padding, "target": s.target},
        "hccs_all": rows,
        "calibration": info,
        "controls": {},
    }
    if s.controls:
        base = HCCSTables.from_calibration(cals[primary_g], L, H)
        ctl = {
            "uniform": perplexity(loaded, windows, uniform_probs(), s.batch_size, progress, "uniform"),
            "int8_softmax": perplexity(loaded, windows, int8_softmax_probs(base), s.batch_size, progress, "int8 softmax"),
            "default_params": perplexity(loaded, windows, DeployedProbs(default_tables(base, s.seq_len, "hccs-lab"), s.variants[0], "exclude"),
                                         s.batch_size, progress, "default params"),
        }
        out["controls"] = {k: {**v.as_dict(), "ratio_to_float32": v.perplexity / f32.perplexity} for k, v in ctl.items()}
        out["controls"]["default_params"]["variant"] = s.variants[0]
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["settings"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(s).items()}
    return out


def check_calibration(cal, loaded, seq_len: int) -> None:
    """A calibration file must describe this model's heads and allow rows of `seq_len` keys."""
    if (cal.n_layers, cal.n_heads) != (loaded.n_layers, loaded.n_heads):
        raise InputError(f"the calibration has {cal.n_layers} layers x {cal.n_heads} heads, "
                         f"{loaded.name} has {loaded.n_layers} x {loaded.n_heads}")
    if cal.seq_len < seq_len:
        raise InputError(f"the calibration was made for rows of {cal.seq_len} keys; --seq-len {seq_len} is longer "
                         f"(n*B <= 32767 may break): calibrate again with --seq-len {seq_len}")


def results_table(r: dict) -> list:
    """One line per configuration of a results dict: (name, perplexity, ratio to float32)."""
    f = r["float32"]["perplexity"]
    lines = [("float32", f, 1.0)]
    lines += [(f"hccs {x['granularity']} {x['variant']}", x["perplexity"], x["perplexity"] / f) for x in r["hccs_all"]]
    lines += [(f"control {k}", v["perplexity"], v["perplexity"] / f) for k, v in r.get("controls", {}).items()]
    return lines


def format_table(r: dict) -> str:
    rows = results_table(r)
    w = max(len(n) for n, _, _ in rows)
    head = f"{'':{w}}  perplexity  x float32"
    return "\n".join([head] + [f"{n:{w}}  {p:10.2f}  {q:9.3f}" for n, p, q in rows])


# ---------------------------------------------------------------------------------------------
# a short HCCS fine-tune on next-token loss


@dataclass
class FinetuneResult:
    steps: int
    seconds: float
    losses: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"steps": self.steps, "seconds": round(self.seconds, 1), "loss_first": self.losses[:5],
                "loss_last": self.losses[-5:]}


def finetune(loaded, windows, tables: HCCSTables, steps: int = 300, lr: float = 2e-5, batch_size: int = 2,
             train_embeddings: bool = False, progress: bool = True, seed: int = 0) -> FinetuneResult:
    """Fine-tune the model with HCCS in every head on next-token loss (AdamW, calibration fixed).

    The forward during training is HCCS's real-valued reading on the int8 grid (`HCCSProbs`, straight
    through the rounding); evaluate afterwards with `DeployedProbs` (the integer output). Training
    against the deployed output itself (`hccs_deployed`'s straight-through backward) is not done
    here yet. The tied embedding stays
    frozen unless `train_embeddings`. The model is left in eval mode with the softmax restored.
    """
    from tqdm.auto import tqdm

    model = _causal_lm(loaded)
    w = _check_windows(windows)
    if steps < 1 or batch_size < 1:
        raise InputError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    g = torch.Generator().manual_seed(seed)
    emb = model.get_input_embeddings().weight
    flags = [(p, p.requires_grad) for p in model.parameters()]
    params = [p for p in model.parameters() if train_embeddings or p is not emb]
    for p in model.parameters():
        p.requires_grad_(train_embeddings or p is not emb)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    prev = state_of(model).probs_fn
    set_probs(model, HCCSProbs(tables, quantize=True))
    model.train()
    losses = []
    t0 = time.perf_counter()
    try:
        bar = tqdm(range(steps), desc="hccs fine-tune", unit="step", disable=not progress, leave=False)
        for _ in bar:
            idx = torch.randint(0, len(w), (batch_size,), generator=g)
            ids = w[idx]
            loss = model(input_ids=ids, labels=ids).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(float(loss))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    finally:
        set_probs(model, prev)
        model.eval()
        for p, f in flags:
            p.requires_grad_(f)
    return FinetuneResult(steps, time.perf_counter() - t0, losses)
