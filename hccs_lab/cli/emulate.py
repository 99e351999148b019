"""`hccs-lab emulate`: run a kernel directory on int8 rows; outputs + a JSON report with the cycle estimate.

A directory written by `hccs-lab kernel` runs in the bundled numpy emulator; an aie4ml project
written by `hccs-lab export aie4ml` runs through the project's own generated kernel sources, built
with g++ against the bundled AIE API shim (`"engine": "aie4ml-host"`).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ..errors import InputError, MissingError
from ..io import write_bytes


def add_arguments(p):
    p.add_argument("--kernel", required=True, type=Path,
                   help="directory written by `hccs-lab kernel`, or an aie4ml project from `hccs-lab export aie4ml`")
    p.add_argument("--node", default=None, help="aie4ml project with several heads: which one (node name or L:H)")
    p.add_argument("--input", required=True, type=Path, help="int8 .npy of shape [rows, seq_len]")
    p.add_argument("--output", required=True, type=Path, help="where to write the outputs (.npy)")
    p.add_argument("--report", required=True, type=Path, help="where to write the JSON report")
    p.add_argument("--clock-ghz", type=float, default=1.25, help="clock for G elements/s (default 1.25)")
    p.add_argument("--valid-len", type=Path, default=None,
                   help="int .npy, one valid length per row (kernels generated with `hccs-lab kernel --valid-len`)")


def load_npy(path: Path, what: str = "input") -> np.ndarray:
    """One array from a .npy file, with clear errors for a missing or unreadable file."""
    if not path.exists():
        raise MissingError(f"{what} {path} does not exist")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise InputError(f"{path} is not a readable .npy array ({e})") from None
    if not isinstance(x, np.ndarray):
        raise InputError(f"{path} holds no single array")
    return x


def load_input(path: Path, n: int) -> np.ndarray:
    x = load_npy(path)
    if x.dtype != np.int8:
        raise InputError(f"{path} has dtype {x.dtype}; the kernel takes int8 logits (quantize first)")
    if x.ndim != 2 or x.shape[1] != n:
        raise InputError(f"{path} has shape {x.shape}; this kernel takes [rows, {n}]")
    if x.shape[0] == 0:
        raise InputError(f"{path} has no rows")
    return x


def load_valid_len(path: Path, rows: int, n: int) -> np.ndarray:
    vl = load_npy(path, "valid lengths")
    if vl.dtype.kind not in "iu":
        raise InputError(f"{path} has dtype {vl.dtype}; valid lengths are integers (one per row)")
    if vl.shape != (rows,):
        raise InputError(f"{path} has shape {vl.shape}; the input has {rows} rows, so it takes [{rows}]")
    if vl.min() < 0 or vl.max() > n:
        raise InputError(f"{path} holds valid lengths in [{vl.min()}, {vl.max()}]; they must lie in [0, {n}]")
    return vl


def write_outputs(args, x: np.ndarray, y: np.ndarray, report: dict) -> None:
    """The outputs (.npy) and the JSON report, each written atomically."""
    buf = io.BytesIO()
    np.save(buf, y)
    report = {**report, "rows": int(x.shape[0]), "input": str(args.input), "output": str(args.output),
              "output_dtype": str(y.dtype)}
    write_bytes(args.output, buf.getvalue())
    write_bytes(args.report, (json.dumps(report, indent=2) + "\n").encode())


def run(args) -> int:
    from ..aie import emulate, load_kernel_dir
    from ..export.project_files import MANIFEST

    if not args.clock_ghz > 0:
        raise InputError(f"--clock-ghz must be positive, got {args.clock_ghz}")
    if (args.kernel / MANIFEST).is_file():
        if args.valid_len is not None:
            raise InputError("--valid-len is for hccs-lab kernels: aie4ml's kernels have no mask "
                             "(padded keys enter as -128 and take part)")
        return run_aie4ml(args)
    if args.node is not None:
        raise InputError(f"--node picks a head of an aie4ml project; {args.kernel} is an hccs-lab kernel directory")
    k = load_kernel_dir(args.kernel)
    x = load_input(args.input, k.n)
    vl = None
    if args.valid_len is not None:
        if not k.valid_len:
            raise InputError(f"{args.kernel} was generated without valid-length support: "
                             "regenerate it with `hccs-lab kernel ... --valid-len`")
        vl = load_valid_len(args.valid_len, x.shape[0], k.n)
    elif k.valid_len:
        raise InputError(f"{args.kernel} takes a valid length per row: pass --valid-len L.npy")
    y, rep = emulate(k, x, clock_ghz=args.clock_ghz, valid_len=vl)
    report = {"params": k.params and {kk: k.params[kk] for kk in ("B", "S", "D")},
              "total_cycles": round(rep.total_cycles(x.shape[0]), 1),
              "total_cycles_note": "one call over all rows: whole row-loop trips plus pipeline fill/drain"}
    if vl is not None:
        report["valid_len"] = str(args.valid_len)
    write_outputs(args, x, y, {**rep.as_dict(), **report})
    print(f"emulated {x.shape[0]} rows x {k.n}: {rep.cycles_per_row:.1f} cycles/row, "
          f"{rep.gelem_per_s:.2f} G elements/s at {rep.clock_ghz} GHz (emulator estimate); "
          f"wrote {args.output} and {args.report}")
    return 0


def run_aie4ml(args) -> int:
    """The aie4ml project's own kernel on the host, plus the cycle model of that kernel's structure."""
    from ..aie import aie4ml_kernel, estimate
    from ..core.params import HCCSParams
    from ..export import emulate_aie4ml, read_manifest

    n = int(read_manifest(args.kernel)["seq_len"])
    x = load_input(args.input, n)
    y, info = emulate_aie4ml(args.kernel, x, node=args.node)
    p = info["params"]
    # aie4ml targets AIE-ML parts (VEK280); the cycle model runs the IR of the project's own
    # kernel (linear softmax_i8 or tiled softmax_i8_tiled)
    rep = estimate(aie4ml_kernel(HCCSParams(p["B"], p["S"], p["D"]), info["variant"], "aie-ml", n, info["layout"]),
                   clock_ghz=args.clock_ghz)
    write_outputs(args, x, y, {**rep.as_dict(), **info, "engine": "aie4ml-host",
                               "cycle_model_kernel": f"aie4ml's {info['layout']} kernel as hccs-lab IR "
                                                     "(hccs_lab.aie.aie4ml; emulator estimate, not a hardware measurement)"})
    print(f"ran {x.shape[0]} rows x {n} through aie4ml's {info['layout']} kernel ({info['node']}, host build"
          f"{', cached' if info['cached'] else ''}); cycle model {rep.cycles_per_row:.1f} cycles/row "
          f"(emulator estimate); wrote {args.output} and {args.report}")
    return 0
