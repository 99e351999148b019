"""What the notebooks share: the chosen head, the captured banks, the user's own calibration file.

* The chosen head. The head explorer (01) and the playground (02) remember the head a person picked
  in a small JSON file, `.hccs_session.json` in the notebooks' folder (the kernel's working folder;
  `HCCS_LAB_SESSION` names another file); 02-04 read it as their default head.
  `remember_head(model, layer, head)` writes it, `chosen_head(...)` reads it back.
* Captured banks. `cached_capture(model, texts, max_len)` captures once per (model, texts, max_len,
  reservoir size, seed) and keeps the bank under `hccs_lab.config.cache_dir()/banks/`, so each
  notebook does not recapture what another one already did; `Banks` is the same as a lazy mapping
  model name -> bank (a model is loaded only when its bank is not cached yet).
* The user's calibration. 03 writes, and the playground's "save these parameters" updates,
  `my_calibration_<model>.json` beside the notebooks (git-ignored); the committed example
  `calibration_minilm-l6.json` stays as it is. `calibration_file(model)` is the user's file when it
  exists, else the committed one.

Every file is written atomically (`hccs_lab.io`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .config import cache_dir
from .errors import InputError
from .io import write_text

SESSION_ENV = "HCCS_LAB_SESSION"
SESSION_FILE = ".hccs_session.json"
DEFAULT_MODEL = "minilm-l6"
BANK_CACHE_VERSION = 1  # bump when the capture changes what a bank holds


# ---------------------------------------------------------------------------------------------
# models a notebook may offer


def available_models() -> list[str]:
    """The models the notebooks' pickers offer: minilm-l6 first, the decoder when the registry has it."""
    from .models import KNOWN_MODELS

    return [m for m in (DEFAULT_MODEL, "smollm2-135m") if m in KNOWN_MODELS]


# ---------------------------------------------------------------------------------------------
# the chosen head


@dataclass(frozen=True)
class ChosenHead:
    model: str
    layer: int
    head: int
    source: str  # "session file" or "default"


def session_path() -> Path:
    """$HCCS_LAB_SESSION, else `.hccs_session.json` in the working folder (the notebooks' folder)."""
    return Path(os.environ.get(SESSION_ENV) or Path.cwd() / SESSION_FILE)


def remember_head(model: str, layer: int, head: int, path=None) -> Path:
    """Write the chosen head to the session file (what the explorer's selection calls)."""
    if not isinstance(model, str) or not model:
        raise InputError(f"model must be a non-empty name, got {model!r}")
    for what, v in (("layer", layer), ("head", head)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InputError(f"{what} must be a non-negative integer, got {v!r}")
    record = {"model": model, "layer": int(layer), "head": int(head),
              "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return write_text(path or session_path(), json.dumps(record, indent=1) + "\n")


def read_session(path=None) -> dict | None:
    """The session file's record, or None when there is none or it cannot be read."""
    p = Path(path or session_path())
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(record, dict) and isinstance(record.get("model"), str)
          and all(isinstance(record.get(k), int) and not isinstance(record.get(k), bool) and record[k] >= 0
                  for k in ("layer", "head")))
    return record if ok else None


def chosen_head(default: tuple[str, int, int], banks=None, path=None) -> ChosenHead:
    """The head remembered in the session file, else `default` = (model, layer, head).

    With `banks` (a `LogitBank`, or a mapping model name -> bank such as `Banks`), a remembered head
    is used only when its model is there and the head lies inside that bank's layers and heads.
    """
    record = read_session(path)
    if record is not None and _fits(record, banks):
        return ChosenHead(record["model"], record["layer"], record["head"], "session file")
    model, layer, head = default
    return ChosenHead(model, int(layer), int(head), "default")


def _fits(record: dict, banks) -> bool:
    if banks is None:
        return True
    if not isinstance(banks, Mapping):
        banks = {banks.model_name: banks}
    if record["model"] not in banks:
        return False
    bank = banks[record["model"]]
    return record["layer"] < bank.n_layers and record["head"] < bank.n_heads


# ---------------------------------------------------------------------------------------------
# captured banks, cached on disk


def bank_key(model: str, texts, max_len: int, max_rows_per_head: int, seed: int) -> str:
    """A stable key for one capture: the model's name, the texts, and every setting that shapes the bank."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": BANK_CACHE_VERSION, "model": model, "max_len": int(max_len),
                         "rows": int(max_rows_per_head), "seed": int(seed)}, sort_keys=True).encode())
    for t in texts:
        h.update(b"\0" + str(t).encode("utf-8"))
    return h.hexdigest()[:20]


def bank_cache_path(model: str, texts, max_len: int, max_rows_per_head: int = 2048, seed: int = 0) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    return cache_dir() / "banks" / f"{safe}-{bank_key(model, texts, max_len, max_rows_per_head, seed)}.npz"


_MEMORY: dict[Path, object] = {}  # banks already read in this process


def cached_capture(model, texts, max_len: int = 128, max_rows_per_head: int = 2048, seed: int = 0,
                   batch_size: int = 32, progress: bool = False):
    """`capture_logits(model, texts, max_len, ...)`, captured once and then read from the cache.

    `model` is a name (loaded only on a cache miss) or a `LoadedModel`. The bank is kept as .npz
    under `cache_dir()/banks/`, keyed by the model's name, the texts and the settings.
    """
    from .capture import LogitBank, capture_logits

    texts = list(texts)
    name = model if isinstance(model, str) else getattr(model, "name", None)
    if not name:
        raise InputError(f"cached_capture needs a model name or a LoadedModel, got {type(model).__name__}")
    path = bank_cache_path(name, texts, max_len, max_rows_per_head, seed)
    if path in _MEMORY:
        return _MEMORY[path]
    if path.is_file():
        try:
            bank = LogitBank.load(path)
        except InputError:
            bank = None  # an old or damaged cache entry: capture again and replace it
        if bank is not None:
            _MEMORY[path] = bank
            return bank
    bank = capture_logits(model, texts, max_len=max_len, batch_size=batch_size,
                          max_rows_per_head=max_rows_per_head, seed=seed, progress=progress)
    bank.save(path)
    _MEMORY[path] = bank
    return bank


class Banks(Mapping):
    """Model name -> captured bank of the same texts, captured (or read from the cache) on first use.

    What the playground takes when it should offer several models: a bank is only produced when
    the model is picked.
    """

    def __init__(self, models, texts, max_len: int = 128, **capture):
        self.models = list(models)
        if not self.models:
            raise InputError("Banks needs at least one model name")
        self.texts, self.max_len, self.capture = list(texts), int(max_len), capture
        self._banks: dict = {}

    def __getitem__(self, name):
        if name not in self.models:
            raise KeyError(name)
        if name not in self._banks:
            self._banks[name] = cached_capture(name, self.texts, self.max_len, **self.capture)
        return self._banks[name]

    def __iter__(self):
        return iter(self.models)

    def __len__(self):
        return len(self.models)


# ---------------------------------------------------------------------------------------------
# the user's calibration file


def user_calibration_path(model: str, folder=None) -> Path:
    """`my_calibration_<model>.json` in `folder` (default: the working folder, i.e. notebooks/)."""
    return Path(folder or Path.cwd()) / f"my_calibration_{model}.json"


def calibration_file(model: str, folder=None) -> Path:
    """The user's calibration when 03 (or the playground) wrote one, else the committed example."""
    mine = user_calibration_path(model, folder)
    return mine if mine.is_file() else Path(folder or Path.cwd()) / f"calibration_{model}.json"


def save_head_params(path, base, layer: int, head: int, params, scale: float, kl: float) -> Path:
    """Write calibration `base` (a `Calibration`) to `path` with one head's entry replaced, atomically.

    The entry keeps its "before" KL and takes the new (B, S, D), scale and KL; a per-layer or global
    calibration becomes per-head (its heads no longer share one set). Raises `InputError` naming the
    rule when the parameters break the calibration's target at its seq_len.
    """
    from .calibrate import HeadCalibration
    from .core import target_violations

    bad = target_violations(params, base.seq_len, base.target)
    if bad:
        raise InputError(f"not saved: (B={params.B}, S={params.S}, D={params.D}) breaks target {base.target} "
                         f"at seq_len={base.seq_len}: {'; '.join(bad)}")
    old = base.entry(layer, head)
    new = HeadCalibration(layer=layer, head=head, B=params.B, S=params.S, D=params.D, scale=float(scale),
                          kl_before=old.kl_before, kl_after=max(float(kl), 0.0))
    heads = tuple(new if (h.layer, h.head) == (layer, head) else h for h in base.heads)
    updated = dataclasses.replace(base, heads=heads, granularity="head",
                                  created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return updated.to_json(path)
