"""Models hccs_lab can look inside: bundled names, local Hugging Face folders, or your own pair.

    from hccs_lab.models import load
    loaded = load("minilm-l6")        # offline, hccs_lab attention installed, eval mode

Modules: `registry` (names and `load`), `attention` (the seam where logits are observed and softmax
replaced), `tiny` (the locally trained BERT-tiny-shaped model), `finetune` (the classifier training
loop the tiny model and retraining share).
"""
from .registry import KNOWN_MODELS, LoadedModel, load, minilm_path, wrap

__all__ = ["load", "LoadedModel", "KNOWN_MODELS", "minilm_path", "wrap"]
