"""`hccs-lab report`: the self-contained design-review HTML for a model."""
from __future__ import annotations

import time


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="minilm-l6", help="model name (minilm-l6, tiny) or a local HF folder")
    parser.add_argument("--out", default="review.html", help="output HTML file (written atomically)")
    parser.add_argument("--qat-results", default=None, metavar="FILE.json",
                        help="a `hccs-lab qat` results JSON: adds the accuracy table")
    parser.add_argument("--calibration", default=None, metavar="FILE.json",
                        help="review this calibration JSON instead of calibrating here")
    parser.add_argument("--samples", type=int, default=None, help="calibration texts (default 64; 8 in quick mode)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per text, a multiple of 32 (default 128)")
    parser.add_argument("--arch", default="aie-ml", help="kernel target: aie-ml or aie-mlv2")
    parser.add_argument("--quick", action="store_true", help="small setting for CI (also with HCCS_LAB_QUICK=1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def settings_from_args(args):
    from ..config import quick_mode
    from ..report import ReportSettings

    kw = {"model": args.model, "arch": args.arch, "qat_results": args.qat_results, "calibration": args.calibration}
    if args.samples is not None:
        kw["samples"] = args.samples
    if args.seq_len is not None:
        kw["max_len"] = args.seq_len
    return ReportSettings.quick(**kw) if (args.quick or quick_mode()) else ReportSettings(**kw)


def run(args) -> int:
    import torch

    from ..config import torch_threads
    from ..report import write_report

    torch.set_num_threads(torch_threads())
    t = time.perf_counter()
    out = write_report(settings_from_args(args), args.out, progress=not args.no_progress)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t:.0f}s")
    return 0
