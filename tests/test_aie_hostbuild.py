"""The emitted C++ compiled with g++ against kernels/aie_api_shim.hpp == the emulator, bit for bit."""
import numpy as np
import pytest

from hccs_lab import HCCSParams, hccs_int
from hccs_lab.aie.emit import emit
from hccs_lab.aie.emulator import emulate_kernel
from hccs_lab.aie.hostbuild import NoCompiler, find_compiler, run_host
from hccs_lab.aie.kernels import HCCS_VARIANTS, hccs_kernel

from hccs_lab.aie.testrows import hard_rows

try:
    find_compiler()
    HAVE_CXX = True
except NoCompiler:
    HAVE_CXX = False
needs_cxx = pytest.mark.skipif(not HAVE_CXX, reason="no C++ compiler on this machine: host build check cannot run")

# every variant, two n, both archs, every schedule somewhere (11 compiles, cached by source hash)
CASES = [(v, 64, "aie-ml", "wide64s", HCCSParams(300, 4, 60)) for v in HCCS_VARIANTS] + \
        [(v, 128, "aie-mlv2", "paper", HCCSParams(200, 3, 40)) for v in HCCS_VARIANTS] + \
        [("i16-clb", 256, "aie-ml", "wide64", HCCSParams(100, 2, 45)),
         ("i16-clb", 32, "aie-mlv2", "wide64s", HCCSParams(500, 3, 90)),  # 32-lane shared tree
         ("u8-div", 32, "aie-ml", "wide64x1", HCCSParams(2, 1, 2))]  # 32-bit reciprocal path


@needs_cxx
@pytest.mark.parametrize("variant, n, arch, schedule, params", CASES)
def test_host_build_equals_emulator(variant, n, arch, schedule, params):
    k = hccs_kernel(params, variant, arch, n, schedule)
    x = hard_rows(n, 3001, seed=n)  # odd count: exercises the row-loop remainder
    host = run_host(emit(k), x)
    emu = emulate_kernel(k, x)
    assert host.dtype == emu.dtype
    assert np.array_equal(host, emu)
    out, recip = variant.split("-")
    assert np.array_equal(host, hccs_int(x, params, out=out, recip=recip))


VL_CASES = [("u8-clb", 128, "aie-ml", "wide64x1", HCCSParams(200, 3, 40)),
            ("i16-div", 64, "aie-ml", "wide64s", HCCSParams(300, 4, 60)),
            ("u8-div", 32, "aie-mlv2", "paper", HCCSParams(2, 1, 2)),
            ("i16-clb", 128, "aie-ml", "wide64", HCCSParams(100, 2, 45))]


@needs_cxx
@pytest.mark.parametrize("variant, n, arch, schedule, params", VL_CASES)
def test_host_build_with_valid_lengths(variant, n, arch, schedule, params):
    """Per-row valid lengths on the host: random lengths, 0 and n included, == emulator == hccs_int."""
    k = hccs_kernel(params, variant, arch, n, schedule, valid_len=True)
    x = hard_rows(n, 2001, seed=n + 1)
    vl = np.random.default_rng(n).integers(0, n + 1, size=len(x))
    vl[:3] = [0, n, 1]
    host = run_host(emit(k), x, valid_len=vl)
    emu = emulate_kernel(k, x, vl)
    out, recip = variant.split("-")
    assert np.array_equal(host, emu)
    assert np.array_equal(host, hccs_int(x, params, out=out, recip=recip, valid_len=vl))
    assert not host[0].any()


def test_emitted_names_are_only_validated_identifiers():
    from hccs_lab.aie.ir import Op, VType
    with pytest.raises(ValueError, match="not a valid kernel identifier"):
        Op("x; system(\"rm\")", "const", VType("int8", 32), imm=(1,))
    with pytest.raises(ValueError, match="not a valid kernel identifier"):
        Op("int", "const", VType("int8", 32), imm=(1,))
