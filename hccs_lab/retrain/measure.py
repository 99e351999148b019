"""The measurements of one `hccs-lab qat` run, each an accuracy with its paired interval against float32.

`Evaluator` runs the test split through a model with a probability function in its attention and
compares per sentence with the float32 model (`stats.paired_difference`). The functions below are
the parts of the run: every reading directly, the controls, the calibration methods, the QAT runs
(one per granularity for the headline variant, one per extra variant) and the attention fidelity.
"""
from __future__ import annotations

import time

import numpy as np

from ..models.attention import set_probs
from .calibration_methods import METHOD_NOTES, calibrate_with
from .controls import CONTROL_NOTES, default_for_target, default_tables, int8_softmax_probs, uniform_probs
from .evaluate import attention_fidelity
from .stats import paired_difference
from .substitute import HCCSTables, hccs_probs
from .train import qat_run


class Evaluator:
    """Accuracies on the prepared test split, each paired with the float32 model's per-sentence results."""

    def __init__(self, prep, progress: bool = True):
        self.prep, self.s, self.progress = prep, prep.settings, progress
        self.seconds = 0.0
        self.count = 0
        self._readings = {}  # (model, tables, reading) ids -> (entry, results): nothing is evaluated twice

    def correct(self, model, fn, pad_to: int | None, desc: str) -> np.ndarray:
        """Per test sentence: right or wrong, with `fn` in the model's attention (restored to softmax after)."""
        t = time.perf_counter()
        set_probs(model, fn)
        try:
            c = self.prep.correct(model, desc, self.progress, pad_to)
        finally:
            set_probs(model, None)
        self.seconds += time.perf_counter() - t
        self.count += 1
        return c

    def entry(self, c: np.ndarray, **extra) -> dict:
        return {"accuracy": float(np.mean(c)), "vs_float32": paired_difference(c, self.prep.float_correct), **extra}

    def reading(self, model, tables: HCCSTables, variant: str, desc: str) -> tuple[dict, np.ndarray]:
        """(entry, per-sentence results) of one reading (kernel variant or "float") of `tables`."""
        key = (id(model), id(tables), variant, self.s.padding)
        if key not in self._readings:
            c = self.correct(model, hccs_probs(tables, variant, self.s.padding), self.s.pad_to(variant), desc)
            self._readings[key] = (self.entry(c, variant=variant), c)
        entry, c = self._readings[key]
        return dict(entry), c


def direct_readings(ev: Evaluator, granularity: str) -> dict:
    """{reading: entry}: the float32 model with each reading of the calibration in place of softmax."""
    s, prep = ev.s, ev.prep
    readings = list(dict.fromkeys((s.variant,) + tuple(s.direct_variants)))
    return {v: ev.reading(prep.model, prep.tables[granularity], v, f"eval {v} direct")[0] for v in readings}


def control_accuracies(ev: Evaluator, granularity: str) -> dict:
    """{"uniform", "default_params", "int8_softmax"}: each an entry with what it controls for."""
    s, prep = ev.s, ev.prep
    tables = prep.tables[granularity]
    uni = ev.entry(ev.correct(prep.model, uniform_probs(), None, "eval uniform attention"))
    default, _ = ev.reading(prep.model, default_tables(tables, s.max_len, s.target), s.variant, "eval default params")
    int8 = ev.entry(ev.correct(prep.model, int8_softmax_probs(tables), None, "eval int8 softmax"))
    default["params"] = default_for_target(s.max_len, s.target).as_dict()
    out = {"uniform": uni, "default_params": default, "int8_softmax": int8}
    for k, v in out.items():
        v["what"] = CONTROL_NOTES[k]
    return out


def method_accuracies(ev: Evaluator) -> dict:
    """{method: entry}: direct accuracy (per head, the headline variant) by calibration method, vs the exact grid too."""
    s, prep = ev.s, ev.prep
    out, grid_correct = {}, None
    for method in dict.fromkeys(("grid",) + tuple(s.calib_methods)):
        if method == s.calib_method and "head" in prep.calibrations:  # the run's own calibration: measured already
            cal, tables = prep.calibrations["head"], prep.tables["head"]
        else:
            cal = calibrate_with(prep.bank, s.max_len, method, "head", s.target)
            tables = HCCSTables.from_calibration(cal, prep.loaded.n_layers, prep.loaded.n_heads)
        entry, c = ev.reading(prep.model, tables, s.variant, f"eval {method} calibration")
        grid_correct = c if method == "grid" else grid_correct
        entry.update(mean_kl=float(cal.mean_kl_after), seconds=float(cal.seconds), what=METHOD_NOTES[method],
                     vs_grid=paired_difference(c, grid_correct))
        entry["params"] = tables.as_rows()
        out[method] = entry
    return out


def qat_plan(s, granularity: str) -> list[tuple[str, str]]:
    """(reading, granularity) of every QAT run: the headline variant per granularity, extra variants per head."""
    plan = [(s.variant, g) for g in s.granularities]
    plan += [(v, granularity) for v in s.qat_variants if (v, granularity) not in plan]
    return plan


def qat_runs(ev: Evaluator, granularity: str) -> dict:
    """{(reading, granularity): {"entry", "model"}}: each run retrained from the float32 model, then evaluated."""
    s, prep = ev.s, ev.prep
    out = {}
    for variant, g in qat_plan(s, granularity):
        accs, per_seed, hists, first = [], [], [], None
        for r in range(s.repeats):
            seed = s.seed + r
            tag = f"{variant}, {g}" + ("" if s.repeats == 1 else f", seed {seed}")
            m, hist, n_lin = qat_run(prep.model, prep.tokenizer, prep.train, prep.tables[g],
                                     s.qat_settings(seed, variant), quantize_linears=s.quantize_linears,
                                     progress=ev.progress, desc=f"HCCS QAT ({tag})", variant=variant,
                                     padding=s.padding)
            entry, _ = ev.reading(m, prep.tables[g], variant, f"eval after QAT ({tag})")
            accs.append(entry["accuracy"])
            per_seed.append(entry["vs_float32"])
            hists.append(hist)
            if first is None:
                first = (entry, m)
        entry, model = first
        entry.update(granularity=g, accuracy=float(np.mean(accs)), accuracy_per_seed=accs,
                     seeds=[s.seed + r for r in range(s.repeats)],
                     accuracy_std=float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
                     vs_float32_per_seed=per_seed, history=hists[0], fake_quantized_linears=n_lin,
                     seconds=float(sum(h["seconds"] for h in hists)))
        keep = (variant, g) == (s.variant, granularity)
        out[variant, g] = {"entry": entry, "model": model if keep else None}
    return out


def fidelity(ev: Evaluator, qat_model, granularity: str) -> dict:
    """Per-head KL of the headline reading's attention against float32 softmax, direct and after QAT."""
    s, prep = ev.s, ev.prep
    fn = hccs_probs(prep.tables[granularity], s.variant, s.padding)
    out = attention_fidelity(prep.model, qat_model, prep.tokenizer, fn, prep.test.texts[:s.fidelity_texts], s.max_len,
                             pad_to=s.pad_to(s.variant))
    out["reading"] = s.variant
    return out


def granularity_accuracies(ev: Evaluator, direct_main: dict, runs: dict, granularity: str) -> dict:
    """{granularity: {"direct", "qat", "mean_calibration_kl", "calibration_kl"}} for the headline variant."""
    s, prep = ev.s, ev.prep
    out = {}
    for g in s.granularities:
        if g == granularity:
            d = direct_main
        else:
            d, _ = ev.reading(prep.model, prep.tables[g], s.variant, f"eval {s.variant} direct ({g})")
        run = runs.get((s.variant, g))
        cal = prep.calibrations[g]
        kl = cal.kl_grid("after")
        out[g] = {"direct": d, "qat": None if run is None else run["entry"], "mean_calibration_kl": float(kl.mean()),
                  "calibration_kl": [{"layer": l, "head": h, "kl_after": float(kl[l, h])}
                                     for l in range(kl.shape[0]) for h in range(kl.shape[1])]}
    return out
