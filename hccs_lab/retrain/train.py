"""One quantization-aware retraining run: a copy of the float32 model with HCCS in its attention, trained."""
from __future__ import annotations

import copy

import torch

from ..models import load as load_model
from ..models.finetune import TrainSettings, train_classifier
from .fake_quant import fake_quantize_linears
from .substitute import HCCSTables, use_hccs


def qat_run(model, tokenizer, train, tables: HCCSTables, settings: TrainSettings, quantize_linears: bool = False,
            progress: bool = True, desc: str = "HCCS QAT", variant: str = "u8-clb", padding: str = "exclude"):
    """(retrained copy, training history, number of fake-quantized Linears); `model` itself is left as it is.

    The forward pass is the reading `variant` (a kernel variant: its exact integer output under the
    kernel's `padding`, straight-through gradient; or "float", the real-valued reading). The
    calibration tables stay fixed during training, as quantization bounds do (the paper's setup).
    For a kernel without a mask (`padding="as_min"`) set `settings.pad_to` to its row length, so
    training sees the padding the kernel sees. The copy is returned with exact softmax restored.
    """
    torch.manual_seed(settings.seed)
    m = copy.deepcopy(model)
    load_model((m, tokenizer))
    n_lin = fake_quantize_linears(m) if quantize_linears else 0
    use_hccs(m, tables, variant=variant, padding=padding)
    try:
        hist = train_classifier(m, tokenizer, train.texts, train.labels, settings, progress=progress, desc=desc)
    finally:
        use_hccs(m, None)
    return m, hist, n_lin
