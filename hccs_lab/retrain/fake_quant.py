"""Fake quantization with torch's own ops: the int8 grid of each head's logits, and optional int8 Linears.

Both give the straight-through estimator: gradient 1 inside the grid's range, 0 where the value
saturates (keys more than 255 steps below the row max, which any clip D <= 127 flattens anyway).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fake_quantize_logits(logits: torch.Tensor, scale: torch.Tensor, keymask: torch.Tensor) -> torch.Tensor:
    """Logits [B, H, Lq, Lk] -> their int8-grid values (row max at 127 steps), straight-through gradient.

    Equals `quantize_logits(logits, scale, mask) * scale` (round half to even, saturate at -128),
    masked keys set to 0 (they are ignored downstream). `scale` is [H, 1, 1].
    """
    m = torch.broadcast_to(keymask, logits.shape)
    x = logits.masked_fill(~m, 0.0)
    mx = x.masked_fill(~m, float("-inf")).amax(-1, keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))  # all-masked rows
    h_scale = scale.reshape(-1)
    shifted = x - mx + 127.0 * scale
    q = torch.fake_quantize_per_channel_affine(shifted, h_scale, torch.zeros_like(h_scale, dtype=torch.int32),
                                               axis=1, quant_min=-128, quant_max=127)
    return q.masked_fill(~m, 0.0)


class FakeQuantLinear(nn.Module):
    """A Linear whose input (per-tensor uint8, moving-average range) and weight (per-channel int8) are fake-quantized."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        from torch.ao.quantization.fake_quantize import (default_fused_act_fake_quant,
                                                         default_fused_per_channel_wt_fake_quant)

        self.linear = linear
        self.input_fake_quant = default_fused_act_fake_quant()
        self.weight_fake_quant = default_fused_per_channel_wt_fake_quant()

    def forward(self, x):
        return F.linear(self.input_fake_quant(x), self.weight_fake_quant(self.linear.weight), self.linear.bias)


def fake_quantize_linears(model: nn.Module, skip: tuple[str, ...] = ("classifier",)) -> int:
    """Replace every nn.Linear (except those under a name in `skip`) by a FakeQuantLinear; returns the count."""
    targets = [(name, mod) for name, mod in model.named_modules()
               if isinstance(mod, nn.Linear) and not any(name == s or name.startswith(s + ".") for s in skip)]
    for name, mod in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, FakeQuantLinear(mod))
    return len(targets)
