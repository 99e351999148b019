"""One quantization-aware retraining run: a copy of the float32 model with HCCS in its attention, trained."""
from __future__ import annotations

import copy

import torch

from ..models import load as load_model
from ..models.finetune import TrainSettings, train_classifier
from .fake_quant import fake_quantize_linears
from .substitute import HCCSTables, use_hccs


def qat_run(model, tokenizer, train, tables: HCCSTables, settings: TrainSettings, quantize_linears: bool = False,
            progress: bool = True, desc: str = "HCCS QAT"):
    """(retrained copy, training history, number of fake-quantized Linears); `model` itself is left as it is.

    The calibration tables stay fixed during training, as quantization bounds do (the paper's setup).
    """
    torch.manual_seed(settings.seed)
    m = copy.deepcopy(model)
    load_model((m, tokenizer))
    n_lin = fake_quantize_linears(m) if quantize_linears else 0
    use_hccs(m, tables)
    hist = train_classifier(m, tokenizer, train.texts, train.labels, settings, progress=progress, desc=desc)
    return m, hist, n_lin
