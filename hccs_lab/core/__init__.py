"""The numpy/torch core of hccs_lab: HCCS's parameters, its integer reference, its real-valued reading.

`params` (HCCSParams, constraints, variant names), `reference` (hccs_int, the reciprocal,
hccs_deployed), `relaxed` (quantize_logits, choose_scale, hccs_float, softmax), `masks` (key masks
and input checks), `metrics` (KL, rank preservation), `histograms` (rows as int8-distance
histograms, shared by calibration and the playground). Nothing here loads a model or a file.
"""
from .masks import check_finite, row_mask
from .params import (DEFAULT_TARGET, FULL_SCALE, INT16_MAX, OUT_KINDS, RECIP_KINDS, TARGETS, U8_NUMER, VARIANTS,
                     HCCSParams, check_target, full_scale, max_base, split_variant, target_mask, target_violations,
                     valid_mask, valid_region)
from .reference import PADDINGS, floor_log2, hccs_deployed, hccs_int, reciprocal
from .relaxed import choose_scale, hccs_float, quantize_logits, softmax

__all__ = ["HCCSParams", "hccs_int", "hccs_deployed", "PADDINGS", "hccs_float", "softmax", "quantize_logits", "choose_scale", "valid_region",
           "valid_mask", "max_base", "reciprocal", "floor_log2", "split_variant", "full_scale", "VARIANTS",
           "FULL_SCALE", "INT16_MAX", "TARGETS", "DEFAULT_TARGET", "check_target", "target_mask",
           "target_violations", "U8_NUMER", "OUT_KINDS", "RECIP_KINDS", "check_finite", "row_mask"]
