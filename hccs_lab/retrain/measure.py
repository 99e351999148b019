"""The measurements of one `hccs-lab qat` run: planned as independent jobs, run, then read as entries.

Every accuracy is a job on the prepared test split: an evaluation (the float32 model with a
probability function in its attention) or a QAT run (retrain a copy with one reading, then evaluate
it). Jobs share nothing but the prepared `Bench` (model, tokenizer, data, tables), so `execute` can
run them in worker processes: on 2 cores, two workers of one torch thread each do about a fifth more
work than one process of two threads (measured: a MiniLM QAT step 1.8 s per worker-pair step vs 2.2 s),
because the elementwise work of a transformer on CPU is bound by memory bandwidth, not by cores.
Each job seeds its own training, so its result does not depend on which worker ran it or when.

Entries (accuracy + paired interval against float32, `stats.paired_difference`) are assembled in the
main process from the per-sentence results: every reading directly, the controls, the calibration
methods, the QAT runs (one per granularity for the headline variant, one per extra variant) and the
attention fidelity of the headline run.
"""
from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import HCCSLabError, ToolError
from ..models.attention import set_probs
from .calibration_methods import METHOD_NOTES, calibrate_with
from .controls import CONTROL_NOTES, default_for_target, default_tables, int8_softmax_probs, uniform_probs
from .evaluate import attention_fidelity, correct
from .stats import paired_difference
from .substitute import HCCSTables, hccs_probs
from .train import qat_run


@dataclass
class Bench:
    """What every job needs: the float32 model, its tokenizer, the data and the named calibration tables."""

    settings: object
    model: object
    tokenizer: object
    train: object
    test: object
    tables: dict  # name -> HCCSTables: the granularities, "default", "method:<name>"

    @classmethod
    def of(cls, prep, **changes) -> "Bench":
        """The bench of a `Prepared` run, its settings changed by `changes` (e.g. target="hccs-lab")."""
        return cls(replace(prep.settings, **changes), prep.model, prep.tokenizer, prep.train, prep.test,
                   dict(prep.tables))

    def reading_correct(self, tables: str, variant: str) -> np.ndarray:
        """Per test sentence, right or wrong with one reading of the named tables (this bench's target)."""
        job = EvalJob(("reading", tables, variant), self.settings.pad_to(variant), f"eval {variant}")
        return run_job(self, job)["correct"]


@dataclass(frozen=True)
class EvalJob:
    """The float32 model with one probability function in its attention, on the test split."""

    probs: tuple  # ("reading", tables name, variant) | ("uniform",) | ("int8_softmax", tables name)
    pad_to: int | None
    desc: str

    @property
    def key(self) -> tuple:
        return ("eval",) + self.probs + (self.pad_to,)


@dataclass(frozen=True)
class QATJob:
    """One QAT run of `variant` with the `granularity` tables and `seed`, then its test evaluation."""

    variant: str
    granularity: str
    seed: int
    fidelity: bool  # also measure the attention fidelity of the retrained model (the headline run)
    desc: str

    @property
    def key(self) -> tuple:
        return ("qat", self.variant, self.granularity, self.seed)


def probs_fn(bench: Bench, spec: tuple):
    kind = spec[0]
    if kind == "reading":
        return hccs_probs(bench.tables[spec[1]], spec[2], bench.settings.padding)
    if kind == "uniform":
        return uniform_probs()
    if kind == "int8_softmax":
        return int8_softmax_probs(bench.tables[spec[1]])
    raise ValueError(f"unknown probability function {spec!r}")


def evaluate_with(bench: Bench, model, fn, pad_to: int | None, desc: str, progress: bool) -> np.ndarray:
    """Per test sentence: right or wrong, with `fn` in the model's attention (restored to softmax after)."""
    s = bench.settings
    set_probs(model, fn)
    try:
        return correct(model, bench.tokenizer, bench.test.texts, bench.test.labels, max_len=s.max_len,
                       progress=progress, desc=desc, pad_to=pad_to)
    finally:
        set_probs(model, None)


def run_job(bench: Bench, job, progress: bool = False) -> dict:
    """{"correct", "eval_s", "job_s"} (+ "history", "fake_quantized_linears", "fidelity" for a QAT job)."""
    t = time.perf_counter()
    out = _run(bench, job, progress)
    out["job_s"] = time.perf_counter() - t
    return out


def _run(bench: Bench, job, progress: bool) -> dict:
    s = bench.settings
    if isinstance(job, EvalJob):
        t = time.perf_counter()
        c = evaluate_with(bench, bench.model, probs_fn(bench, job.probs), job.pad_to, job.desc, progress)
        return {"correct": c, "eval_s": time.perf_counter() - t}
    m, hist, n_lin = qat_run(bench.model, bench.tokenizer, bench.train, bench.tables[job.granularity],
                             s.qat_settings(job.seed, job.variant), quantize_linears=s.quantize_linears,
                             progress=progress, desc=job.desc, variant=job.variant, padding=s.padding)
    fn = hccs_probs(bench.tables[job.granularity], job.variant, s.padding)
    t = time.perf_counter()
    c = evaluate_with(bench, m, fn, s.pad_to(job.variant), f"eval after {job.desc}", progress)
    out = {"correct": c, "eval_s": time.perf_counter() - t, "history": hist, "fake_quantized_linears": n_lin}
    if job.fidelity:
        t = time.perf_counter()
        out["fidelity"] = attention_fidelity(bench.model, m, bench.tokenizer, fn, bench.test.texts[:s.fidelity_texts],
                                             s.max_len, pad_to=s.pad_to(job.variant))
        out["fidelity"]["reading"] = job.variant
        out["fidelity_s"] = time.perf_counter() - t
    return out


# ---------------------------------------------------------------------------------------------
# running jobs: in this process, or in spawned workers with one torch thread each

_WORKER_BENCH: Bench | None = None


def _init_worker(path: str, threads: int) -> None:
    global _WORKER_BENCH
    from ..models import load as load_model

    torch.set_num_threads(threads)
    bench = torch.load(path, weights_only=False)
    load_model((bench.model, bench.tokenizer))  # registers the hccs_lab attention in this process
    _WORKER_BENCH = bench


def _worker_job(job) -> dict:
    return run_job(_WORKER_BENCH, job)


def execute(bench: Bench, jobs: list, workers: int = 1, threads: int = 1, progress: bool = True) -> dict:
    """{job.key: result} of every job (duplicates run once), longest first: QAT runs before evaluations.

    With `workers` > 1 each job runs in one of that many spawned processes with `threads` torch
    threads; a bar counts finished jobs. With 1 they run here, each with its own bars.
    """
    from tqdm.auto import tqdm

    todo = list({j.key: j for j in sorted(jobs, key=lambda j: not isinstance(j, QATJob))}.values())
    results = {}
    if workers <= 1 or len(todo) <= 1:
        return {job.key: run_job(bench, job, progress) for job in todo}
    with tempfile.TemporaryDirectory(prefix="hccs-lab-jobs-") as tmp:
        path = str(Path(tmp) / "bench.pt")
        torch.save(bench, path)
        ctx = multiprocessing.get_context("spawn")  # fork after OpenMP has run can hang the child
        bar = tqdm(total=len(todo), desc=f"qat jobs ({workers} workers)", disable=not progress)
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(path, threads)) as pool:
            pending = {pool.submit(_worker_job, job): job for job in todo}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        job = pending.pop(fut)
                        try:
                            results[job.key] = fut.result()
                        except BrokenProcessPool as e:  # killed (out of memory?) or crashed in native code
                            raise ToolError(f"a worker process died while running {job.desc!r} ({e}). Workers are "
                                            "spawned: a script that starts this run needs `if __name__ == "
                                            "'__main__':`; otherwise rerun with --workers 1 (workers=1) to run "
                                            "the jobs in this process") from None
                        bar.set_postfix_str(job.desc[:40])
                        bar.update(1)
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
            finally:
                bar.close()
    return results


def default_workers(quick: bool) -> int:
    """2 worker processes for a full run on a machine with >= 2 cores; 1 (this process) for a quick one,
    whose few seconds of work would not pay for starting workers."""
    return 1 if quick else max(1, min(2, os.cpu_count() or 1))


# ---------------------------------------------------------------------------------------------
# the plan of one run, and the entries read from its results


@dataclass
class Plan:
    """The jobs of one run and the names the entries are read back with."""

    bench: Bench
    main_granularity: str
    method_calibrations: dict = field(default_factory=dict)  # method -> (calibration, tables name)
    jobs: list = field(default_factory=list)

    def reading(self, tables: str, variant: str, desc: str) -> EvalJob:
        job = EvalJob(("reading", tables, variant), self.bench.settings.pad_to(variant), desc)
        self.jobs.append(job)
        return job


def plan_run(prep) -> Plan:
    """Every job of the run `prep.settings` describes (calibration methods other than the run's own are calibrated here)."""
    s = prep.settings
    main_g = "head" if "head" in s.granularities else s.granularities[0]
    tables = dict(prep.tables)
    tables["default"] = default_tables(prep.tables[main_g], s.max_len, s.target)
    plan = Plan(Bench(s, prep.model, prep.tokenizer, prep.train, prep.test, tables), main_g)
    for v in dict.fromkeys((s.variant,) + tuple(s.direct_variants)):
        plan.reading(main_g, v, f"eval {v} direct")
    plan.jobs.append(EvalJob(("uniform",), None, "eval uniform attention"))
    plan.reading("default", s.variant, "eval default params")
    plan.jobs.append(EvalJob(("int8_softmax", main_g), None, "eval int8 softmax"))
    if len(s.calib_methods) > 1 or s.calib_methods != ("grid",):
        for method in dict.fromkeys(("grid",) + tuple(s.calib_methods)):
            if method == s.calib_method and "head" in prep.calibrations:  # the run's own calibration
                cal, name = prep.calibrations["head"], "head"
            else:
                cal = calibrate_with(prep.bank, s.max_len, method, "head", s.target)
                name = f"method:{method}"
                tables[name] = HCCSTables.from_calibration(cal, prep.loaded.n_layers, prep.loaded.n_heads)
            plan.method_calibrations[method] = (cal, name)
            plan.reading(name, s.variant, f"eval {method} calibration")
    for variant, g in qat_plan(s, main_g):
        for r in range(s.repeats):
            seed = s.seed + r
            tag = f"{variant}, {g}" + ("" if s.repeats == 1 else f", seed {seed}")
            plan.jobs.append(QATJob(variant, g, seed, fidelity=(variant, g, r) == (s.variant, main_g, 0),
                                    desc=f"HCCS QAT ({tag})"))
    for g in s.granularities:
        plan.reading(g, s.variant, f"eval {s.variant} direct ({g})")
    return plan


def qat_plan(s, granularity: str) -> list[tuple[str, str]]:
    """(reading, granularity) of every QAT run: the headline variant per granularity, extra variants per head."""
    plan = [(s.variant, g) for g in s.granularities]
    plan += [(v, granularity) for v in s.qat_variants if (v, granularity) not in plan]
    return plan


class Readout:
    """Entries from the results of a plan's jobs, each paired with the float32 model's per-sentence results."""

    def __init__(self, prep, plan: Plan, results: dict):
        self.prep, self.plan, self.results, self.s = prep, plan, results, prep.settings

    def entry(self, c: np.ndarray, **extra) -> dict:
        return {"accuracy": float(np.mean(c)), "vs_float32": paired_difference(c, self.prep.float_correct), **extra}

    def correct(self, key: tuple) -> np.ndarray:
        if key not in self.results:
            raise HCCSLabError(f"internal: no result for job {key}")
        return self.results[key]["correct"]

    def reading(self, tables: str, variant: str) -> tuple[dict, np.ndarray]:
        c = self.correct(("eval", "reading", tables, variant, self.s.pad_to(variant)))
        return self.entry(c, variant=variant), c

    def direct(self) -> dict:
        """{reading: entry}: the float32 model with each reading of the main calibration in place of softmax."""
        return {v: self.reading(self.plan.main_granularity, v)[0]
                for v in dict.fromkeys((self.s.variant,) + tuple(self.s.direct_variants))}

    def controls(self) -> dict:
        """{"uniform", "default_params", "int8_softmax"}: each an entry with what it controls for."""
        s = self.s
        out = {"uniform": self.entry(self.correct(("eval", "uniform", None))),
               "default_params": self.reading("default", s.variant)[0],
               "int8_softmax": self.entry(self.correct(("eval", "int8_softmax", self.plan.main_granularity, None)))}
        out["default_params"]["params"] = default_for_target(s.max_len, s.target).as_dict()
        for k, v in out.items():
            v["what"] = CONTROL_NOTES[k]
        return out

    def methods(self) -> dict:
        """{method: entry}: direct accuracy (per head, the headline variant) by calibration method, vs the exact grid too."""
        out, grid_correct = {}, None
        for method, (cal, name) in self.plan.method_calibrations.items():
            entry, c = self.reading(name, self.s.variant)
            grid_correct = c if method == "grid" else grid_correct
            entry.update(mean_kl=float(cal.mean_kl_after), seconds=float(cal.seconds), what=METHOD_NOTES[method],
                         vs_grid=paired_difference(c, grid_correct))
            entry["params"] = self.plan.bench.tables[name].as_rows()
            out[method] = entry
        return out

    def qat_runs(self) -> dict:
        """{(reading, granularity): {"entry", "fidelity"}}, each averaged over its seeds."""
        s, out = self.s, {}
        for variant, g in qat_plan(s, self.plan.main_granularity):
            res = [self.results[("qat", variant, g, s.seed + r)] for r in range(s.repeats)]
            entries = [self.entry(x["correct"], variant=variant) for x in res]
            accs = [e["accuracy"] for e in entries]
            entry = dict(entries[0])
            entry.update(granularity=g, accuracy=float(np.mean(accs)), accuracy_per_seed=accs,
                         seeds=[s.seed + r for r in range(s.repeats)],
                         accuracy_std=float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
                         vs_float32_per_seed=[e["vs_float32"] for e in entries], history=res[0]["history"],
                         fake_quantized_linears=res[0]["fake_quantized_linears"],
                         seconds=float(sum(x["history"]["seconds"] for x in res)))
            out[variant, g] = {"entry": entry, "fidelity": res[0].get("fidelity")}
        return out

    def granularity(self, direct_main: dict, runs: dict) -> dict:
        """{granularity: {"direct", "qat", "mean_calibration_kl", "calibration_kl"}} for the headline variant."""
        s, out = self.s, {}
        for g in s.granularities:
            d = direct_main if g == self.plan.main_granularity else self.reading(g, s.variant)[0]
            run = runs.get((s.variant, g))
            kl = self.prep.calibrations[g].kl_grid("after")
            out[g] = {"direct": d, "qat": None if run is None else run["entry"],
                      "mean_calibration_kl": float(kl.mean()),
                      "calibration_kl": [{"layer": l, "head": h, "kl_after": float(kl[l, h])}
                                         for l in range(kl.shape[0]) for h in range(kl.shape[1])]}
        return out

    def timings(self) -> dict:
        """Seconds summed over the jobs (they overlap when workers run them side by side)."""
        evals = [r["eval_s"] for r in self.results.values()]
        fid = [r["fidelity_s"] for r in self.results.values() if "fidelity_s" in r]
        return {"evals_s": float(sum(evals)), "evals": len(evals), "fidelity_s": float(sum(fid)),
                "jobs_s": float(sum(r["job_s"] for r in self.results.values()))}
