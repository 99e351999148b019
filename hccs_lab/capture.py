"""Capture per-layer, per-head pre-softmax attention logits of real text into a bounded bank.

A *row* is one (non-padded) query position of one text: the logits of that query against every
key, `q @ k^T * scaling` without the additive mask, padded with zeros to the bank's `seq_len`, and a
boolean mask that is True only for keys that take part (padding and, in decoders, future keys are
False). Every statistic here looks only at keys whose mask is True.

Memory stays bounded however many texts stream through: each layer keeps a reservoir of at most
`max_rows_per_head` rows (Algorithm R with a seeded generator). All heads and all layers share the
same sampled rows, so a row index means the same (text, query position) everywhere; that keeps rows
aligned across heads and lets a viewer show which sentence a row came from.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .models import attention
from .io import atomic_open
from .core import choose_scale, quantize_logits, softmax
from .errors import InputError, InputTypeError, MissingError

FORMAT = "hccs-lab-logit-bank"
FORMAT_VERSION = 1
BROAD_THRESHOLD = 0.5  # mean normalised entropy at or above this: the head spreads its attention


# ---------------------------------------------------------------------------------------------
# one head's rows


@dataclass
class HeadRows:
    """One head's captured rows: logits float32 [rows, n] (0 where masked), mask bool [rows, n]."""

    logits: np.ndarray
    mask: np.ndarray
    text_index: np.ndarray | None = None  # which text of the bank each row came from
    query_pos: np.ndarray | None = None  # which token position was the query

    def __post_init__(self):
        if self.logits.ndim != 2 or self.logits.shape != self.mask.shape:
            raise InputError(f"logits {self.logits.shape} and mask {self.mask.shape} must both be [rows, n]")
        if self.mask.dtype != np.bool_:
            raise InputTypeError(f"mask must be boolean, got {self.mask.dtype}")

    def __len__(self) -> int:
        return self.logits.shape[0]

    @property
    def n(self) -> int:
        return self.logits.shape[1]

    @property
    def valid_len(self) -> np.ndarray:
        """Keys taking part in each row (int64 [rows])."""
        return self.mask.sum(axis=1)

    def int8(self, scale: float) -> np.ndarray:
        """The int8 view for one quantization step `scale` (row max -> 127, masked keys -> -128)."""
        return quantize_logits(self.logits, scale, mask=self.mask)

    def softmax(self) -> np.ndarray:
        """The head's true attention probabilities over the valid keys (masked keys 0)."""
        # zero what is under the mask first: whatever sits there must not even overflow
        return softmax(np.where(self.mask, self.logits, 0.0).astype(np.float64), mask=self.mask)

    def centered(self) -> np.ndarray:
        """Max-centered logits x - max(x) (<= 0) of the valid keys, flattened (the distribution HCCS sees)."""
        mx = np.where(self.mask, self.logits, -np.inf).max(axis=1, keepdims=True)
        mx = np.where(np.isfinite(mx), mx, 0.0)
        return (np.where(self.mask, self.logits, 0.0) - mx)[self.mask]

    def sample(self, k: int, seed: int = 0) -> "HeadRows":
        """At most `k` rows drawn without replacement (all of them, in order, when k >= rows)."""
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        if k >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=k, replace=False))
        return self.take(idx)

    def take(self, idx) -> "HeadRows":
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return HeadRows(self.logits[idx], self.mask[idx], pick(self.text_index), pick(self.query_pos))


# ---------------------------------------------------------------------------------------------
# per-head summary


@dataclass
class BankSummary:
    """Per-head statistics over the valid keys of the reservoir rows, each an [n_layers, n_heads] array.

    `std`: std of max-centered logits; `p50/p90/p99`: percentiles of the distance below the row max
    (m - x); `max_dist`: largest such distance; `entropy`: mean softmax entropy per row (nats);
    `norm_entropy`: the same divided by log(valid_len) (1 = uniform); `broad`: norm_entropy >=
    BROAD_THRESHOLD; `scale`: suggested int8 step (99th-percentile distance -> 127 steps).
    """

    std: np.ndarray
    p50: np.ndarray
    p90: np.ndarray
    p99: np.ndarray
    max_dist: np.ndarray
    entropy: np.ndarray
    norm_entropy: np.ndarray
    broad: np.ndarray
    scale: np.ndarray
    rows: np.ndarray

    FIELDS = ("std", "p50", "p90", "p99", "max_dist", "entropy", "norm_entropy", "broad", "scale", "rows")

    def as_records(self) -> list:
        L, H = self.std.shape
        return [
            {"layer": l, "head": h, **{f: getattr(self, f)[l, h].item() for f in self.FIELDS}}
            for l in range(L)
            for h in range(H)
        ]


def row_entropy(probs: np.ndarray) -> np.ndarray:
    """-sum p log p per row (nats), with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, probs * np.log(probs), 0.0)
    return -terms.sum(axis=-1)


def head_statistics(rows: HeadRows) -> dict:
    """The summary numbers of one head (see BankSummary); NaN where the head has no valid rows."""
    has = rows.valid_len > 0
    if not has.any():
        nan = float("nan")
        return dict(std=nan, p50=nan, p90=nan, p99=nan, max_dist=nan, entropy=nan, norm_entropy=nan, broad=False, scale=nan, rows=0)
    rows = rows.take(np.nonzero(has)[0])
    centered = rows.centered()
    dist = -centered
    p = rows.softmax()
    ent = row_entropy(p)
    vl = rows.valid_len
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.where(vl > 1, ent / np.log(np.maximum(vl, 2)), 1.0)  # one key: nothing to spread over
    norm_mean = float(norm.mean())
    return dict(
        std=float(centered.std()),
        p50=float(np.percentile(dist, 50)),
        p90=float(np.percentile(dist, 90)),
        p99=float(np.percentile(dist, 99)),
        max_dist=float(dist.max()),
        entropy=float(ent.mean()),
        norm_entropy=norm_mean,
        broad=bool(norm_mean >= BROAD_THRESHOLD),
        scale=float(choose_scale(rows.logits, mask=rows.mask)),
        rows=int(len(rows)),
    )


# ---------------------------------------------------------------------------------------------
# the bank


@dataclass
class LogitBank:
    """Reservoir rows of every layer and head. `bank[layer, head]` -> HeadRows.

    logits: float32 [n_layers, rows, n_heads, seq_len] (rows shared by every layer and head);
    mask: bool [rows, seq_len]; text_index / query_pos: int64 [rows].
    """

    model_name: str
    n_texts: int
    seq_len: int
    logits: np.ndarray
    mask: np.ndarray
    text_index: np.ndarray
    query_pos: np.ndarray
    rows_seen: int = 0
    max_rows_per_head: int = 0
    seed: int = 0
    texts: list = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        return self.logits.shape[0]

    @property
    def n_heads(self) -> int:
        return self.logits.shape[2]

    @property
    def n_rows(self) -> int:
        return self.logits.shape[1]

    def __repr__(self) -> str:
        return (
            f"LogitBank({self.model_name!r}: {self.n_layers} layers x {self.n_heads} heads, {self.n_rows} rows of "
            f"n={self.seq_len} kept from {self.rows_seen} rows of {self.n_texts} texts)"
        )

    def __getitem__(self, key) -> HeadRows:
        if not (isinstance(key, tuple) and len(key) == 2):
            raise InputTypeError("index a LogitBank as bank[layer, head]")
        layer, head = key
        for what, v, top in (("layer", layer, self.n_layers), ("head", head, self.n_heads)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise InputTypeError(f"{what} must be an integer, got {v!r}")
            if not 0 <= v < top:
                raise IndexError(f"{what} {v} out of range: the bank has {top} {what}s (0..{top - 1})")
        return HeadRows(self.logits[layer, :, head, :], self.mask, self.text_index, self.query_pos)

    def heads(self):
        """(layer, head) pairs in order."""
        return [(l, h) for l in range(self.n_layers) for h in range(self.n_heads)]

    def summary(self) -> BankSummary:
        L, H = self.n_layers, self.n_heads
        cols = {f: np.zeros((L, H), dtype=bool if f == "broad" else (np.int64 if f == "rows" else np.float64)) for f in BankSummary.FIELDS}
        for l, h in self.heads():
            for k, v in head_statistics(self[l, h]).items():
                cols[k][l, h] = v
        return BankSummary(**cols)

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path) -> Path:
        """Write the bank as .npz (atomically: a temp file in the same folder, then os.replace)."""
        path = Path(path)
        if path.suffix != ".npz":
            raise InputError(f"a logit bank is saved as .npz, got {path.name!r}")
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_name": self.model_name,
            "n_texts": int(self.n_texts),
            "seq_len": int(self.seq_len),
            "rows_seen": int(self.rows_seen),
            "max_rows_per_head": int(self.max_rows_per_head),
            "seed": int(self.seed),
            "texts": list(self.texts),
        }
        with atomic_open(path, "wb") as fh:
            np.savez_compressed(
                fh,
                meta=np.array(json.dumps(meta)),
                logits=self.logits,
                mask=self.mask,
                text_index=self.text_index,
                query_pos=self.query_pos,
            )
        return path

    @classmethod
    def load(cls, path) -> "LogitBank":
        path = Path(path)
        if not path.is_file():
            raise MissingError(f"no logit bank at {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                if "meta" not in z.files:
                    raise InputError(f"{path} is an .npz but not an hccs-lab logit bank (no 'meta' entry)")
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k] for k in ("logits", "mask", "text_index", "query_pos")}
        except KeyError as e:
            raise InputError(f"{path} is not a complete hccs-lab logit bank: missing {e}") from None
        except (zipfile.BadZipFile, OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path} is not a readable logit bank (corrupt or wrong file): {e}") from None
        except ValueError as e:
            if "logit bank" in str(e):
                raise
            raise InputError(f"{path} is not a readable logit bank (corrupt or wrong file): {e}") from None
        if meta.get("format") != FORMAT:
            raise InputError(f"{path} is not an hccs-lab logit bank (format {meta.get('format')!r})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise InputError(
                f"{path} has logit-bank format version {meta.get('format_version')}, this hccs_lab reads version {FORMAT_VERSION}; capture it again"
            )
        lg, mk = arrays["logits"], arrays["mask"]
        if lg.ndim != 4 or mk.ndim != 2 or lg.shape[1] != mk.shape[0] or lg.shape[3] != mk.shape[1] or mk.dtype != np.bool_:
            raise InputError(f"{path} holds inconsistent arrays: logits {lg.shape}, mask {mk.shape} {mk.dtype}")
        return cls(
            model_name=meta["model_name"],
            n_texts=meta["n_texts"],
            seq_len=meta["seq_len"],
            logits=lg.astype(np.float32, copy=False),
            mask=mk,
            text_index=arrays["text_index"].astype(np.int64, copy=False),
            query_pos=arrays["query_pos"].astype(np.int64, copy=False),
            rows_seen=meta.get("rows_seen", 0),
            max_rows_per_head=meta.get("max_rows_per_head", 0),
            seed=meta.get("seed", 0),
            texts=list(meta.get("texts", [])),
        )


# ---------------------------------------------------------------------------------------------
# streaming capture


class RowReservoir:
    """Algorithm R over a stream of rows, one slot plan shared by every layer and head.

    `plan(r)` says, for the next `r` rows of the stream, which of them enter the reservoir and in
    which slot; every row seen so far is kept with the same probability capacity / seen.
    """

    def __init__(self, capacity: int, seed: int = 0):
        if capacity < 1:
            raise InputError(f"max_rows_per_head must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.rng = np.random.default_rng(seed)
        self.seen = 0

    @property
    def count(self) -> int:
        return min(self.capacity, self.seen)

    def plan(self, r: int) -> tuple:
        """(source indices into the r new rows, their slots): the last writer of a slot wins, as in the sequential algorithm."""
        i = self.seen + np.arange(r, dtype=np.int64)
        self.seen += r
        slots = i.copy()
        late = i >= self.capacity
        if late.any():
            slots[late] = self.rng.integers(0, i[late] + 1)
        src = np.nonzero(slots < self.capacity)[0]
        sl = slots[src]
        # a slot hit twice in one batch keeps the later row
        _, last_rev = np.unique(sl[::-1], return_index=True)
        keep = np.sort(len(sl) - 1 - last_rev)
        return src[keep], sl[keep]


def _tokenize(tokenizer, texts, max_len):
    return tokenizer(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")


def _check_texts(texts) -> list:
    if isinstance(texts, str):
        raise InputTypeError("texts must be a list of strings, not one string (wrap it in a list)")
    texts = list(texts)
    if not texts:
        raise InputError("texts is empty: nothing to capture")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise InputError(f"texts must be non-empty strings; entries {bad[:5]} are not")
    return texts


class _BankSink:
    """The observer capture_logits installs: copies the reservoir's chosen rows of every layer into the bank arrays.

    Per batch, `next_batch` says which (text, query) rows go to which slots; the observer then
    takes only those rows of each layer's logits (masked keys stored as 0) and, in the first
    layer, their key masks.
    """

    def __init__(self, L: int, H: int, cap: int, n: int):
        self.logits = np.zeros((L, cap, H, n), dtype=np.float32)
        self.mask = np.zeros((cap, n), dtype=bool)
        self.text_index = np.full(cap, -1, dtype=np.int64)
        self.query_pos = np.full(cap, -1, dtype=np.int64)
        self.plan = {}

    def next_batch(self, b_idx, q_idx, slots, start: int, contiguous: bool) -> None:
        self.plan = dict(b=torch.from_numpy(b_idx), q=torch.from_numpy(q_idx), slots=slots, contiguous=contiguous)
        self.text_index[slots] = start + b_idx
        self.query_pos[slots] = q_idx

    def __call__(self, layer, lg, keymask):
        plan = self.plan
        slots = plan["slots"]
        if slots.size == 0:
            return
        lk = lg.shape[-1]
        if "km" not in plan:  # the key mask is the same in every layer: build it once per batch
            km = torch.broadcast_to(keymask, (lg.shape[0], 1, lg.shape[2], lk))[plan["b"], 0, plan["q"], :]
            plan["not_km"] = ~km[:, None, :]
            plan["km"] = km.numpy()
        rows = lg[plan["b"], :, plan["q"], :]  # [r, H, lk], a fresh copy of only the rows the reservoir takes
        rows = rows.masked_fill_(plan["not_km"], 0.0).float().cpu().numpy()  # masked keys stored as 0
        dest = self.logits[layer]
        if plan["contiguous"]:  # the reservoir is still filling: a plain slice, no scatter
            s0 = int(slots[0])
            dest[s0 : s0 + slots.size, :, :lk] = rows
        else:
            dest[slots, :, :lk] = rows
            dest[slots, :, lk:] = 0.0
        if layer == 0:
            if plan["contiguous"]:
                self.mask[s0 : s0 + slots.size, :lk] = plan["km"]
            else:
                self.mask[slots, :lk] = plan["km"]
                self.mask[slots, lk:] = False


def capture_logits(
    loaded,
    texts,
    max_len: int = 128,
    batch_size: int = 32,
    max_rows_per_head: int = 2048,
    seed: int = 0,
    progress: bool = True,
) -> LogitBank:
    """Stream `texts` through the model in batches and keep a reservoir of every head's logit rows."""
    from tqdm.auto import tqdm

    from .models import LoadedModel, load

    if not isinstance(loaded, LoadedModel):
        loaded = load(loaded)
    texts = _check_texts(texts)
    for what, v in (("max_len", max_len), ("batch_size", batch_size), ("max_rows_per_head", max_rows_per_head)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"{what} must be a positive integer, got {v!r}")
    model, n = loaded.model, int(max_len)
    res = RowReservoir(max_rows_per_head, seed)
    starts = range(0, len(texts), batch_size)
    batches = [_tokenize(loaded.tokenizer, texts[s : s + batch_size], n) for s in starts]
    # a short stream fills fewer slots than the reservoir holds: allocate only those, no trim copy
    cap = min(res.capacity, sum(int(b["attention_mask"].sum()) for b in batches))
    sink = _BankSink(loaded.n_layers, loaded.n_heads, cap, n)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), attention.observe(model, sink):
            for start, batch in tqdm(zip(starts, batches), total=len(batches), desc=f"capture {loaded.name}",
                                     unit="batch", disable=not progress):
                am = batch["attention_mask"].bool()
                b_idx, q_idx = (t.numpy() for t in torch.nonzero(am, as_tuple=True))  # valid queries, stream order
                filled = res.count
                src, slots = res.plan(len(b_idx))
                # while the reservoir fills, new rows go to fresh, consecutive (still zero) slots
                sink.next_batch(b_idx[src], q_idx[src], slots, start, contiguous=slots.size > 0 and filled + len(b_idx) <= cap)
                model(**batch)
    finally:
        model.train(was_training)
    logits, mask, text_index, query_pos = sink.logits, sink.mask, sink.text_index, sink.query_pos
    assert res.count == cap, (res.count, cap)  # every allocated slot was filled
    return LogitBank(
        model_name=loaded.name,
        n_texts=len(texts),
        seq_len=n,
        logits=logits,
        mask=mask,
        text_index=text_index,
        query_pos=query_pos,
        rows_seen=res.seen,
        max_rows_per_head=res.capacity,
        seed=seed,
        texts=texts,
    )


# ---------------------------------------------------------------------------------------------
# one sentence, one head


@dataclass
class TextAttention:
    """One text through one head: its tokens, logits [q, k] (0 where masked), mask and probabilities."""

    tokens: list
    logits: np.ndarray
    mask: np.ndarray
    probs: np.ndarray
    layer: int
    head: int


def attention_for_text(loaded, text: str, layer: int, head: int, max_len: int = 128) -> TextAttention:
    """Run one text and return the chosen head's pre-softmax logits with the text's tokens."""
    from .models import LoadedModel, load

    if not isinstance(loaded, LoadedModel):
        loaded = load(loaded)
    (text,) = _check_texts([text])
    if not 0 <= layer < loaded.n_layers or not 0 <= head < loaded.n_heads:
        raise IndexError(f"(layer {layer}, head {head}) outside the model's {loaded.n_layers} layers x {loaded.n_heads} heads")
    batch = _tokenize(loaded.tokenizer, [text], max_len)
    got = {}

    def grab(l, lg, km):
        if l == layer:
            got["lg"] = lg[0, head].detach().float().cpu().numpy()
            got["km"] = torch.broadcast_to(km, lg.shape)[0, head].cpu().numpy()

    with torch.no_grad(), attention.observe(loaded.model, grab):
        loaded.model(**batch)
    tokens = loaded.tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    km = got["km"].copy()
    lg = np.where(km, got["lg"], 0.0).astype(np.float32)
    return TextAttention(tokens, lg, km, softmax(lg.astype(np.float64), mask=km), layer, head)


# ---------------------------------------------------------------------------------------------
# sizes for notebooks and exercises


@dataclass(frozen=True)
class CaptureSettings:
    n_texts: int
    max_len: int


def notebook_capture_settings(quick: bool | None = None) -> CaptureSettings:
    """How much text the notebooks capture: 16 texts at 64 tokens in quick mode, else 256 at 128."""
    from .config import quick_mode

    quick = quick_mode() if quick is None else quick
    return CaptureSettings(16, 64) if quick else CaptureSettings(256, 128)


# ---------------------------------------------------------------------------------------------
# one row for the five-minute introduction


EXAMPLE_TEXT = "a gripping, beautifully acted thriller that never lets go of its audience."
# log(p) of a float32 softmax reaches about -88 before p underflows to 0; keys that far below the max
# are clipped by every D anyway, so a floor well inside the int8 range keeps them finite.
LOG_FLOOR = -60.0


@dataclass(frozen=True)
class ExampleRow:
    """One query row of one head: max-centered float logits and the key tokens."""

    logits: np.ndarray  # float64 [n], max == 0
    tokens: list[str]
    text: str
    layer: int
    head: int
    query: int


@lru_cache(maxsize=1)
def _eager_minilm():
    """MiniLM with transformers' own eager attention: a path independent of the hccs_lab seam."""
    from .config import offline
    from .models.registry import minilm_path

    offline()
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, attn_implementation="eager", local_files_only=True).eval()
    return tok, model


def example_row(text: str = EXAMPLE_TEXT, layer: int = 1, head: int = 6, query: int = 13) -> ExampleRow:
    """The pre-softmax logits of one attention row of the bundled MiniLM (offline, a few seconds).

    Eager attention returns softmax probabilities; log(p) recovers the logits up to a per-row
    constant, which neither softmax nor HCCS sees.
    """
    tok, model = _eager_minilm()
    n_layers = model.config.num_hidden_layers
    n_heads = model.config.num_attention_heads
    if not 0 <= layer < n_layers or not 0 <= head < n_heads:
        raise InputError(f"layer/head ({layer}, {head}) outside the model's {n_layers} layers x {n_heads} heads")
    enc = tok(text, return_tensors="pt", truncation=True, max_length=64)
    n = int(enc["input_ids"].shape[1])
    if not 0 <= query < n:
        raise InputError(f"query {query} outside the {n} tokens of the text")
    with torch.no_grad():
        out = model(**enc, output_attentions=True)
    probs = out.attentions[layer][0, head, query].double().numpy()
    logp = np.log(np.maximum(probs, np.exp(LOG_FLOOR)))
    tokens = tok.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    return ExampleRow(logits=logp - logp.max(), tokens=tokens, text=text, layer=layer, head=head, query=query)
