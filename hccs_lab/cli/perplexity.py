"""`hccs-lab perplexity`: float32 vs HCCS (deployed integer output) perplexity of a causal LM on held-out text.

Held-out Wikipedia articles (gensim's bundled sample) cut into windows; HCCS calibrated per head,
per layer and globally from one capture of the calibration articles (or taken from --calibration);
controls: uniform causal attention, softmax of the int8-quantized logits, the default parameters.
"""
from __future__ import annotations


def add_arguments(parser) -> None:
    from ..calibrate.calibration import GRANULARITIES
    from ..core.params import TARGETS, VARIANTS

    parser.add_argument("--model", default="smollm2-135m", help="a causal LM (default: smollm2-135m)")
    parser.add_argument("--calibration", default=None,
                        help="calibration JSON to use for its granularity (the other granularities are calibrated here)")
    parser.add_argument("--variant", action="append", choices=VARIANTS, default=None,
                        help="deployed integer variant (repeatable; default u8-clb); the first one is the headline")
    parser.add_argument("--granularity", action="append", choices=GRANULARITIES, default=None,
                        help="granularities to evaluate (repeatable; default: head, layer and global)")
    parser.add_argument("--target", choices=TARGETS, default="hccs-lab",
                        help="hccs-lab: our kernels with per-row valid lengths (default); aie4ml: no mask, so future "
                             "keys enter the row as -128 and get probability (not a causal LM any more)")
    parser.add_argument("--calibration-target", choices=TARGETS, default=None,
                        help="whose parameter rules calibration obeys (default: --target's); aie4ml's keep every "
                             "key's score positive")
    parser.add_argument("--texts", type=int, default=64, help="held-out windows to evaluate (default 64)")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per window = HCCS row length n (default 128)")
    parser.add_argument("--calibration-texts", type=int, default=64, help="calibration windows captured (default 64)")
    parser.add_argument("--rows-per-head", type=int, default=1024, help="reservoir rows per head for calibration (1024)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward (default 8)")
    parser.add_argument("--no-controls", action="store_true", help="skip the control runs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default 2, 1 on a busy machine)")
    parser.add_argument("--out", required=True, help="results JSON to write")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    from ..config import torch_threads
    from ..retrain import perplexity as ppl
    from ..retrain.results import check_out_path, write_results

    s = ppl.PerplexitySettings(
        model=args.model, texts=args.texts, seq_len=args.seq_len, calibration_texts=args.calibration_texts,
        rows_per_head=args.rows_per_head, variants=tuple(args.variant or ("u8-clb",)),
        granularities=tuple(dict.fromkeys(args.granularity or ppl.GRANULARITIES)), target=args.target,
        calibration_target=args.calibration_target,
        batch_size=args.batch_size, calibration_file=args.calibration, controls=not args.no_controls).check()
    out = check_out_path(args.out)
    import torch

    torch.set_num_threads(torch_threads(args.threads))
    results = ppl.run(s, progress=not args.quiet)
    write_results(results, out)
    print(f"{results['model']}: {results['texts']} held-out windows of {results['seq_len']} tokens "
          f"({results['tokens']} predicted), target {s.target}, {results['seconds']:.0f} s")
    print(ppl.format_table(results))
    print(f"wrote {out}")
    return 0
