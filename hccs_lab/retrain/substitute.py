"""HCCS in place of softmax inside real models, and quantization-aware retraining with it.

How HCCS gets in: `hccs_lab.models.attention.set_probs(model, fn)` makes the registered "hccs_lab"
attention function call `fn(layer, logits, keymask)` instead of softmax in every layer, for any model
hccs_lab can capture (BERT family, GPT-2, the tiny model). `HCCSProbs` is that fn: per layer it holds
the calibrated (B, S, D) and int8 scale of each head as tensors `[H, 1, 1]`, fixed before training
(the paper holds the calibration fixed like quantization bounds during QAT).

Two readings of HCCS go in there:

* `DeployedProbs(tables, variant, padding)`, what QAT and every accuracy use: the exact integer
  output of the deployed kernel (`hccs_lab.core.hccs_deployed`: int8 logits on each head's scale,
  `hccs_int` of the variant, divided by its full scale), with the straight-through gradient of the
  real-valued reading. `padding` is the kernel's: "exclude" (ours, a valid length per row: masked
  keys get 0) or "as_min" (aie4ml, no mask: padded keys enter as -128 and take their share);
  `padding_for(target)` says which a deployment target has.
* `HCCSProbs(tables)`, the real-valued reading (`--variant float`): the logits are shifted so the row
  max lands on 127 steps (as `quantize_logits` does: only distances to the max matter to HCCS),
  fake-quantized to the int8 grid, then mapped by `hccs_float`, which on int8-grid input equals the
  integer i16+div kernel up to the floor of its reciprocal. Masked keys are exactly 0.

Fake quantization library: torch's own (`torch.fake_quantize_per_channel_affine` for the logits,
one channel per head; `torch.ao.quantization` fused FakeQuantize modules with moving-average
observers for the optional int8 Linear layers). Why not Brevitas: it does resolve against the
pinned torch 2.13 (pip would add brevitas 0.13.4, dependencies, unfoldNd and a setuptools pin), but
it is one more heavy dependency with a dependency-injection quantizer layer, while what HCCS needs
(one int8 grid per head with a fixed scale and a straight-through gradient) is a single call of the
fake-quant op that ships with, and is tested together with, the torch we pin already. Both ops give
the straight-through estimator: gradient 1 inside the grid's range, 0 where the value saturates
(keys more than 255 steps below the row max, which any clip D <= 127 flattens anyway).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.params import VARIANTS, check_target
from ..core.reference import PADDINGS, hccs_deployed
from ..core.relaxed import hccs_float
from ..errors import InputError
from ..models.attention import set_probs
from .fake_quant import fake_quantize_logits


@dataclass
class HCCSTables:
    """Per-layer tensors [H, 1, 1] of B, S, D and scale, built from a Calibration."""

    B: list
    S: list
    D: list
    scale: list
    granularity: str = "head"

    @property
    def n_layers(self) -> int:
        return len(self.B)

    @property
    def n_heads(self) -> int:
        return int(self.B[0].shape[0])

    @classmethod
    def from_calibration(cls, calibration, n_layers: int, n_heads: int) -> "HCCSTables":
        cols = {k: [] for k in ("B", "S", "D", "scale")}
        for layer in range(n_layers):
            per = {k: [] for k in cols}
            for head in range(n_heads):
                p = calibration.params(layer, head)
                per["B"].append(p.B)
                per["S"].append(p.S)
                per["D"].append(p.D)
                per["scale"].append(float(calibration.scale(layer, head)))
            for k in cols:
                cols[k].append(torch.tensor(per[k], dtype=torch.float32).view(n_heads, 1, 1))
        return cls(**cols, granularity=getattr(calibration, "granularity", "head"))

    def as_rows(self) -> list[dict]:
        return [{"layer": l, "head": h, "B": int(self.B[l][h]), "S": int(self.S[l][h]), "D": int(self.D[l][h]),
                 "scale": float(self.scale[l][h])} for l in range(self.n_layers) for h in range(self.n_heads)]


class HCCSProbs:
    """`fn(layer, logits, keymask) -> probs` for `hccs_lab.attention.set_probs`: int8 logits, then HCCS."""

    def __init__(self, tables: HCCSTables, quantize: bool = True):
        self.tables = tables
        self.quantize = quantize

    def params(self, layer: int, like: torch.Tensor):
        t = self.tables
        return tuple(x[layer].to(device=like.device, dtype=like.dtype) for x in (t.B, t.S, t.D, t.scale))

    def __call__(self, layer: int, logits: torch.Tensor, keymask: torch.Tensor) -> torch.Tensor:
        B, S, D, scale = self.params(layer, logits)
        if logits.shape[1] != B.shape[0]:
            raise InputError(f"layer {layer} has {logits.shape[1]} heads but the calibration has {B.shape[0]}")
        m = torch.broadcast_to(keymask.to(torch.bool), logits.shape)
        x = fake_quantize_logits(logits, scale, m) if self.quantize else logits.masked_fill(~m, 0.0)
        return hccs_float(x, (B, S, D), scale, mask=m)


FLOAT = "float"  # the real-valued reading, next to the four integer variants
READINGS = (FLOAT,) + VARIANTS


def padding_for(target: str) -> str:
    """The padding rule of a deployment target: aie4ml's kernels have no mask, ours take a valid length."""
    return "as_min" if check_target(target) == "aie4ml" else "exclude"


class DeployedProbs:
    """`fn(layer, logits, keymask)`: the deployed kernel's exact output in every head (see the module docstring)."""

    def __init__(self, tables: HCCSTables, variant: str = "u8-clb", padding: str = "exclude"):
        if variant not in VARIANTS:
            raise InputError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        if padding not in PADDINGS:
            raise InputError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        self.tables, self.variant, self.padding = tables, variant, padding

    def __call__(self, layer: int, logits: torch.Tensor, keymask: torch.Tensor) -> torch.Tensor:
        t = self.tables
        if logits.shape[1] != t.n_heads:
            raise InputError(f"layer {layer} has {logits.shape[1]} heads but the calibration has {t.n_heads}")
        B, S, D, scale = (x[layer].to(device=logits.device, dtype=logits.dtype) for x in (t.B, t.S, t.D, t.scale))
        # the seam's mask as it comes ([N, 1, 1, Lk] or [N, 1, Lq, Lk]): hccs_deployed broadcasts it over the
        # heads without per-head copies, which a mask broadcast to the logits' shape would force
        return hccs_deployed(logits, (B, S, D), scale, self.variant, mask=keymask.to(torch.bool), padding=self.padding)


def hccs_probs(tables: HCCSTables, variant: str = FLOAT, padding: str = "exclude", quantize: bool = True):
    """The probability function of one reading: `HCCSProbs` for "float", else `DeployedProbs`."""
    if variant == FLOAT:
        return HCCSProbs(tables, quantize=quantize)
    return DeployedProbs(tables, variant, padding)


def use_hccs(model, tables: HCCSTables | None, quantize: bool = True, variant: str = FLOAT,
             padding: str = "exclude"):
    """Put HCCS (or, with None, exact softmax again) in every attention layer of a hccs_lab-installed model.

    `variant` "float" is the real-valued reading (`quantize`: on the int8 grid); one of the four
    integer variants puts the deployed kernel's exact output there, with the kernel's `padding`.
    """
    set_probs(model, None if tables is None else hccs_probs(tables, variant, padding, quantize))
    return model
