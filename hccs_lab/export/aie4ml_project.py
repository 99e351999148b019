"""Export calibrated heads as an aie4ml project, through aie4ml's own `from_onnx(...).write()`.

    manifest = export_aie4ml("proj/", heads, seq_len=128, variant="u8-clb", layout="linear")

Several heads, one project. aie4ml's default AIE-only flow (AIEConfig Target "aie": graph,
kernels, Makefile for the x86 and AIE simulators) accepts any number of independent graph inputs
and outputs, so every head is its own DequantizeLinear -> Softmax -> QuantizeLinear ->
DequantizeLinear chain in one ONNX graph and one project: one parameters.h struct, one kernel
instance (CAS_NUM tiles splitting the rows) and its own PLIO ports per head. Only aie4ml's
Target "hardware" flow (PL data movers plus host code) is limited to one graph input and output
(`system_plan.build_system_io` refuses two heads); hccs-lab exports the AIE-only flow, and a
hardware build would take one project per head. One project with N chains rather than N
projects keeps one placement for all heads (no two heads claim the same tile) and one manifest.

Every rule aie4ml enforces is checked before aie4ml is called (see `rules.py`), so a refused
head gets an error naming the rule, the head and the numbers. The project is written into a
temporary sibling folder and renamed into place, so DIR is either the previous export or the new
one, never half of each (a user's own files in a previous export are kept). DIR/hccs_export.json
(the manifest) maps each head to its ONNX node, aie4ml instance, parameters.h struct and ports.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..core.params import split_variant
from ..errors import InputError, InputTypeError, MissingError, ToolError
from .onnx_graph import HeadNames, build_model, input_frac
from .project_files import MANIFEST, instance_structs, port_windows, read_struct
from .rules import INV_SHIFT, LAYOUTS, TILED_OUTER, aie4ml_violations, layout_violation

DEFAULT_PART = "xilinx_vek280_base_202520_1"  # VEK280, AIE-ML; aie4ml also takes vck190 / xcve2802 parts
# Top-level entries of a project aie4ml writes (either flow) or the AMD tools add when run there:
# re-exporting replaces these; anything else in a previous export is carried over.
AIE4ML_ENTRIES = {
    "Makefile", "aie.cfg", "app.cpp", "aie_pipeline.json", "src", "data", "host", "pl", "system.cfg",
    "x86simulator_output", "aiesimulator_output", "Work", ".Xil", "libadf.a", "Map_Report.csv",
    "AIECompiler.log", "x86simulator.log", "aiesimulator.log", "pl_sample_counts", "xnwOut", "sol.db",
    MANIFEST,
}


def _aie4ml():
    try:
        import aie4ml
    except ImportError as e:  # it is a dependency of hccs-lab; a broken install should say so
        raise MissingError(f"aie4ml is not importable ({e}): install hccs-lab's dependencies "
                           "(`make setup`, or pip install -c constraints.txt 'aie4ml[onnx]==0.2.1')") from None
    return aie4ml


def _head_key(h: dict) -> str:
    return f"{h['layer']}:{h['head']}"


def select_heads(calibration, heads="all", seq_len: int | None = None) -> list[dict]:
    """The heads to export from a calibration (a dict or a JSON path): "all", "L:H,L:H" or [(L, H), ...].

    Errors: a calibration whose seq_len differs from `seq_len`, heads the calibration does not
    hold. Returns dicts with layer, head, B, S, D, scale.
    """
    source = "the calibration"
    if isinstance(calibration, (str, os.PathLike)):
        source = str(calibration)
        from ..calibrate.calibration import Calibration

        calibration = Calibration.from_json(calibration).to_dict()  # strict: corrupt files get a clear error
    elif hasattr(calibration, "to_dict"):
        calibration = calibration.to_dict()
    cal_n = calibration.get("seq_len")
    if seq_len is not None and cal_n is not None and int(cal_n) != int(seq_len):
        raise InputError(f"{source} was calibrated for seq_len {cal_n}, not --seq-len {seq_len}: HCCS parameters "
                         f"depend on the row length; recalibrate with --seq-len {seq_len} or export with "
                         f"--seq-len {cal_n}")
    table = {(int(h["layer"]), int(h["head"])): h for h in calibration.get("heads", [])}
    if not table:
        raise InputError(f"{source} holds no heads")
    if heads == "all" or heads is None:
        keys = sorted(table)
    else:
        if isinstance(heads, str):
            try:
                keys = [tuple(int(v) for v in item.split(":")) for item in heads.split(",") if item.strip()]
            except ValueError:
                raise InputError(f"heads must be 'all' or 'L:H,L:H,...', got {heads!r}") from None
        else:
            keys = [tuple(int(v) for v in k) for k in heads]
        if any(len(k) != 2 for k in keys):
            raise InputError(f"heads must be 'all' or 'L:H,L:H,...', got {heads!r}")
        unknown = [f"{L}:{H}" for L, H in keys if (L, H) not in table]
        if unknown:
            layers = sorted({L for L, _ in table})
            heads_per = sorted({H for _, H in table})
            raise InputError(f"unknown heads {', '.join(unknown)}: {source} holds layers {layers[0]}-{layers[-1]}, "
                             f"heads {heads_per[0]}-{heads_per[-1]}")
    out = []
    for k in keys:
        h = table[k]
        out.append({"layer": k[0], "head": k[1], "B": int(h["B"]), "S": int(h["S"]), "D": int(h["D"]),
                    "scale": None if h.get("scale") is None else float(h["scale"])})
    return out


def _normalise_heads(heads) -> list[dict]:
    out = []
    for h in heads:
        if not isinstance(h, dict):
            raise InputTypeError(f"each head is a dict with layer, head, B, S, D (and scale), got {type(h).__name__}")
        missing = [k for k in ("layer", "head", "B", "S", "D") if k not in h]
        if missing:
            raise InputError(f"head {h!r} lacks {', '.join(missing)}")
        out.append({"layer": int(h["layer"]), "head": int(h["head"]), "B": int(h["B"]), "S": int(h["S"]),
                    "D": int(h["D"]), "scale": None if h.get("scale") is None else float(h["scale"])})
    if not out:
        raise InputError("no heads to export")
    seen = set()
    for h in out:
        if (h["layer"], h["head"]) in seen:
            raise InputError(f"head {_head_key(h)} is listed twice")
        seen.add((h["layer"], h["head"]))
    return out


def check_heads(heads: list[dict], seq_len: int, layout: str) -> None:
    """InputError naming every head aie4ml would refuse, with the rule and its numbers."""
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise InputError(f"seq_len must be a positive integer, got {seq_len!r}")
    layout_bad = layout_violation(int(seq_len), layout)
    if layout_bad:  # one message for the length, not one per head
        raise InputError(f"aie4ml refuses seq_len {seq_len}: {layout_bad}")
    bad = []
    for h in heads:
        v = aie4ml_violations(h, seq_len, layout)
        if v:
            bad.append(f"head {_head_key(h)} (B={h['B']}, S={h['S']}, D={h['D']}): " + "; ".join(v))
    if bad:
        raise InputError(f"{len(bad)} of {len(heads)} heads break aie4ml's rules (recalibrate with "
                         f"--target aie4ml): " + " | ".join(bad))


def _prepare_inputs(inputs, heads: list[dict], seq_len: int) -> dict[str, np.ndarray] | None:
    """{ONNX input name: int8 [N, seq_len]}: one array for every head, [H, N, n], or a dict by node / "L:H"."""
    if inputs is None:
        return None
    names = [HeadNames(h["layer"], h["head"]) for h in heads]
    if isinstance(inputs, dict):
        by = {}
        for nm, h in zip(names, heads):
            for key in (nm.softmax, _head_key(h), nm.input):
                if key in inputs:
                    by[nm.input] = inputs[key]
                    break
            else:
                raise InputError(f"inputs hold no rows for head {_head_key(h)} (keys: {nm.softmax} or {_head_key(h)})")
    else:
        arr = np.asarray(inputs)
        if arr.ndim == 3:
            if arr.shape[0] != len(heads):
                raise InputError(f"inputs [H, N, n] must hold one block per exported head: {arr.shape[0]} blocks "
                                 f"for {len(heads)} heads")
            by = {nm.input: arr[i] for i, nm in enumerate(names)}
        else:
            by = {nm.input: arr for nm in names}
    out = {}
    for name, a in by.items():
        a = np.asarray(a)
        if a.dtype != np.int8:
            raise InputTypeError(f"inputs must be int8 rows (quantize the logits first, e.g. with "
                                 f"hccs_lab.quantize_logits), got {a.dtype}")
        if a.ndim != 2 or a.shape[1] != seq_len or a.shape[0] < 1:
            raise InputError(f"inputs for {name} must be int8 [rows, {seq_len}], got shape {a.shape}")
        out[name] = a
    counts = {a.shape[0] for a in out.values()}
    if len(counts) != 1:
        raise InputError(f"every head's inputs must hold the same number of rows, got {sorted(counts)}")
    return out


def _resolve_rows(rows, inputs: dict | None, seq_len: int, layout: str) -> tuple[int, int]:
    """(rows per inference, iterations)."""
    n_in = None if inputs is None else next(iter(inputs.values())).shape[0]
    if rows is None:
        rows = seq_len if n_in is None or n_in % seq_len == 0 else n_in
    if not isinstance(rows, (int, np.integer)) or rows < 1:
        raise InputError(f"rows must be a positive integer, got {rows!r}")
    rows = int(rows)
    if layout == "tiled" and rows % TILED_OUTER:
        raise InputError(f"rows = {rows} is not a multiple of {TILED_OUTER}: aie4ml's tiled layout processes rows in "
                         f"{TILED_OUTER}-row bands; use --rows {-(-rows // TILED_OUTER) * TILED_OUTER} or the linear layout")
    if n_in is not None and n_in % rows:
        raise InputError(f"inputs hold {n_in} rows, not a whole number of --rows {rows} (one graph input is "
                         f"[rows, seq_len] per iteration): pad them or pick --rows dividing {n_in}")
    return rows, (1 if n_in is None else n_in // rows)


def check_out_dir(out_dir) -> bool:
    """True when DIR holds a previous export, False when it is new or empty; InputError otherwise.

    A previous export is one with our manifest. Re-exporting replaces what aie4ml and the AMD
    tools write there (AIE4ML_ENTRIES: stale sources, inputs or simulator outputs would mislead)
    and carries anything else (a user's notes, logs) over unchanged.
    """
    d = Path(out_dir)
    if not d.exists():
        return False
    if not d.is_dir():
        raise InputError(f"--out {d} is a file; give a directory for the aie4ml project")
    entries = sorted(p.name for p in d.iterdir())
    if not entries:
        return False
    if MANIFEST not in entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise InputError(f"--out {d} holds files that are not an hccs-lab aie4ml export ({shown}); export into a "
                         f"new or empty directory, or one a previous `hccs-lab export aie4ml` wrote")
    return True


def aie4ml_config(heads: list[dict], layout: str, use_clb: bool, iterations: int, part: str) -> dict:
    """The aie4ml configuration dict: HCCS directives per Softmax node (aie4ml's default is the exact exp)."""
    return {
        "Part": part,
        "AIEConfig": {"Iterations": int(iterations)},
        "LayerDirectives": {
            HeadNames(h["layer"], h["head"]).softmax: {
                "approximation": "hccs",
                "layout": layout,
                "hccs": {"B": h["B"], "S": h["S"], "Dmax": h["D"], "inv_shift": INV_SHIFT, "use_clb": bool(use_clb)},
            }
            for h in heads
        },
    }


def _manifest(tmp: Path, heads, variant, layout, seq_len, rows, iterations, part, wrote_inputs, version) -> dict:
    from hccs_lab import __version__ as hccs_version

    structs = instance_structs(tmp)
    entries = []
    for h in heads:
        nm = HeadNames(h["layer"], h["head"])
        inst = f"{nm.softmax}_aie"
        if inst not in structs:
            raise ToolError(f"aie4ml wrote no Softmax instance {inst} for node {nm.softmax} (found {sorted(structs)})")
        st = read_struct(tmp, structs[inst])
        if (set(st.B), set(st.S), set(st.Dmax)) != ({h["B"]}, {h["S"]}, {h["D"]}):
            raise ToolError(f"{structs[inst]} in parameters.h holds B={st.B}, S={st.S}, Dmax={st.Dmax}, "
                            f"not head {_head_key(h)}'s ({h['B']}, {h['S']}, {h['D']})")
        entries.append({
            "layer": h["layer"], "head": h["head"], "node": nm.softmax, "B": h["B"], "S": h["S"], "D": h["D"],
            "scale": h["scale"], "input_frac": input_frac(h["scale"]),
            "input": nm.input, "output": nm.output, "instance": inst, "struct": structs[inst],
            "tiles": st.cas_num, "rows_per_tile": st.rows,
            "input_ports": [w.port for w in port_windows(tmp, nm.input, "input")],
            "output_ports": [w.port for w in port_windows(tmp, nm.output, "output")],
        })
    out, recip = split_variant(variant)
    use_clb = recip == "clb"
    return {
        "target": "aie4ml", "aie4ml_version": version, "hccs_lab_version": hccs_version,
        "variant": variant, "output": out, "use_clb": use_clb, "inv_shift": INV_SHIFT,
        "seq_len": seq_len, "layout": layout, "rows": rows, "iterations": iterations, "part": part,
        "inputs_written": wrote_inputs, "heads": entries,
    }


def export_aie4ml(out_dir, heads, seq_len: int, variant: str, layout: str = "linear", rows: int | None = None,
                  inputs=None, part: str = DEFAULT_PART, project_name: str = "hccs_heads") -> dict:
    """Write an aie4ml project for `heads` at `out_dir` and return its manifest (also DIR/hccs_export.json).

    heads: dicts with layer, head, B, S, D and optionally scale (e.g. `select_heads(calibration)`).
    seq_len: keys per row (the softmax axis); variant: i16-div | u8-div | i16-clb | u8-clb;
    layout: "linear" (aie4ml's softmax_i8) or "tiled" (softmax_i8_tiled). rows: query rows per
    graph input (default seq_len). inputs: int8 rows written through aie4ml's `write_inputs` as
    the simulator's data/ifm_c*.txt: one [N, seq_len] array for every head, [H, N, seq_len], or a
    dict by node name / "L:H"; N must be a whole number of `rows` (N // rows iterations).
    Every aie4ml rule is checked first (InputError naming rule, head and numbers); a DIR holding
    anything but a previous export is refused. The manifest lists, per head, layer, head, node,
    B, S, D, scale and where aie4ml put it (instance, struct, ports).
    """
    out, recip = split_variant(variant)
    use_clb = recip == "clb"
    heads = _normalise_heads(heads)
    check_heads(heads, seq_len, layout)
    prepared = _prepare_inputs(inputs, heads, int(seq_len))
    rows, iterations = _resolve_rows(rows, prepared, int(seq_len), layout)
    dest = Path(out_dir)
    replacing = check_out_dir(dest)
    aie4ml = _aie4ml()

    model = build_model(heads, rows, int(seq_len), out)
    config = aie4ml_config(heads, layout, use_clb, iterations, part)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        t0 = time.perf_counter()
        try:
            project = aie4ml.from_onnx(model, config, output_dir=str(tmp), project_name=project_name)
            project.write()
            if prepared is not None:  # aie4ml takes (iterations, rows, n) per graph input
                project.write_inputs({k: v.reshape(iterations, rows, int(seq_len)) for k, v in prepared.items()})
        except (ValueError, RuntimeError, KeyError) as e:
            raise ToolError(f"aie4ml {aie4ml.__version__} refused the export: {e}") from e
        manifest = _manifest(tmp, heads, variant, layout, int(seq_len), rows, iterations, part,
                             prepared is not None, aie4ml.__version__)
        manifest["export_seconds"] = round(time.perf_counter() - t0, 3)
        from ..io import write_text

        write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes the folder private; the project is meant to be shared
        _swap_into_place(tmp, dest, replacing)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap_into_place(tmp: Path, dest: Path, replacing: bool) -> None:
    """Rename the finished project to dest. A previous export is moved aside first; what in it is
    not aie4ml's or the tools' output moves into the new project, then the rest is removed."""
    if dest.exists() and not replacing:  # an empty folder
        dest.rmdir()
    old = None
    if replacing:
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        dest.rename(old)
        for entry in old.iterdir():
            if entry.name not in AIE4ML_ENTRIES and not (tmp / entry.name).exists():
                entry.rename(tmp / entry.name)
    try:
        tmp.rename(dest)
    except BaseException:
        if old is not None:
            for entry in tmp.iterdir():  # put the carried-over entries back
                if entry.name not in AIE4ML_ENTRIES and not (old / entry.name).exists():
                    entry.rename(old / entry.name)
            old.rename(dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
