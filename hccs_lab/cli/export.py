"""`hccs-lab export aie4ml`: calibrated heads as a project of the authors' toolchain, through aie4ml itself."""
from __future__ import annotations

from pathlib import Path

from ..core.params import VARIANTS
from ..errors import InputError

TARGETS = ("aie4ml",)


def add_arguments(p):
    p.add_argument("target", choices=TARGETS, help="the toolchain to export for (aie4ml: the paper authors')")
    p.add_argument("--out", required=True, type=Path, help="project directory to write (new, empty, or a previous export)")
    p.add_argument("--seq-len", required=True, type=int, help="keys per row n (aie4ml's linear layout needs n % 32 == 0)")
    p.add_argument("--variant", required=True, choices=VARIANTS)
    src = p.add_argument_group("heads (a calibration file, or B/S/D directly)")
    src.add_argument("--calibration", type=Path, help="calibration JSON written by `hccs-lab calibrate`")
    src.add_argument("--heads", default="all", help="'all' or L:H,L:H,... (with --calibration; default all)")
    src.add_argument("--B", type=int, dest="B", help="base")
    src.add_argument("--S", type=int, dest="S", help="slope")
    src.add_argument("--D", type=int, dest="D", help="clip")
    p.add_argument("--layout", choices=("linear", "tiled"), default="linear",
                   help="aie4ml's whole-row kernel softmax_i8 (linear, default) or softmax_i8_tiled")
    p.add_argument("--rows", type=int, default=None, help="query rows per graph input (default: seq-len)")
    p.add_argument("--inputs", type=Path, default=None,
                   help="int8 .npy [rows, seq_len] (or [heads, rows, seq_len]) written as the simulator's inputs")


def heads_from_args(args) -> list[dict]:
    direct = [args.B, args.S, args.D]
    if args.calibration is not None:
        if any(v is not None for v in direct):
            raise InputError("give either --calibration (with --heads) or --B/--S/--D, not both")
        from ..export import select_heads

        return select_heads(args.calibration, args.heads, seq_len=args.seq_len)
    if any(v is None for v in direct):
        raise InputError("give --calibration FILE [--heads L:H,...], or all of --B, --S and --D")
    if args.heads != "all":
        raise InputError("--heads picks heads of a --calibration file; with --B/--S/--D there is one head")
    return [{"layer": 0, "head": 0, "B": args.B, "S": args.S, "D": args.D, "scale": None}]


def run(args) -> int:
    from ..export import export_aie4ml
    from .emulate import load_npy

    heads = heads_from_args(args)
    inputs = load_npy(args.inputs, "--inputs") if args.inputs is not None else None
    m = export_aie4ml(args.out, heads, args.seq_len, args.variant, layout=args.layout, rows=args.rows, inputs=inputs)
    nodes = ", ".join(h["node"] for h in m["heads"][:6]) + (", ..." if len(m["heads"]) > 6 else "")
    print(f"wrote aie4ml {m['aie4ml_version']} project {args.out}/ ({len(m['heads'])} head(s): {nodes}; "
          f"{m['variant']}, {m['layout']}, seq_len {m['seq_len']}) and {args.out}/hccs_export.json")
    return 0
