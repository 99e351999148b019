"""`hccs-lab emulate`: run a generated kernel in the bundled emulator; outputs + a JSON report."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ..errors import InputError, MissingError
from ..io import write_bytes


def add_arguments(p):
    p.add_argument("--kernel", required=True, type=Path, help="directory written by `hccs-lab kernel`")
    p.add_argument("--input", required=True, type=Path, help="int8 .npy of shape [rows, seq_len]")
    p.add_argument("--output", required=True, type=Path, help="where to write the outputs (.npy)")
    p.add_argument("--report", required=True, type=Path, help="where to write the JSON report")
    p.add_argument("--clock-ghz", type=float, default=1.25, help="clock for G elements/s (default 1.25)")


def load_input(path: Path, n: int) -> np.ndarray:
    if not path.exists():
        raise MissingError(f"input {path} does not exist")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise InputError(f"{path} is not a readable .npy array ({e})") from None
    if not isinstance(x, np.ndarray):
        raise InputError(f"{path} holds no single array")
    if x.dtype != np.int8:
        raise InputError(f"{path} has dtype {x.dtype}; the kernel takes int8 logits (quantize first)")
    if x.ndim != 2 or x.shape[1] != n:
        raise InputError(f"{path} has shape {x.shape}; this kernel takes [rows, {n}]")
    if x.shape[0] == 0:
        raise InputError(f"{path} has no rows")
    return x


def run(args) -> int:
    from ..aie import emulate, load_kernel_dir

    if not args.clock_ghz > 0:
        raise InputError(f"--clock-ghz must be positive, got {args.clock_ghz}")
    k = load_kernel_dir(args.kernel)
    x = load_input(args.input, k.n)
    y, rep = emulate(k, x, clock_ghz=args.clock_ghz)
    buf = io.BytesIO()
    np.save(buf, y)
    report = rep.as_dict()
    report.update({"rows": int(x.shape[0]), "input": str(args.input), "output": str(args.output),
                   "output_dtype": str(y.dtype), "params": k.params and {kk: k.params[kk] for kk in ("B", "S", "D")},
                   "total_cycles": round(rep.total_cycles(x.shape[0]), 1),
                   "total_cycles_note": "one call over all rows: whole row-loop trips plus pipeline fill/drain"})
    write_bytes(args.output, buf.getvalue())
    write_bytes(args.report, (json.dumps(report, indent=2) + "\n").encode())
    print(f"emulated {x.shape[0]} rows x {k.n}: {rep.cycles_per_row:.1f} cycles/row, "
          f"{rep.gelem_per_s:.2f} G elements/s at {rep.clock_ghz} GHz (emulator estimate); "
          f"wrote {args.output} and {args.report}")
    return 0
