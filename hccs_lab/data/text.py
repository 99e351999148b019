"""English Wikipedia text for perplexity: the shortened dump shipped inside the gensim wheel.

`gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2` holds
the first articles of a 2017 English Wikipedia dump. gensim's own `extract_pages` reads the XML
(main namespace only) and `filter_wiki` strips the wiki markup; redirects and stubs are dropped and
the remaining bold/italic quote marks and heading equals signs are removed here.

Split: an article is held out when its rank by sha256("hccs-lab-wiki:" + title) falls in the first
quarter, so the split depends only on the titles (not on file order or on Python's hash seed).
Calibration uses the other articles. Both are cut into fixed-length token windows.
"""
from __future__ import annotations

import bz2
import functools
import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, MissingError

DUMP = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
INSTALL = ".venv/bin/python -m pip install -c constraints.txt gensim==4.4.0"
SPLIT_SALT = "hccs-lab-wiki:"
HELD_OUT_FRACTION = 0.25
MIN_CHARS = 1000


@dataclass(frozen=True)
class Article:
    title: str
    page_id: int
    text: str


def dump_path() -> Path:
    """The bz2 Wikipedia sample inside the installed gensim wheel."""
    spec = importlib.util.find_spec("gensim")
    locs = list(spec.submodule_search_locations or []) if spec is not None else []
    f = Path(locs[0]) / DUMP if locs else None
    if f is None or not f.is_file():
        raise MissingError(f"the Wikipedia sample comes from the gensim wheel, which is not installed; run: {INSTALL}")
    return f


_QUOTES = re.compile(r"'{2,}")
_HEADING = re.compile(r"^\s*(=+)\s*(.*?)\s*\1\s*$", re.MULTILINE)
_SPACES = re.compile(r"[ \t]+")
_BLANKS = re.compile(r"\n\s*\n+")


def clean(text: str) -> str:
    """What filter_wiki leaves, minus quote-mark emphasis and heading markup, whitespace collapsed."""
    text = _QUOTES.sub("", text)
    text = _HEADING.sub(lambda m: m.group(2), text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", text).strip()


@functools.lru_cache(maxsize=1)
def articles(min_chars: int = MIN_CHARS) -> tuple:
    """Every main-namespace article of the sample with at least `min_chars` characters, in file order."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    out = []
    with bz2.open(dump_path(), "rb") as fh:
        for title, raw, page_id in extract_pages(fh, filter_namespaces=("0",)):
            if raw.lstrip()[:9].lower() == "#redirect":
                continue
            text = clean(filter_wiki(raw))
            if len(text) >= min_chars:
                out.append(Article(title, int(page_id), text))
    return tuple(out)


def _rank_key(a: Article) -> str:
    return hashlib.sha256((SPLIT_SALT + a.title).encode("utf-8")).hexdigest()


def split(arts=None, held_out_fraction: float = HELD_OUT_FRACTION) -> tuple:
    """(calibration, held_out) article tuples, deterministic in the titles; both keep file order."""
    arts = articles() if arts is None else tuple(arts)
    if not 0 < held_out_fraction < 1:
        raise InputError(f"held_out_fraction must lie in (0, 1), got {held_out_fraction}")
    ranked = sorted(arts, key=_rank_key)
    k = max(1, int(round(held_out_fraction * len(arts))))
    held = {a.title for a in ranked[:k]}
    return tuple(a for a in arts if a.title not in held), tuple(a for a in arts if a.title in held)


_TOKENS: dict = {}  # (tokenizer identity, title) -> token ids: articles are tokenized once per process


def _token_ids(tokenizer, a: Article) -> list:
    key = (getattr(tokenizer, "name_or_path", ""), len(tokenizer), type(tokenizer).__name__, a.title, len(a.text))
    ids = _TOKENS.get(key)
    if ids is None:
        ids = _TOKENS[key] = tokenizer(a.text, add_special_tokens=False, verbose=False)["input_ids"]
    return ids


def token_windows(tokenizer, arts, seq_len: int, n: int | None = None) -> np.ndarray:
    """int64 [windows, seq_len]: each article tokenized alone, cut into non-overlapping windows.

    Windows are taken round-robin over the articles (article 0's first window, article 1's first,
    ..., then every article's second, ...) so that the first `n` cover as many articles as possible.
    """
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 2:
        raise InputError(f"seq_len must be an integer >= 2, got {seq_len!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise InputError(f"n must be a positive integer (windows), got {n!r}")
    per = []
    for a in arts:
        ids = _token_ids(tokenizer, a)
        k = len(ids) // seq_len
        if k:
            per.append(np.asarray(ids[: k * seq_len], dtype=np.int64).reshape(k, seq_len))
    if not per:
        raise InputError(f"no article is {seq_len} tokens long")
    rows = []
    depth = max(len(p) for p in per)
    for j in range(depth):
        for p in per:
            if j < len(p):
                rows.append(p[j])
                if n is not None and len(rows) == n:
                    return np.stack(rows)
    if n is not None and len(rows) < n:
        raise InputError(f"asked for {n} windows of {seq_len} tokens, the articles give only {len(rows)}")
    return np.stack(rows)


def window_texts(tokenizer, windows: np.ndarray) -> list:
    """The windows decoded back to text (what capture_logits and calibration take).

    Re-tokenizing a decoded window gives the same tokens up to the odd merge at its two ends, so a
    capture with `max_len=seq_len` sees (almost always exactly) the window.
    """
    return [tokenizer.decode(w.tolist()) for w in np.asarray(windows)]


def calibration_windows(tokenizer, n: int, seq_len: int) -> np.ndarray:
    """The first `n` windows of `seq_len` tokens of the calibration articles (never held-out text)."""
    cal, _ = split()
    return token_windows(tokenizer, cal, seq_len, n=n)


def heldout_windows(tokenizer, n: int, seq_len: int) -> np.ndarray:
    """The first `n` windows of `seq_len` tokens of the held-out articles (perplexity is measured here)."""
    _, held = split()
    return token_windows(tokenizer, held, seq_len, n=n)


def calibration_texts(tokenizer, n: int, seq_len: int) -> list:
    """`calibration_windows` as text, for `capture_logits(loaded, texts, max_len=seq_len)`."""
    return window_texts(tokenizer, calibration_windows(tokenizer, n, seq_len))
