"""HCCS in place of softmax inside real models, and quantization-aware retraining with it.

Modules: `substitute` (per-head HCCS tables put into the attention seam), `fake_quant` (int8 grid of
the logits, optional int8 Linears), `train` (one QAT run), `evaluate` (accuracy and attention
fidelity), `experiment` (the whole `hccs-lab qat` pipeline), `results` (its JSON file as tables).
"""
from .fake_quant import FakeQuantLinear, fake_quantize_linears, fake_quantize_logits
from .substitute import HCCSProbs, HCCSTables, use_hccs

__all__ = ["HCCSTables", "HCCSProbs", "use_hccs", "fake_quantize_logits", "FakeQuantLinear", "fake_quantize_linears"]
