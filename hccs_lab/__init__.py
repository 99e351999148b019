"""hccs_lab: explore, calibrate, retrain and generate AI Engine kernels for HCCS.

HCCS (Head-Calibrated Clipped-Linear Softmax) replaces attention softmax by an integer
clipped-linear map with three calibrated integers per head. See DESIGN.md for the semantics.
"""
from importlib.metadata import PackageNotFoundError, version as _version

from .core import (
    HCCSParams,
    choose_scale,
    hccs_deployed,
    hccs_float,
    hccs_int,
    quantize_logits,
    softmax,
    valid_region,
)

try:
    __version__ = _version("hccs-lab")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = [
    "HCCSParams", "hccs_int", "hccs_deployed", "hccs_float", "softmax", "quantize_logits", "choose_scale",
    "valid_region", "__version__",
]
