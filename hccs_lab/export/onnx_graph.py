"""The ONNX model an aie4ml export starts from: one quantized Softmax chain per head.

Per head (layer L, head H) the graph holds, as aie4ml's ONNX frontend reads it:

    x_lL_hH  int8 [rows, n]  (graph input: the head's int8 attention logits)
      -> DequantizeLinear    scale 2^-f, zero point 0   (f from the head's logit scale, see below)
      -> Softmax(axis=-1)    named softmax_lL_hH: the node aie4ml's LayerDirectives address
      -> QuantizeLinear      uint8 scale 2^-8 (u8 variants) or int16 scale 2^-15 (i16 variants)
      -> DequantizeLinear
    p_lL_hH  float [rows, n] (graph output)

aie4ml reads a Quantize/Dequantize pair only as a power-of-two fixed-point type, and its HCCS
kernel takes no runtime input scale (the temperature lives in B/S/D). The input scale therefore
only labels the int8 logits' fixed-point position; we use the power of two nearest to the head's
calibrated logit scale so the graph reads about right, and the exact scale goes to the manifest.
The output type is what selects aie4ml's u8 (Q8) or i16 (Q15) kernel output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError

OPSET = 21  # aie4ml 0.2.1 reads opset 21 / IR version 10 models
IR_VERSION = 10
OUTPUT_QUANT = {"u8": ("uint8", 8), "i16": ("int16", 15)}  # ONNX element type, fractional bits
INPUT_FRAC_RANGE = (-7, 15)  # a fixed-point position an int8 logit can sensibly have


@dataclass(frozen=True)
class HeadNames:
    """The ONNX names of one head's chain; `softmax` is the node the aie4ml directives name."""

    layer: int
    head: int

    @property
    def tag(self) -> str:
        return f"l{self.layer}_h{self.head}"

    @property
    def softmax(self) -> str:
        return f"softmax_{self.tag}"

    @property
    def input(self) -> str:
        return f"x_{self.tag}"

    @property
    def output(self) -> str:
        return f"p_{self.tag}"


def input_frac(scale: float | None) -> int:
    """Fractional bits of the int8 input: -round(log2(scale)), clipped to a sane range; 4 without a scale."""
    if scale is None:
        return 4
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise InputError(f"a head's logit scale must be a positive finite number, got {scale!r}")
    lo, hi = INPUT_FRAC_RANGE
    return int(min(hi, max(lo, -round(math.log2(scale)))))


def build_model(heads: list[dict], rows: int, n: int, out: str):
    """The onnx.ModelProto for `heads` (dicts with "layer", "head", optional "scale") and rows [rows, n].

    `out` is "u8" or "i16". The model passes onnx.checker.
    """
    import onnx
    from onnx import TensorProto, helper

    if out not in OUTPUT_QUANT:
        raise InputError(f"output kind must be one of {', '.join(OUTPUT_QUANT)}, got {out!r}")
    q_type, q_frac = OUTPUT_QUANT[out]
    q_elem = {"uint8": TensorProto.UINT8, "int16": TensorProto.INT16}[q_type]
    inputs, outputs, nodes, inits = [], [], [], []
    for h in heads:
        nm = HeadNames(int(h["layer"]), int(h["head"]))
        t = nm.tag
        inputs.append(helper.make_tensor_value_info(nm.input, TensorProto.INT8, [rows, n]))
        outputs.append(helper.make_tensor_value_info(nm.output, TensorProto.FLOAT, [rows, n]))
        inits += [
            helper.make_tensor(f"x_scale_{t}", TensorProto.FLOAT, [], [2.0 ** -input_frac(h.get("scale"))]),
            helper.make_tensor(f"x_zero_{t}", TensorProto.INT8, [], [0]),
            helper.make_tensor(f"p_scale_{t}", TensorProto.FLOAT, [], [2.0 ** -q_frac]),
            helper.make_tensor(f"p_zero_{t}", q_elem, [], [0]),
        ]
        nodes += [
            helper.make_node("DequantizeLinear", [nm.input, f"x_scale_{t}", f"x_zero_{t}"], [f"logits_{t}"],
                             name=f"dequant_in_{t}"),
            helper.make_node("Softmax", [f"logits_{t}"], [f"probs_{t}"], axis=-1, name=nm.softmax),
            helper.make_node("QuantizeLinear", [f"probs_{t}", f"p_scale_{t}", f"p_zero_{t}"], [f"probs_q_{t}"],
                             name=f"quant_out_{t}"),
            helper.make_node("DequantizeLinear", [f"probs_q_{t}", f"p_scale_{t}", f"p_zero_{t}"], [nm.output],
                             name=f"dequant_out_{t}"),
        ]
    graph = helper.make_graph(nodes, "hccs_heads", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="hccs-lab")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model
