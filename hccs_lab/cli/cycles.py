"""`hccs-lab cycles`: the cycle model's rules and, with --validate, every published point.

    hccs-lab cycles --validate --json points.json

prints each published figure next to the model's (the paper's 18 throughput figures, its 29 / 69
cycles per row, AMD's 8,083-cycle tutorial), the summary against issue 14's band, the rule set and
the assumptions, and writes `{"points": [{"name", "arch", "n", "kernel", "model", "published",
"unit", "ratio"}, ...], "summary", "rules", "assumptions"}`. Without --validate it prints the
rules, the assumptions and the modelled throughput table of one generation. Every model figure
is an emulator estimate, not a hardware measurement.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..io import write_bytes


def add_arguments(p):
    p.add_argument("--validate", action="store_true", help="compare the model with every published point")
    p.add_argument("--json", type=Path, default=None, help="with --validate: write the points as JSON here")
    p.add_argument("--clock-ghz", type=float, default=1.25, help="clock for G elements/s (default 1.25)")
    p.add_argument("--arch", choices=("aie-ml", "aie-mlv2"), default="aie-ml",
                   help="without --validate: the generation whose throughput table to print")


def print_rules() -> None:
    from ..aie.machine import ASSUMPTIONS, RULES

    print("rules (every number cited in hccs_lab/aie/machine.py):")
    for i, r in enumerate(RULES, 1):
        print(f"  R{i:<2} {r}")
    print("assumptions (no source states these):")
    for i, a in enumerate(ASSUMPTIONS, 1):
        print(f"  A{i:<2} {a}")


def print_points(points, summ) -> None:
    from ..aie.published import miss_note

    print(f"{'published point':<44} {'kernel':<22} {'model':>10} {'published':>10}  {'unit':<13} ratio")
    for p in points:
        flag = "" if p.ok else "  MISS"
        print(f"{p.name:<44} {p.kernel:<22} {p.model:10.3f} {p.published:10.3f}  {p.unit:<13} {p.ratio:5.2f}{flag}")
    print(f"\n{summ['within_band']}/{summ['points']} points within {summ['band'][0]:.2f}-{summ['band'][1]:.2f}; "
          f"mean |log ratio| {summ['mean_abs_log_ratio']:.3f} (x{summ['geomean_factor']:.3f}) against "
          f"ln 1.12 = {summ['limit_abs_log_ratio']:.3f}: {'MET' if summ['geomean_ok'] else 'MISSED'}")
    notes = {}
    for p in points:
        if not p.ok:
            notes.setdefault(miss_note(p), []).append(p.name)
    for note, names in notes.items():
        print(f"  miss ({', '.join(names)}): {note}")


def run(args) -> int:
    from ..viz.aie import print_throughput

    if not args.clock_ghz > 0:
        raise InputError(f"--clock-ghz must be positive, got {args.clock_ghz}")
    if args.json is not None and not args.validate:
        raise InputError("--json writes the validation points: give --validate too")
    if args.validate:
        from ..aie.machine import ASSUMPTIONS, RULES
        from ..aie.published import summary, validation_points

        points = validation_points(args.clock_ghz)
        summ = summary(points)
        print("== cycle model vs every published point (model figures are emulator estimates) ==")
        print_points(points, summ)
        print()
        print_rules()
        if args.json is not None:
            doc = {"points": [p.as_dict() for p in points], "summary": summ, "rules": list(RULES),
                   "assumptions": list(ASSUMPTIONS), "clock_ghz": args.clock_ghz,
                   "estimate": "emulator cycle-model estimates, not hardware measurements"}
            write_bytes(args.json, (json.dumps(doc, indent=2) + "\n").encode())
            print(f"\nwrote {args.json}")
        return 0
    from ..aie.published import throughput_table

    print_rules()
    print(f"\n== modelled throughput, {args.arch}, {args.clock_ghz} GHz, G elements/s (paper's figure in brackets) ==")
    print_throughput(throughput_table(args.arch, clock_ghz=args.clock_ghz))
    return 0
