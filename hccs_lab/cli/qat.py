"""`hccs-lab qat`: float32 fine-tune -> calibrate -> the deployed kernel directly and after QAT, with controls."""
from __future__ import annotations


def add_arguments(parser) -> None:
    from ..calibrate.calibration import GRANULARITIES
    from ..core.params import DEFAULT_TARGET, TARGETS
    from ..retrain.experiment import DEFAULT_VARIANT, MODELS
    from ..retrain.substitute import READINGS

    parser.add_argument("--model", default="tiny", help=f"one of {', '.join(MODELS)} (default tiny)")
    parser.add_argument("--out", required=True, help="results JSON to write")
    parser.add_argument("--quick", action="store_true", help="small subsets and few steps (CI smoke test)")
    parser.add_argument("--variant", default=DEFAULT_VARIANT, choices=READINGS,
                        help=f"the kernel whose exact output QAT trains and every accuracy reads (default {DEFAULT_VARIANT}); "
                             "float: the real-valued reading")
    parser.add_argument("--target", default=DEFAULT_TARGET, choices=TARGETS,
                        help=f"deployment target: calibration obeys its rules and the kernel has its padding (default "
                             f"{DEFAULT_TARGET}: no mask, padded keys take part; hccs-lab: masked keys get 0)")
    parser.add_argument("--also-qat", action="append", choices=READINGS, default=None, metavar="VARIANT",
                        help="retrain another reading too, per head (repeatable; minilm-l6 default: i16-div)")
    parser.add_argument("--epochs", type=float, default=None, help="QAT epochs (default 1)")
    parser.add_argument("--qat-steps", type=int, default=None, help="cap on QAT optimizer steps")
    parser.add_argument("--qat-lr", type=float, default=None, help="QAT learning rate")
    parser.add_argument("--float-steps", type=int, default=None, help="cap on float32 fine-tune steps (minilm-l6)")
    parser.add_argument("--max-len", type=int, default=None, help="token length for training, calibration and the kernel (64)")
    parser.add_argument("--granularity", action="append", choices=GRANULARITIES, default=None,
                        help="calibration granularities to measure and retrain (repeatable; default: all three)")
    parser.add_argument("--quantize-linears", action="store_true", help="also fake-quantize every Linear to int8")
    parser.add_argument("--seed", type=int, default=None, help="training seed (the data split is fixed)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="QAT runs per granularity with consecutive seeds; accuracies are averaged")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default 2, or 1 when the load average exceeds the cores)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes running the evaluations and QAT runs side by side, the threads shared out "
                             "among them (default 2 for a full run, 1 with --quick)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")


def run(args) -> int:
    from ..config import torch_threads
    from ..retrain.experiment import ExperimentSettings, run_experiment
    from ..retrain.results import check_out_path, format_tables, summary_line, write_results

    s = ExperimentSettings.for_model(
        args.model, quick=args.quick, variant=args.variant, target=args.target, qat_epochs=args.epochs,
        qat_steps=args.qat_steps, qat_lr=args.qat_lr, float_steps=args.float_steps, max_len=args.max_len,
        seed=args.seed, repeats=args.repeats, granularities=tuple(args.granularity) if args.granularity else None,
        qat_variants=tuple(args.also_qat) if args.also_qat else None,
        quantize_linears=args.quantize_linears or None, threads=args.threads,
        workers=args.workers).validate()
    out = check_out_path(args.out)
    import torch

    torch.set_num_threads(torch_threads(s.threads))
    results = run_experiment(s, progress=not args.no_progress)
    write_results(results, out)
    print(format_tables(results))
    print(summary_line(results) + f"\nwrote {out}")
    return 0
