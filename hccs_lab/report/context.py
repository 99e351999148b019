"""What a design review measures (`ReportSettings`) and the pipeline run once for it (`build_context`).

Load the model, capture per-head logits on Rotten Tomatoes snippets, calibrate every head (or read a
calibration JSON); the section builders then only read the `Context`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, MissingError

DEFAULT_ARCH = "aie-ml"
KERNEL_VARIANTS = ("i16-div", "u8-div", "i16-clb", "u8-clb")
# the fastest variant is chosen among those whose mean KL stays within this factor of exact i16+div
KL_TOLERANCE = 1.25


@dataclass(frozen=True)
class ReportSettings:
    """What the report measures; `quick()` shrinks it for tests and CI."""

    model: str = "minilm-l6"
    samples: int = 64  # calibration texts (the paper uses 64 samples)
    max_len: int = 128
    max_rows_per_head: int = 512
    arch: str = DEFAULT_ARCH
    granularities: tuple = ("head", "layer", "global")
    throughput_ns: tuple = (32, 64, 128)
    calibration: str | None = None  # a calibration JSON to review instead of calibrating here
    qat_results: str | None = None  # a `hccs-lab qat` results JSON
    seed: int = 0

    @classmethod
    def quick(cls, **kw) -> "ReportSettings":
        base = dict(samples=8, max_len=64, max_rows_per_head=128, throughput_ns=(32, 64))
        base.update(kw)
        return cls(**base)


@dataclass
class Section:
    """One titled part of the review: HTML fragments (str) and plotly figures, in order."""

    key: str
    title: str
    blocks: list = field(default_factory=list)

    def add(self, block) -> "Section":
        self.blocks.append(block)
        return self


@dataclass
class Context:
    settings: ReportSettings
    loaded: object
    texts: list
    bank: object
    summary: object
    calibration: object
    calibrations: dict  # granularity -> Calibration (the reviewed one under its own granularity)
    calibration_source: str
    qat: dict | None
    seconds: dict
    kernel_choice: object = None  # set by the kernel section, read by the throughput section


def read_qat_results(path) -> dict:
    """A `hccs-lab qat` results JSON, checked for the fields the accuracy table reads."""
    p = Path(path)
    if not p.is_file():
        raise MissingError(f"QAT results file {p} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"QAT results file {p} is not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"QAT results file {p}: top level must be an object")
    for key in ("float32", "hccs_direct", "hccs_qat"):
        acc = data.get(key, {}).get("accuracy") if isinstance(data.get(key), dict) else None
        if not isinstance(acc, (int, float)) or not 0 <= acc <= 1:
            raise InputError(f"QAT results file {p}: missing or invalid {key}.accuracy (a fraction in [0, 1])")
    if "model" not in data:
        raise InputError(f"QAT results file {p}: missing field 'model'")
    data["file"] = str(p)
    return data


def qat_results_for(s: "ReportSettings") -> dict | None:
    """The QAT results the report shows: `s.qat_results` when given, else the committed full run of the
    model (`benchmarks/results/qat_<model>.json`, `hccs_lab.io.committed_result`) when there is one."""
    if s.qat_results:
        return read_qat_results(s.qat_results)
    from ..io import committed_result

    path = committed_result(f"qat_{Path(str(s.model)).name}.json", required=False)
    return None if path is None else read_qat_results(path)


def check_model_name(name: str) -> None:
    from ..models import KNOWN_MODELS

    if name in KNOWN_MODELS or Path(str(name)).expanduser().is_dir():
        return
    raise InputError(f"unknown model {name!r}: use one of {', '.join(KNOWN_MODELS)} or a local Hugging Face model folder")


def check_settings(s: ReportSettings) -> None:
    check_model_name(s.model)
    from ..aie import ARCHS

    if s.arch not in ARCHS:
        raise InputError(f"unknown arch {s.arch!r}: use one of {', '.join(ARCHS)}")
    for what in ("samples", "max_len", "max_rows_per_head"):
        v = getattr(s, what)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{what} must be a positive integer, got {v!r}")
    if s.max_len % 32:
        raise InputError(f"seq_len (--seq-len) must be a multiple of 32 (the kernel's vector width), got {s.max_len}")
    if s.calibration is not None and not Path(s.calibration).is_file():
        raise MissingError(f"calibration file {s.calibration} does not exist")


def build_context(s: ReportSettings, progress: bool = True) -> Context:
    from ..calibrate import Calibration, calibrate
    from ..capture import capture_logits
    from ..data import calibration_texts
    from ..models import load

    check_settings(s)
    qat = qat_results_for(s)
    given = Calibration.from_json(s.calibration) if s.calibration else None
    sec = {}
    t = time.perf_counter()
    loaded = load(s.model)
    sec["load"] = time.perf_counter() - t
    max_len = s.max_len
    if given is not None:
        if given.model != loaded.name:
            raise InputError(f"calibration {s.calibration} was made for model {given.model!r}, not {loaded.name!r}")
        if given.seq_len % 32:
            raise InputError(f"calibration {s.calibration} has seq_len {given.seq_len}; the kernels need a multiple of 32")
        max_len = given.seq_len  # its parameters are valid for that row length (n*B <= 32767)
    texts = calibration_texts(s.samples, seed=s.seed)
    t = time.perf_counter()
    bank = capture_logits(loaded, texts, max_len=max_len, max_rows_per_head=s.max_rows_per_head, seed=s.seed,
                          progress=progress)
    sec["capture"] = time.perf_counter() - t
    summary = bank.summary()
    cals = {}
    t = time.perf_counter()
    if given is not None:
        if (given.n_layers, given.n_heads) != (loaded.n_layers, loaded.n_heads):
            raise InputError(f"calibration {s.calibration} is for {given.n_layers} layers x {given.n_heads} heads, "
                             f"model {s.model} has {loaded.n_layers} x {loaded.n_heads}")
        cals[given.granularity] = given
        source = f"read from {Path(s.calibration).name} ({given.model}, {given.samples} samples, {given.method})"
        reviewed = given
    else:
        for g in s.granularities:
            cals[g] = calibrate(bank, bank.seq_len, granularity=g, method="grid", samples=s.samples, progress=progress)
        reviewed = cals["head"] if "head" in cals else next(iter(cals.values()))
        source = f"calibrated here: grid search, {s.samples} texts, seq_len {bank.seq_len}"
    sec["calibrate"] = time.perf_counter() - t
    return Context(s, loaded, texts, bank, summary, reviewed, cals, source, qat, sec)


