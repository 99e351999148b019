"""The results file of `hccs-lab qat` as tables: the accuracy rows a report or notebook shows."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError, InputTypeError
from ..io import atomic_open


PAPER_TABLE = {  # paper.md 5.2 / 5.4 (BERT-tiny and BERT-small on SST-2), validation accuracy
    "BERT-tiny SST-2": {"float32": 0.825, "hccs_direct": 0.619, "hccs_qat": 0.822,
                        "global": 0.817, "layer": 0.819, "head": 0.822},
    "BERT-small SST-2": {"float32": 0.893, "hccs_direct": 0.766, "hccs_qat": 0.878,
                         "global": 0.834, "layer": 0.842, "head": 0.878},
}


def results_table(results: dict) -> list[dict]:
    """Rows (source, float32, direct, after QAT, delta, global/layer/head) of ours next to the paper's."""
    ab = results.get("ablation", {})
    ours = {"source": f"ours: {results['model']} on RT{' (quick subset)' if results.get('quick') else ''}",
            "float32": results["float32"]["accuracy"], "hccs_direct": results["hccs_direct"]["accuracy"],
            "hccs_qat": results["hccs_qat"]["accuracy"],
            **{g: ab[g]["accuracy"] for g in ("global", "layer", "head") if g in ab}}
    rows = [ours] + [{"source": f"paper: {k}", **v} for k, v in PAPER_TABLE.items()]
    for r in rows:
        r["delta_qat"] = r["hccs_qat"] - r["float32"]
    return rows


def check_out_path(out) -> Path:
    """A writable results path, or ValueError naming what is wrong (before any work is done)."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; give a file name such as {out / 'results.json'}")
    if out.suffix.lower() != ".json":
        raise InputError(f"--out {out} must end in .json")
    parent = out.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"--out {out}: {parent} is not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"--out {out}: cannot write to {parent} ({e.strerror})") from None
    return out


def write_results(results: dict, out) -> Path:
    with atomic_open(out, "w") as f:
        json.dump(results, f, indent=1, default=_jsonable)
    return Path(out)


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise InputTypeError(f"cannot write {type(x).__name__} to JSON")


def summary_line(r: dict) -> str:
    parts = [f"{r['model']}{' (QUICK: subset, not an accuracy measurement)' if r['quick'] else ''}:",
             f"float32 {100 * r['float32']['accuracy']:.1f}%",
             f"HCCS direct {100 * r['hccs_direct']['accuracy']:.1f}% ({-r['hccs_direct']['drop_pp']:+.1f} pp)",
             f"HCCS after QAT {100 * r['hccs_qat']['accuracy']:.1f}% ({r['hccs_qat']['delta_pp']:+.1f} pp)"]
    if r.get("ablation"):
        parts.append("ablation " + ", ".join(
            f"{g} {100 * v['accuracy']:.1f}%" + (f" (sd {100 * v['accuracy_std']:.1f}, {len(v['seeds'])} seeds)"
                                                if v.get("accuracy_std") is not None else "")
            for g, v in r["ablation"].items()))
    parts.append(f"in {r['timings']['total_s']:.0f} s")
    return " ".join(parts)


def committed_results(model: str = "tiny") -> dict | None:
    """The committed full run `qat_<model>.json` (see `hccs_lab.io.committed_result`), or None when absent."""
    from ..io import committed_result

    path = committed_result(f"qat_{model}.json", required=False)
    return None if path is None else json.loads(path.read_text())
