"""The bundled `tiny` model: a BERT-tiny-shaped sentiment classifier trained here, offline.

Shape of Google's compact BERT L-2/H-128/A-2 (the paper's BERT-tiny): 2 layers, 2 heads, hidden 128,
FFN 512. There is no BERT-tiny checkpoint offline, so it is trained from scratch on the Rotten
Tomatoes train split, with one trick that buys most of the accuracy: the word embeddings start from a
PCA (384 -> 128) of all-MiniLM-L6-v2's, so the model begins with useful token geometry (offline.md:
about 79% test accuracy after 2 epochs instead of 65%). The tokenizer is MiniLM's, unchanged.

Weights live under `cache_dir()/tiny/` as `model.safetensors` + `config.json` (never pickle) and are
written atomically, so a killed run never leaves a half-written checkpoint behind.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..config import cache_dir, offline
from ..errors import InputError, MissingError
from ..io import write_bytes, write_text
from .finetune import TrainSettings, train_classifier
from .registry import minilm_path

TINY_DIR_NAME = "tiny"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAIN_INFO_FILE = "train_info.json"


@dataclass(frozen=True)
class TinyShape:
    """The architecture; BERT-tiny's shape with MiniLM's vocabulary."""

    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    hidden_size: int = 128
    intermediate_size: int = 512
    vocab_size: int = 30522
    max_position_embeddings: int = 128  # trained at 64 tokens (the paper's SST-2 length); 128 leaves room
    num_labels: int = 2
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1


# How the cached tiny model is trained (offline.md, section 4: about 79% after 2 epochs); lazy Adam
# on the 30522 x 128 embedding, which is most of the step time otherwise.
TINY_TRAINING = TrainSettings(epochs=2.0, lr=1e-3, sparse_embeddings=True)


def load_tokenizer():
    offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()))


def pca_embeddings(dim: int = 128) -> torch.Tensor:
    """MiniLM's 30522 x 384 word embeddings projected on their top `dim` principal axes.

    Scaled to std 0.5 so they sit where LayerNorm-ed BERT embeddings of a fresh model would; the
    PCA is deterministic up to the sign of each axis, which the random generator fixes.
    """
    from safetensors.torch import load_file

    weights = load_file(str(minilm_path() / "model.safetensors"))
    key = next((k for k in weights if k.endswith("embeddings.word_embeddings.weight")), None)
    if key is None:
        raise MissingError(f"no word embeddings in {minilm_path() / 'model.safetensors'}")
    E = weights[key].float()
    E = E - E.mean(0)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(0)  # pca_lowrank is randomised; keep the projection reproducible
    _, _, V = torch.pca_lowrank(E, q=dim, center=False)
    torch.random.set_rng_state(gen_state)
    P = E @ V
    return P / P.std() * 0.5


def build_tiny(shape: TinyShape = TinyShape(), seed: int = 0, pca_init: bool = True):
    """A fresh (untrained) tiny `BertForSequenceClassification` with PCA-initialised word embeddings."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(**asdict(shape), attn_implementation="eager")
    model = BertForSequenceClassification(config)
    if pca_init:
        with torch.no_grad():
            model.get_input_embeddings().weight.copy_(pca_embeddings(shape.hidden_size))
    return model


def tiny_dir(root: Path | None = None) -> Path:
    return Path(root) if root is not None else cache_dir() / TINY_DIR_NAME


def save_checkpoint(model, directory: Path, info: dict | None = None) -> Path:
    """Any transformers model as config.json + model.safetensors (+ train_info.json), each written atomically."""
    from safetensors.torch import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # contiguous, un-shared copies: safetensors refuses tensors that share storage (tied weights)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    write_text(directory / CONFIG_FILE, model.config.to_json_string())
    if info is not None:
        write_text(directory / TRAIN_INFO_FILE, json.dumps(info, indent=2))
    # the weights last: their presence is what marks a checkpoint as complete
    write_bytes(directory / WEIGHTS_FILE, save(state, metadata={"format": "pt"}))
    return directory


def load_saved_tiny(directory: Path):
    """The model saved by `save_tiny` in `directory`, in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import BertConfig, BertForSequenceClassification

    directory = Path(directory)
    weights, cfg = directory / WEIGHTS_FILE, directory / CONFIG_FILE
    if not weights.is_file() or not cfg.is_file():
        raise MissingError(f"no tiny checkpoint in {directory} (need {WEIGHTS_FILE} and {CONFIG_FILE})")
    try:
        config = BertConfig.from_json_file(str(cfg))
        state = load_file(str(weights))
    except (SafetensorError, json.JSONDecodeError, OSError) as e:
        raise InputError(f"tiny checkpoint in {directory} is unreadable ({e}); delete it to retrain") from None
    config._attn_implementation = "eager"
    model = BertForSequenceClassification(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise InputError(f"tiny checkpoint in {directory} does not match the model: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}; delete it to retrain")
    return model.eval()


def train_tiny(directory: Path | None = None, training: TrainSettings = TINY_TRAINING, steps: int | None = None,
               n_train: int | None = None, progress: bool = True, shape: TinyShape = TinyShape()):
    """Train the tiny model on the RT train split and save it under `directory`; returns (model, info).

    `steps` caps the optimizer steps and `n_train` the number of training sentences (tests use a
    few steps on a small subset so they never pay for the full training).
    """
    from ..data.sentiment import load_split

    tokenizer = load_tokenizer()
    split = load_split("train", seed=training.seed)
    texts, labels = split.texts, split.labels
    if n_train is not None:
        texts, labels = texts[:n_train], labels[:n_train]
    model = build_tiny(shape, seed=training.seed)
    settings = replace(training, max_steps=steps)
    history = train_classifier(model, tokenizer, texts, labels, settings, progress=progress, desc="train tiny fp32")
    info = {"training": asdict(training), "steps_cap": steps, "n_train": len(texts), "shape": asdict(shape),
            "history": history}
    save_checkpoint(model, tiny_dir(directory), info)
    return model.eval(), info


def load_tiny(directory: Path | None = None, progress: bool = True):
    """(model, tokenizer): the cached tiny model, trained and cached first if there is none yet."""
    d = tiny_dir(directory)
    if (d / WEIGHTS_FILE).is_file():
        model = load_saved_tiny(d)
    else:
        model, _ = train_tiny(d, progress=progress)
    return model, load_tokenizer()

