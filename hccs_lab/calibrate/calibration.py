"""`Calibration`: every head's (B, S, D) and int8 scale, with its JSON form (strictly validated, written atomically)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.params import TARGETS, HCCSParams, target_violations
from ..errors import InputError, MissingError
from ..io import write_text

SCHEMA_VERSION = 2  # 2 added "target"; version-1 files predate targets and read as target "hccs-lab"
READABLE_VERSIONS = (1, 2)
SCHEMA_NAME = "hccs-lab/calibration"
GRANULARITIES = ("head", "layer", "global")
METHODS = ("grid", "gradient")


@dataclass(frozen=True)
class HeadCalibration:
    layer: int
    head: int
    B: int
    S: int
    D: int
    scale: float
    kl_before: float
    kl_after: float

    @property
    def params(self) -> HCCSParams:
        return HCCSParams(self.B, self.S, self.D)


_META_TYPES = {
    "model": str,
    "seq_len": int,
    "n_layers": int,
    "n_heads": int,
    "samples": int,
    "rows": int,
    "data_fingerprint": str,
    "method": str,
    "granularity": str,
    "hccs_lab_version": str,
    "created": str,
    "seconds": float,
    "candidates": int,
    "target": str,
}
_HEAD_KEYS = ("layer", "head", "B", "S", "D", "scale", "kl_before", "kl_after")


@dataclass(frozen=True)
class Calibration:
    """Per-(layer, head) HCCS parameters and int8 scales, with their KL before/after and provenance.

    `before` is the parameter set the "before" KL is measured with (`default_params(seq_len)`, at
    each head's own scale); `rows` counts the query rows the objective averaged over, per head summed.
    """

    model: str
    seq_len: int
    n_layers: int
    n_heads: int
    samples: int
    rows: int
    data_fingerprint: str
    method: str
    granularity: str
    hccs_lab_version: str
    created: str
    seconds: float
    candidates: int
    before: HCCSParams
    heads: tuple  # of HeadCalibration, ordered by (layer, head)
    target: str = "hccs-lab"  # the deployment target whose rules every head satisfies
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        _validate(self)

    # -- lookups
    def entry(self, layer: int, head: int) -> HeadCalibration:
        if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
            raise InputError(f"(layer, head) = ({layer}, {head}) outside {self.n_layers} layers x {self.n_heads} heads")
        return self.heads[layer * self.n_heads + head]

    def params(self, layer: int, head: int) -> HCCSParams:
        return self.entry(layer, head).params

    def scale(self, layer: int, head: int) -> float:
        return self.entry(layer, head).scale

    def kl_grid(self, which: str = "after") -> np.ndarray:
        """[layers, heads] array of kl_before or kl_after."""
        if which not in ("before", "after"):
            raise InputError(f"which must be 'before' or 'after', got {which!r}")
        v = np.array([getattr(h, "kl_" + which) for h in self.heads])
        return v.reshape(self.n_layers, self.n_heads)

    @property
    def mean_kl_before(self) -> float:
        return float(self.kl_grid("before").mean())

    @property
    def mean_kl_after(self) -> float:
        return float(self.kl_grid("after").mean())

    def table(self) -> list[dict]:
        """One summary row per layer: mean KL before/after, worst head, parameter ranges."""
        out = []
        for layer in range(self.n_layers):
            hs = self.heads[layer * self.n_heads:(layer + 1) * self.n_heads]
            after = np.array([h.kl_after for h in hs])
            out.append({
                "layer": layer,
                "kl_before": float(np.mean([h.kl_before for h in hs])),
                "kl_after": float(after.mean()),
                "worst_head": int(after.argmax()),
                "worst_kl": float(after.max()),
                "B": _span([h.B for h in hs]),
                "S": _span([h.S for h in hs]),
                "D": _span([h.D for h in hs]),
            })
        return out

    def format_table(self) -> str:
        rows = self.table()
        head = f"{'layer':>5}  {'KL before':>9}  {'KL after':>9}  {'worst head':>10}  {'B':>9}  {'S':>7}  {'D':>9}"
        lines = [head, "-" * len(head)]
        for r in rows:
            lines.append(f"{r['layer']:>5}  {r['kl_before']:>9.4f}  {r['kl_after']:>9.4f}  "
                         f"{r['worst_head']:>4} {r['worst_kl']:>5.3f}  {r['B']:>9}  {r['S']:>7}  {r['D']:>9}")
        lines.append(f"{'all':>5}  {self.mean_kl_before:>9.4f}  {self.mean_kl_after:>9.4f}")
        return "\n".join(lines)

    # -- JSON
    def to_dict(self) -> dict:
        d = {"schema": SCHEMA_NAME, "schema_version": self.schema_version}
        for k in _META_TYPES:
            d[k] = getattr(self, k)
        d["before"] = self.before.as_dict()
        d["heads"] = [{k: getattr(h, k) for k in _HEAD_KEYS} for h in self.heads]
        return d

    def to_json(self, path) -> Path:
        """Write atomically: a temp file in the same folder, then os.replace."""
        return write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")

    @classmethod
    def from_dict(cls, d, source: str = "calibration") -> "Calibration":
        if not isinstance(d, dict):
            raise InputError(f"{source}: top level must be a JSON object, got {type(d).__name__}")
        if d.get("schema") != SCHEMA_NAME:
            raise InputError(f"{source}: not an hccs-lab calibration (schema {d.get('schema')!r}, expected {SCHEMA_NAME!r})")
        ver = d.get("schema_version")
        if not is_int(ver) or ver not in READABLE_VERSIONS:
            raise InputError(f"{source}: unsupported schema_version {ver!r} (this hccs_lab reads {READABLE_VERSIONS})")
        if ver == 1:
            d = {**d, "target": "hccs-lab"}
        meta = {}
        for k, t in _META_TYPES.items():
            if k not in d:
                raise InputError(f"{source}: missing field {k!r}")
            meta[k] = _typed(d[k], t, f"{source}: field {k!r}")
        before = _params_from(d.get("before"), f"{source}: field 'before'")
        heads_raw = d.get("heads")
        if not isinstance(heads_raw, list):
            raise InputError(f"{source}: field 'heads' must be a list, got {type(heads_raw).__name__}")
        heads = []
        for i, h in enumerate(heads_raw):
            where = f"{source}: heads[{i}]"
            if not isinstance(h, dict):
                raise InputError(f"{where} must be an object, got {type(h).__name__}")
            missing = [k for k in _HEAD_KEYS if k not in h]
            if missing:
                raise InputError(f"{where} is missing {', '.join(missing)}")
            vals = {}
            for k in _HEAD_KEYS:
                vals[k] = _typed(h[k], int if k in ("layer", "head", "B", "S", "D") else float, f"{where}.{k}")
            heads.append(HeadCalibration(**vals))
        heads.sort(key=lambda h: (h.layer, h.head))
        try:
            return cls(**meta, before=before, heads=tuple(heads))  # read as the current version
        except ValueError as e:
            raise InputError(f"{source}: {e}") from None

    @classmethod
    def from_json(cls, path) -> "Calibration":
        path = Path(path)
        if not path.exists():
            raise MissingError(f"calibration file {path} does not exist")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: not valid JSON (truncated or corrupt?): {e}") from None
        return cls.from_dict(d, source=str(path))


def _span(v) -> str:
    lo, hi = min(v), max(v)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _typed(v, t, where):
    if t is int:
        if not is_int(v):
            raise InputError(f"{where} must be an integer, got {v!r}")
        return v
    if t is float:
        if is_int(v):
            v = float(v)
        if not isinstance(v, float) or not math.isfinite(v):
            raise InputError(f"{where} must be a finite number, got {v!r}")
        return v
    if not isinstance(v, t):
        raise InputError(f"{where} must be a {t.__name__}, got {v!r}")
    return v


def _params_from(d, where) -> HCCSParams:
    if not isinstance(d, dict) or any(k not in d for k in ("B", "S", "D")):
        raise InputError(f"{where} must be an object with B, S, D")
    return HCCSParams(*(_typed(d[k], int, f"{where}.{k}") for k in ("B", "S", "D")))


def _validate(c: Calibration) -> None:
    for k, t in _META_TYPES.items():
        v = getattr(c, k)
        if t is float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InputError(f"{k} must be a finite number, got {v!r}")
        elif t is int:
            if not is_int(v):
                raise InputError(f"{k} must be an integer, got {v!r}")
        elif not isinstance(v, t):
            raise InputError(f"{k} must be a {t.__name__}, got {v!r}")
    for k in ("seq_len", "n_layers", "n_heads", "samples", "rows", "candidates"):
        if getattr(c, k) < 1:
            raise InputError(f"{k} must be >= 1, got {getattr(c, k)}")
    if c.method not in METHODS:
        raise InputError(f"method {c.method!r} is not one of {METHODS}")
    if c.granularity not in GRANULARITIES:
        raise InputError(f"granularity {c.granularity!r} is not one of {GRANULARITIES}")
    if c.target not in TARGETS:
        raise InputError(f"target {c.target!r} is not one of {TARGETS}")
    if not isinstance(c.before, HCCSParams):
        raise InputError("before must be HCCSParams")
    bad = c.before.violations(c.seq_len)
    if bad:
        raise InputError(f"'before' params invalid for seq_len={c.seq_len}: {'; '.join(bad)}")
    _validate_heads(c)


def _validate_heads(c: Calibration) -> None:
    """One entry per (layer, head), in order, each valid for the target, with a finite KL."""
    if not isinstance(c.heads, tuple) or not all(isinstance(h, HeadCalibration) for h in c.heads):
        raise InputError("heads must be a tuple of HeadCalibration")
    seen = set()
    for h in c.heads:
        key = (h.layer, h.head)
        if not (0 <= h.layer < c.n_layers and 0 <= h.head < c.n_heads):
            raise InputError(f"head entry (layer {h.layer}, head {h.head}) outside {c.n_layers} layers x {c.n_heads} heads")
        if key in seen:
            raise InputError(f"duplicate entry for layer {h.layer}, head {h.head}")
        seen.add(key)
        bad = target_violations(h.params, c.seq_len, c.target)
        if bad:
            raise InputError(f"layer {h.layer}, head {h.head}: params (B={h.B}, S={h.S}, D={h.D}) invalid for seq_len={c.seq_len}"
                             f" and target {c.target}: {'; '.join(bad)}")
        if not (h.scale > 0 and math.isfinite(h.scale)):
            raise InputError(f"layer {h.layer}, head {h.head}: scale must be finite and > 0, got {h.scale!r}")
        for k in ("kl_before", "kl_after"):
            v = getattr(h, k)
            # q is floored at 2**-16 where HCCS outputs 0, so it may sum to just over 1 and the KL
            # dip below 0, by at most log(1 + n * 2**-16)
            if not (math.isfinite(v) and v >= -math.log1p(c.seq_len * 2.0 ** -16) - 1e-9):
                raise InputError(f"layer {h.layer}, head {h.head}: {k} must be a finite KL >= 0, got {v!r}")
    want = {(l, h) for l in range(c.n_layers) for h in range(c.n_heads)}
    missing = sorted(want - seen)
    if missing:
        shown = ", ".join(f"(layer {l}, head {h})" for l, h in missing[:5])
        raise InputError(f"{len(missing)} head(s) missing: {shown}{' ...' if len(missing) > 5 else ''}")
    if list(c.heads) != sorted(c.heads, key=lambda h: (h.layer, h.head)):
        raise InputError("heads must be ordered by (layer, head)")
    if c.granularity != "head":
        groups = {}
        for h in c.heads:
            groups.setdefault(h.layer if c.granularity == "layer" else 0, set()).add((h.B, h.S, h.D))
        for g, ps in groups.items():
            if len(ps) > 1:
                where = f"layer {g}" if c.granularity == "layer" else "the model"
                raise InputError(f"granularity {c.granularity!r} but {where} has {len(ps)} different parameter sets")


