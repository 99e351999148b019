"""`hccs-lab calibrate`: capture a model's attention logits on calibration texts, calibrate every head, write JSON."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..calibrate.calibration import GRANULARITIES, METHODS
from ..core.params import DEFAULT_TARGET, TARGETS
from ..errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="minilm-l6", help="model name or path (default: minilm-l6)")
    parser.add_argument("--samples", type=int, default=64, help="calibration texts: RT train sentences, or Wikipedia windows of seq-len tokens for a decoder (default: 64)")
    parser.add_argument("--seq-len", type=int, default=128, help="row length n the kernel will run at (default: 128)")
    parser.add_argument("--granularity", choices=GRANULARITIES, default="head",
                        help="one parameter set per head, per layer, or one for the model (default: head)")
    parser.add_argument("--method", choices=METHODS, default="grid",
                        help="exact integer grid search, or torch relaxation + integer polish (default: grid)")
    parser.add_argument("--target", choices=TARGETS, default=DEFAULT_TARGET,
                        help="deployment target whose rules every head must satisfy: aie4ml (the authors' toolchain, "
                             "adds n*(B - S*D) >= 256) or hccs-lab (our kernels) (default: aie4ml)")
    parser.add_argument("--seed", type=int, default=0, help="seed for choosing the calibration texts (default: 0)")
    parser.add_argument("--out", required=True, help="calibration JSON to write")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    from .. import capture, data, models
    from ..calibrate import calibrate, fingerprint_texts

    if args.samples < 1:
        raise InputError(f"--samples must be >= 1, got {args.samples}")
    if not 1 <= args.seq_len <= 32767:
        raise InputError(f"--seq-len must be in [1, 32767], got {args.seq_len}")
    out = Path(args.out)
    if out.exists() and out.is_dir():
        raise InputError(f"--out {out} is a directory; give a file name such as calibration.json")
    progress = not args.quiet
    t0 = time.perf_counter()
    loaded = models.load(args.model)
    if loaded.causal:  # a decoder calibrates on running text: Wikipedia windows of seq_len tokens
        from ..data import text

        texts = text.calibration_texts(loaded.tokenizer, args.samples, args.seq_len)
    else:
        texts = data.calibration_texts(args.samples, seed=args.seed)
    bank = capture.capture_logits(loaded, texts, max_len=args.seq_len, progress=progress, seed=args.seed)
    t_capture = time.perf_counter() - t0
    cal = calibrate(bank, args.seq_len, granularity=args.granularity, method=args.method,
                    samples=args.samples, progress=progress, data_fingerprint=fingerprint_texts(texts),
                    target=args.target)
    cal.to_json(out)
    print(f"{cal.model}: {cal.n_layers} layers x {cal.n_heads} heads, {args.samples} texts, seq_len {cal.seq_len}, "
          f"{args.granularity}/{args.method}, target {args.target}; capture {t_capture:.1f} s, calibration {cal.seconds:.1f} s")
    print(cal.format_table())
    print(f"wrote {out}")
    return 0
