"""The full `hccs-lab qat` run of one model, timed with the machine's load, written to benchmarks/results/.

For minilm-l6 (the headline) that is: float32 (fine-tuned once, then cached under the cache dir),
every reading directly (the four integer kernels and the real-valued one), the controls, three
calibration methods, global / per-layer / per-head calibration each directly and after its own
u8-clb QAT run, and QAT with i16-div; every accuracy with its paired 95% interval. Goal: <= 25 min
on 2 cores. The machine is shared, so the 1-minute load average is sampled every 15 s and stored
with the timings.

Run: .venv/bin/python benchmarks/bench_qat_full.py [--model minilm-l6] [--out FILE] [--variant u8-clb]
"""
from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


class LoadSampler:
    """The 1-minute load average every `every` seconds, in a daemon thread."""

    def __init__(self, every: float = 15.0):
        self.every, self.samples, self._stop = every, [], threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.samples.append([round(time.perf_counter() - self._t0, 1), round(os.getloadavg()[0], 2)])
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        loads = [v for _, v in self.samples]
        return {"every_s": self.every, "samples": self.samples, "mean": round(sum(loads) / max(1, len(loads)), 2),
                "max": max(loads, default=None), "cores": os.cpu_count()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm-l6")
    p.add_argument("--variant", default="u8-clb")
    p.add_argument("--target", default="aie4ml")
    p.add_argument("--out", default=None, help="default: benchmarks/results/qat_<model>.json")
    p.add_argument("--threads", type=int, default=None, help="default: 2, or 1 when the machine is oversubscribed")
    p.add_argument("--workers", type=int, default=None, help="default: 2 processes of 1 thread each")
    p.add_argument("--progress", action="store_true", help="tqdm bars on stderr")
    args = p.parse_args()
    import torch

    from hccs_lab.retrain.experiment import ExperimentSettings, minilm_classifier_dir, run_experiment
    from hccs_lab.retrain.results import format_tables, summary_line, write_results

    from hccs_lab.config import torch_threads

    torch.set_num_threads(torch_threads(args.threads))
    s = ExperimentSettings.for_model(args.model, variant=args.variant, target=args.target, threads=args.threads,
                                    workers=args.workers).validate()
    cached = args.model != "minilm-l6" or (minilm_classifier_dir() / "model.safetensors").is_file()
    t = time.perf_counter()
    with LoadSampler() as load:
        r = run_experiment(s, progress=args.progress)
    r["benchmark"] = {"script": "benchmarks/bench_qat_full.py", "wall_s": round(time.perf_counter() - t, 1),
                      "float32_from_cache_at_start": cached, "load_average_1min": load.summary()}
    out = Path(args.out) if args.out else RESULTS / f"qat_{args.model}.json"
    write_results(r, out)
    print(format_tables(r))
    print(summary_line(r))
    print(f"wall {r['benchmark']['wall_s'] / 60:.1f} min, load mean {load.summary()['mean']} (max {load.summary()['max']}) "
          f"on {os.cpu_count()} cores; wrote {out}")


if __name__ == "__main__":
    main()
