"""The `hccs-lab` command line: a router and one module per command.

A command module exposes `add_arguments(parser)` and `run(args) -> int`; this file only routes, and
imports a module when its command runs, so `hccs-lab --help` stays fast (no torch import). Errors
the package raises on purpose (`hccs_lab.errors.HCCSLabError`) print as one line with exit status 2;
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "calibrate": ("hccs_lab.cli.calibrate", "calibrate every head of a model; writes a calibration JSON"),
    "kernel": ("hccs_lab.cli.kernel", "generate an int8 HCCS AI Engine kernel (C++ + kernel.json)"),
    "cycles": ("hccs_lab.cli.cycles", "the cycle model's rules; --validate: every published point, model vs paper"),
    "emulate": ("hccs_lab.cli.emulate", "run a generated kernel in the bundled emulator"),
    "export": ("hccs_lab.cli.export", "write an aie4ml project for calibrated heads (the authors' toolchain)"),
    "qat": ("hccs_lab.cli.qat", "float32 fine-tune, calibrate, HCCS direct and after QAT; writes results JSON"),
    "report": ("hccs_lab.cli.report", "write the self-contained design-review HTML for a model"),
    "perplexity": ("hccs_lab.cli.perplexity", "perplexity of a causal LM, float32 vs HCCS by granularity and variant, with controls"),
}


def build_parser(argv=()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hccs-lab", description="HCCS softmax-surrogate toolkit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # argument definitions need the module; import lazily only for the command being parsed
        if name in argv:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv=None) -> int:
    from ..errors import HCCSLabError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except HCCSLabError as e:
        print(f"hccs-lab {args.command}: error: {e}", file=sys.stderr)
        return 2

