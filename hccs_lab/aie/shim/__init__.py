"""Package data: a host implementation of the AIE API subset hccs-lab's and aie4ml's kernels use.

`aie_api_shim.hpp` is not AMD's header; it follows the integer semantics of `hccs_lab.aie.emulator`
(lanes wrap in their type; rounding and saturation as the kernel sets them). Located at run time
through `importlib.resources`, so it ships inside the wheel.
"""
