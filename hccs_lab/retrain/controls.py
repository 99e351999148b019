"""Controls for an accuracy table: what a reader needs to tell whether HCCS or calibration matter at all.

* `uniform_probs()`: uniform attention over each row's real keys (HCCS with S = 0, padding left out
  whatever the target): how much the task needs attention at all;
* `default_tables(tables, seq_len, target)`: the uncalibrated default (B, S, D) at each head's own
  int8 scale, run through the same deployed kernel: what calibration buys;
* `int8_softmax_probs(tables)`: exact softmax of the same int8-grid logits HCCS sees (each head's
  scale, padding left out): the cost of quantizing the logits alone, without HCCS's shape.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..calibrate import default_params
from ..core.params import AIE4ML_MIN_FLOOR_SUM, HCCSParams, target_violations
from ..errors import InputError
from .fake_quant import fake_quantize_logits
from .substitute import HCCSTables

CONTROLS = ("uniform", "default_params", "int8_softmax")
CONTROL_NOTES = {
    "uniform": "uniform attention over each row's real keys (S = 0): does the task need attention at all?",
    "default_params": "the uncalibrated default (B, S, D) at each head's scale, same kernel and padding: "
                      "what calibration buys",
    "int8_softmax": "exact softmax of the int8-grid logits (each head's scale): the cost of quantization alone",
}


def uniform_probs():
    """Uniform attention over each row's valid keys."""

    def fn(layer, logits, keymask):
        m = torch.broadcast_to(keymask.to(torch.bool), logits.shape).to(logits.dtype)
        return m / m.sum(-1, keepdim=True).clamp_min(1.0)

    return fn


def int8_softmax_probs(tables: HCCSTables):
    """Exact softmax of the int8-grid logits (each head's scale) over the valid keys."""

    def fn(layer, logits, keymask):
        m = torch.broadcast_to(keymask.to(torch.bool), logits.shape)
        x = fake_quantize_logits(logits, tables.scale[layer].to(logits), m)
        p = torch.softmax(x.masked_fill(~m, float("-inf")), dim=-1)
        return torch.nan_to_num(p, nan=0.0)  # an all-masked row -> 0

    return fn


def default_for_target(seq_len: int, target: str) -> HCCSParams:
    """`calibrate.default_params(seq_len)` where the target accepts it, else the nearest set it accepts.

    The default is the ReLU-like ramp B = S*D; aie4ml refuses it (it needs n*(B - S*D) >= 256), so
    the clip D is lowered until B - S*D >= ceil(256 / n), keeping B and S.
    """
    p = default_params(seq_len)
    if not target_violations(p, seq_len, target):
        return p
    floor = math.ceil(AIE4ML_MIN_FLOOR_SUM / seq_len)
    D = (p.B - floor) // p.S if p.S else p.D
    q = HCCSParams(p.B, p.S, max(0, min(p.D, D)))
    bad = target_violations(q, seq_len, target)
    if bad:
        raise InputError(f"no default parameter set for seq_len={seq_len} under target {target}: " + "; ".join(bad))
    return q


def constant_tables(n_layers: int, n_heads: int, params: HCCSParams, scales) -> HCCSTables:
    """Tables with one parameter set everywhere and the given scales ([L, H] array-like, or one float)."""
    sc = np.broadcast_to(np.asarray(scales, dtype=np.float32), (n_layers, n_heads))
    col = lambda v: [torch.full((n_heads, 1, 1), float(v)) for _ in range(n_layers)]
    return HCCSTables(B=col(params.B), S=col(params.S), D=col(params.D),
                      scale=[torch.tensor(sc[l], dtype=torch.float32).view(n_heads, 1, 1) for l in range(n_layers)],
                      granularity="default")


def default_tables(tables: HCCSTables, seq_len: int, target: str) -> HCCSTables:
    """The default parameter set of `default_for_target` at the heads' own scales."""
    sc = np.array([[float(tables.scale[l][h]) for h in range(tables.n_heads)] for l in range(tables.n_layers)])
    return constant_tables(tables.n_layers, tables.n_heads, default_for_target(seq_len, target), sc)
