"""HCCS in place of softmax inside real models, and quantization-aware retraining with it.

Modules: `substitute` (per-head HCCS tables put into the attention seam: the deployed kernel's exact
output, or the real-valued reading), `fake_quant` (int8 grid of the logits, optional int8 Linears),
`train` (one QAT run), `evaluate` (accuracy and attention fidelity), `controls` (uniform attention,
default parameters, int8 softmax), `stats` (paired 95% intervals), `calibration_methods` (exact grid,
gradient, coarse grid), `measure` (the parts of one run), `experiment` (the whole `hccs-lab qat`
pipeline), `results` (its JSON file as tables), `perplexity` (causal LMs).
"""
from .fake_quant import FakeQuantLinear, fake_quantize_linears, fake_quantize_logits
from .substitute import READINGS, DeployedProbs, HCCSProbs, HCCSTables, hccs_probs, padding_for, use_hccs

__all__ = ["HCCSTables", "HCCSProbs", "DeployedProbs", "hccs_probs", "padding_for", "READINGS", "use_hccs",
           "fake_quantize_logits", "FakeQuantLinear", "fake_quantize_linears"]
