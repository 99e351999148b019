"""`hccs-lab kernel`: generate one head's int8 HCCS AI Engine kernel (C++ sources + kernel.json)."""
from __future__ import annotations

from pathlib import Path

from ..aie.kernels import ARCHS, HCCS_SCHEDULES
from ..core.params import VARIANTS, HCCSParams
from ..errors import InputError


def add_arguments(p):
    src = p.add_argument_group("head parameters (a calibration file, or B/S/D directly)")
    src.add_argument("--calibration", type=Path, help="calibration JSON written by `hccs-lab calibrate`")
    src.add_argument("--layer", type=int, help="layer of the head (with --calibration)")
    src.add_argument("--head", type=int, help="head index (with --calibration)")
    src.add_argument("--B", type=int, dest="B", help="base")
    src.add_argument("--S", type=int, dest="S", help="slope")
    src.add_argument("--D", type=int, dest="D", help="clip")
    p.add_argument("--variant", required=True, choices=VARIANTS)
    p.add_argument("--arch", required=True, choices=ARCHS)
    p.add_argument("--seq-len", required=True, type=int, help="row length n (a multiple of 32)")
    p.add_argument("--schedule", choices=HCCS_SCHEDULES, default=None,
                   help="default: the fastest bit-exact schedule; 'paper' is the authors' structure")
    p.add_argument("--valid-len", action="store_true",
                   help="the kernel takes a per-row valid length (keys past it get 0; `emulate --valid-len`)")
    p.add_argument("--out", required=True, type=Path, help="output directory")


def params_from_args(args) -> HCCSParams:
    direct = [args.B, args.S, args.D]
    if args.calibration is not None:
        if any(v is not None for v in direct):
            raise InputError("give either --calibration (with --layer/--head) or --B/--S/--D, not both")
        if args.layer is None or args.head is None:
            raise InputError("--calibration needs --layer and --head")
        from ..calibrate import Calibration

        cal = Calibration.from_json(args.calibration)
        if cal.seq_len != args.seq_len:
            print(f"note: {args.calibration} was calibrated at seq_len {cal.seq_len}; "
                  f"generating for --seq-len {args.seq_len} (parameters are re-checked for it)")
        try:
            return cal.params(args.layer, args.head)
        except (KeyError, IndexError) as e:
            raise InputError(f"{args.calibration} has no head layer={args.layer} head={args.head} ({e})") from None
    if any(v is None for v in direct):
        raise InputError("give --calibration FILE --layer L --head H, or all of --B, --S and --D")
    return HCCSParams(args.B, args.S, args.D)


def run(args) -> int:
    from ..aie import generate

    params = params_from_args(args)
    gen = generate(params, args.variant, args.arch, args.seq_len, args.schedule, out_dir=args.out,
                   valid_len=args.valid_len)
    m = gen.manifest
    print(f"wrote {args.out}/: {m['files']['source']}, hccs_params.h, kernel.json "
          f"({m['variant']}, {m['arch']}, n={m['seq_len']}, schedule {m['schedule']}, "
          f"B={params.B} S={params.S} D={params.D}{', per-row valid length' if args.valid_len else ''})")
    return 0
