"""Deployment through the authors' toolchain, aie4ml: export calibrated heads as an aie4ml
project (ONNX graph -> aie4ml's from_onnx(...).write()) and run that project's own generated
kernels on the host (g++ against hccs_lab's AIE API shim).

    from hccs_lab.export import export_aie4ml, emulate_aie4ml, select_heads
    manifest = export_aie4ml("proj/", select_heads("cal.json", "0:1,0:2", seq_len=128), 128, "u8-clb")
    y, info = emulate_aie4ml("proj/", x_int8, node="softmax_l0_h1")
"""
from .aie4ml_project import check_heads, export_aie4ml, select_heads
from .deploy_check import Deployment, deploy_and_check
from .hostbuild import emulate_aie4ml
from .project_files import read_manifest
from .rules import aie4ml_violations, layout_violation

__all__ = ["export_aie4ml", "deploy_and_check", "Deployment", "emulate_aie4ml", "select_heads", "check_heads", "read_manifest",
           "aie4ml_violations", "layout_violation"]
