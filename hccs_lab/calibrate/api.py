"""Calibrate every head of a captured bank (or one head's rows): the front door of hccs_lab.calibrate."""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from datetime import datetime, timezone
from typing import Iterable, Sequence

import numpy as np

from ..core.params import DEFAULT_TARGET, HCCSParams, check_target, max_base, target_mask
from ..core.relaxed import choose_scale
from ..errors import InputError
from .calibration import GRANULARITIES, METHODS, Calibration, HeadCalibration, is_int
from .gradient import polish, relax
from .grid import candidate_region, grid_search
from .objective import default_params, exact_kl, pool_stats, row_stats

SCALE_PERCENTILE = 99.0


def calibrate_rows(logits, mask, seq_len: int, method: str = "grid", scale: float | None = None,
                   scale_multipliers: Sequence[float] = (1.0,), B_max: int | None = None,
                   target: str = DEFAULT_TARGET):
    """Calibrate one head from its rows: returns (HCCSParams, scale, mean KL).

    `scale` defaults to `choose_scale(logits, mask, 99)`; every multiple of it in
    `scale_multipliers` is tried and the best (scale, params) is kept. The result satisfies
    `target`'s rules (`hccs_lab.core.params.target_violations`).
    """
    _check_method(method)
    base = choose_scale(logits, mask, percentile=SCALE_PERCENTILE) if scale is None else float(scale)
    best = None
    for mult in scale_multipliers:
        sc = base * float(mult)
        stats = row_stats(logits, mask, sc)
        res = _search(stats, seq_len, method, B_max, target)
        if best is None or res.kl < best[2]:
            best = (res.params, sc, res.kl)
    return best


def _search(stats, seq_len, method, B_max, target, relaxed=None):
    if method == "grid":
        return grid_search(stats, seq_len, B_max=B_max, target=target)
    rel = relaxed or relax([stats])[0]
    return polish(stats, seq_len, rel.u, rel.D, B_max=B_max, target=target)


def _check_method(method):
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")


def _check_granularity(granularity):
    if granularity not in GRANULARITIES:
        raise InputError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")


def fingerprint_texts(texts: Iterable[str]) -> str:
    """sha256 over the calibration texts (length-prefixed, in order): which data a calibration saw."""
    h = hashlib.sha256()
    for t in texts:
        b = str(t).encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return "sha256:" + h.hexdigest()


def _bank_fingerprint(bank) -> str:
    fp = getattr(bank, "fingerprint", None) or getattr(bank, "data_fingerprint", None)
    if fp is None and getattr(bank, "texts", None) is not None:
        fp = fingerprint_texts(bank.texts)
    return str(fp or "unknown")


def _positive_int(v, what: str) -> int:
    if not is_int(v) or v < 1:
        raise InputError(f"{what} must be a positive integer, got {v!r}")
    return v


def _scale_multipliers(scale_multipliers, granularity: str, method: str) -> tuple:
    mults = tuple(float(m) for m in scale_multipliers)
    if not mults or any(not (m > 0 and math.isfinite(m)) for m in mults):
        raise InputError(f"scale_multipliers must be positive numbers, got {scale_multipliers!r}")
    if len(mults) > 1 and method == "gradient":
        raise InputError("scale_multipliers search is only supported with method='grid'")
    if len(mults) > 1 and granularity != "head":
        raise InputError("scale_multipliers search is only supported for granularity='head'")
    return mults


def _head_rows(bank, seq_len: int) -> dict:
    """(layer, head) -> (logits, mask, base int8 scale), checked against seq_len."""
    out = {}
    for layer in range(int(bank.n_layers)):
        for head in range(int(bank.n_heads)):
            hr = bank[layer, head]
            logits, mask = np.asarray(hr.logits), np.asarray(hr.mask)
            if logits.shape[-1] > seq_len:
                raise InputError(f"layer {layer} head {head}: rows have {logits.shape[-1]} keys, more than seq_len={seq_len}")
            out[layer, head] = (logits, mask, choose_scale(logits, mask, percentile=SCALE_PERCENTILE))
    return out


def _per_head(rows: dict, seq_len, method, mults, B_max, target, bar) -> dict:
    """(layer, head) -> (params, scale, stats at that scale): each head searched on its own rows."""
    result = {}
    if method == "gradient":  # one batched relaxation for every head, then each head's integer polish
        stats = {k: row_stats(lg, m, sc) for k, (lg, m, sc) in rows.items()}
        for (k, st), rel in zip(stats.items(), relax(list(stats.values()))):
            result[k] = (_search(st, seq_len, method, B_max, target, rel).params, rows[k][2], st)
            bar.update(1)
        return result
    for k, (lg, m, base) in rows.items():
        best = None
        for mult in mults:
            st = row_stats(lg, m, base * mult)
            res = grid_search(st, seq_len, B_max=B_max, target=target)
            if best is None or res.kl < best[0]:
                best = (res.kl, res.params, base * mult, st)
        result[k] = best[1:]
        bar.update(1)
    return result


def _pooled(rows: dict, granularity, seq_len, method, B_max, target, bar) -> dict:
    """One parameter set per pool (a layer, or the model) over the pooled rows; each head keeps its scale."""
    stats = {k: row_stats(lg, m, sc) for k, (lg, m, sc) in rows.items()}
    bar.update(len(stats))
    pools = {}
    for k in rows:
        pools.setdefault(k[0] if granularity == "layer" else 0, []).append(k)
    pooled = [pool_stats([stats[k] for k in ks]) for ks in pools.values()]
    rel = relax(pooled) if method == "gradient" else [None] * len(pooled)
    result = {}
    for ks, st, r in zip(pools.values(), pooled, rel):
        params = _search(st, seq_len, method, B_max, target, r).params
        for k in ks:
            result[k] = (params, rows[k][2], stats[k])
        bar.update(len(ks))
    return result


def calibrate(bank, seq_len: int | None = None, granularity: str = "head", method: str = "grid",
              samples: int | None = None, progress: bool = True, scale_multipliers: Sequence[float] = (1.0,),
              data_fingerprint: str | None = None, B_max: int | None = None,
              target: str = DEFAULT_TARGET) -> Calibration:
    """Calibrate every head of a LogitBank; one entry per head whatever the granularity.

    `layer` and `global` choose one parameter set for the pooled rows of a layer / the model (each
    head keeps its own int8 scale), with the same objective; `kl_after` is then each head's own
    mean KL under the shared set. `samples` is recorded (default: bank.n_texts). Every result
    satisfies `target`'s rules ("aie4ml", the default, or "hccs-lab"), and the search is exact
    within them.
    """
    from tqdm.auto import tqdm

    from .. import __version__

    _check_granularity(granularity)
    _check_method(method)
    check_target(target)
    t0 = time.perf_counter()
    seq_len = _positive_int(int(getattr(bank, "seq_len")) if seq_len is None else seq_len, "seq_len")
    samples = _positive_int(int(getattr(bank, "n_texts")) if samples is None else samples, "samples")
    mults = _scale_multipliers(scale_multipliers, granularity, method)
    rows = _head_rows(bank, seq_len)
    bar = tqdm(total=len(rows) * (2 if granularity != "head" else 1), desc=f"calibrate {granularity}/{method}",
               disable=not progress, leave=False)
    if granularity == "head":
        result = _per_head(rows, seq_len, method, mults, B_max, target, bar)
    else:
        result = _pooled(rows, granularity, seq_len, method, B_max, target, bar)
    bar.close()

    before = default_params(seq_len)
    heads = []
    for k, (params, sc, st) in result.items():
        lg, m, base = rows[k]
        st_before = st if sc == base else row_stats(lg, m, base)
        kl = exact_kl(st, [[params.B, params.S, params.D]])[0]
        kl0 = exact_kl(st_before, [[before.B, before.S, before.D]])[0]
        heads.append(HeadCalibration(k[0], k[1], params.B, params.S, params.D, float(sc), float(kl0), float(kl)))
    top = max_base(seq_len) if B_max is None else min(max_base(seq_len), B_max)
    candidates = int(target_mask(candidate_region(top).cands, seq_len, target).sum())
    return Calibration(
        model=str(getattr(bank, "model_name", "unknown")),
        seq_len=seq_len,
        n_layers=int(bank.n_layers),
        n_heads=int(bank.n_heads),
        samples=samples,
        rows=int(sum(st.n_rows for _, _, st in result.values())),
        data_fingerprint=str(data_fingerprint or _bank_fingerprint(bank)),
        method=method,
        granularity=granularity,
        hccs_lab_version=str(__version__),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=float(time.perf_counter() - t0),
        candidates=candidates,
        before=before,
        heads=tuple(heads),
        target=target,
    )


@dataclass
class HeadChoice:
    layer: int
    head: int
    params: HCCSParams
    scale: float
    source: str  # where the parameters came from


def head_params(bank, layer: int = 1, head: int = 6, calibration_json=None) -> HeadChoice:
    """A head's parameters and int8 scale.

    From a calibration JSON (written by `hccs-lab calibrate`) when one is given and exists and its
    parameters are valid for the bank's n; otherwise the head is calibrated now on its captured
    rows (`hccs_lab.calibrate.calibrate_rows`, the same grid search, under a second).
    """
    rows = bank[layer, head]
    n = rows.n
    if calibration_json is not None and Path(calibration_json).exists():
        cal = Calibration.from_json(calibration_json)
        p = cal.params(layer, head)
        if p.is_valid(n):
            return HeadChoice(layer, head, p, cal.scale(layer, head), f"calibration file {calibration_json}")
    p, scale, kl = calibrate_rows(rows.logits, rows.mask, n)
    p.validate(n)
    return HeadChoice(layer, head, p, float(scale),
                      f"calibrated now on {len(rows)} captured rows (grid search, mean KL {kl:.4f})")
