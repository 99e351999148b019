"""Reading and writing the files of an aie4ml project that hccs_lab needs, without aie4ml.

What an aie4ml 0.2.1 project (`from_onnx(...).write()`) holds, as far as we use it:

- `src/parameters.h`: one struct `L{k}Cfg` per Softmax instance (ROWS and COLS of one tile,
  CAS_NUM tiles, output_t, USE_CLB, LAYOUT_TILED, per-tile `B[]`, `S[]`, `Dmax[]` arrays);
- `src/top_graph.h` declares `softmax_hccs_graph<CfgK> <instance>;` and `app.cpp` instantiates
  `top_graph<L1Cfg, L2Cfg, ...>`: together they say which struct belongs to which instance
  (`<onnx node>_aie`);
- `aie_pipeline.json`: the physical plan's `io_ports`, each graph port's tensor and window
  (`staging`: logical_origin and tiling_dimension, innermost axis first);
- `x86simulator_output/data/y_p{port}.txt`: what the x86 simulator writes per output port,
  decimal values per iteration in the port's tile order, which aie4ml's reader parses back.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, MissingError

MANIFEST = "hccs_export.json"
SIM_OUTPUT_DIR = Path("x86simulator_output") / "data"
PLIO_BITS = 128  # the PLIO width aie4ml's app.cpp uses; only the line breaks of y_p files depend on it


def read_manifest(project_dir) -> dict:
    """DIR/hccs_export.json as a dict; MissingError when DIR is not an hccs-lab aie4ml export."""
    d = Path(project_dir)
    path = d / MANIFEST
    if not path.is_file():
        raise MissingError(f"{d} is not an hccs-lab aie4ml export: {MANIFEST} is missing "
                           f"(write one with `hccs-lab export aie4ml --out {d} ...`)")
    try:
        mf = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON: {e}") from None
    if mf.get("target") != "aie4ml" or not isinstance(mf.get("heads"), list):
        raise InputError(f"{path} is not an aie4ml export manifest (target {mf.get('target')!r})")
    return mf


def instance_structs(project_dir) -> dict[str, str]:
    """{aie4ml instance name: its parameters.h struct}, read from top_graph.h and app.cpp."""
    d = Path(project_dir)
    top = (d / "src" / "top_graph.h").read_text()
    app = (d / "app.cpp").read_text()
    m = re.search(r"top_graph<([^>]*)>\s+\w+\s*;", app)
    if not m:
        raise InputError(f"{d / 'app.cpp'}: no top_graph<...> instantiation found")
    actual = [a.strip() for a in m.group(1).split(",")]
    out = {}
    for cfg, inst in re.findall(r"softmax_hccs_graph<(Cfg\d+)>\s+(\w+)\s*;", top):
        out[inst] = actual[int(cfg[3:]) - 1]
    return out


@dataclass(frozen=True)
class StructInfo:
    """One parameters.h struct, the fields hccs_lab reads back."""

    name: str
    output_t: str
    rows: int  # rows one tile's kernel processes per call
    cols: int
    cas_num: int
    use_clb: bool
    tiled: bool
    inv_shift: int
    B: tuple
    S: tuple
    Dmax: tuple


def read_struct(project_dir, struct: str) -> StructInfo:
    """Parse `struct` out of the project's src/parameters.h."""
    path = Path(project_dir) / "src" / "parameters.h"
    text = path.read_text()
    m = re.search(r"struct\s+" + re.escape(struct) + r"\s*\{(.*?)\n\};", text, re.S)
    if not m:
        raise InputError(f"{path}: no struct {struct}")
    body = m.group(1)

    def field(pattern: str) -> str:
        f = re.search(pattern, body)
        if not f:
            raise InputError(f"{path}: struct {struct} has no field matching {pattern!r}")
        return f.group(1)

    def array(name: str) -> tuple:
        return tuple(int(v) for v in field(r"\b" + name + r"\[CAS_NUM\]\s*=\s*\{([^}]*)\}").split(","))

    def boolean(name: str) -> bool:
        return field(r"bool " + name + r"\s*=\s*(true|false)") == "true"

    return StructInfo(
        name=struct, output_t=field(r"using output_t\s*=\s*(\w+);"),
        rows=int(field(r"int ROWS\s*=\s*(\d+);")), cols=int(field(r"int COLS\s*=\s*(\d+);")),
        cas_num=int(field(r"int CAS_NUM\s*=\s*(\d+);")), use_clb=boolean("USE_CLB"),
        tiled=boolean("LAYOUT_TILED"), inv_shift=int(field(r"int INV_SHIFT\s*=\s*(\d+);")),
        B=array("B"), S=array("S"), Dmax=array("Dmax"),
    )


@dataclass(frozen=True)
class PortWindow:
    """One graph port's window over its [rows, cols] tensor (numpy order)."""

    port: int
    row0: int
    col0: int
    rows: int
    cols: int


def port_windows(project_dir, tensor: str, direction: str) -> list[PortWindow]:
    """The ports that carry `tensor` ("input" or "output"), ordered by port number."""
    path = Path(project_dir) / "aie_pipeline.json"
    plan = json.loads(path.read_text())["physical"]["plan"]
    out = []
    for p in plan["io_ports"]:
        if p["tensor"] != tensor or p["direction"] != direction:
            continue
        st = p["staging"]
        origin, tiling = st["logical_origin"], st["tiling_dimension"]
        if len(tiling) != 2:
            raise InputError(f"{path}: port {p['port']} of {tensor} is not 2-D ({tiling})")
        out.append(PortWindow(int(p["port"]), int(origin[1]), int(origin[0]), int(tiling[1]), int(tiling[0])))
    if not out:
        raise InputError(f"{path}: no {direction} port carries tensor {tensor!r}")
    return sorted(out, key=lambda w: w.port)


def write_sim_outputs(project_dir, windows: list[PortWindow], y: np.ndarray) -> list[Path]:
    """Write y [iterations, rows, cols] as the x86 simulator would: y_p{port}.txt per output port.

    Each file holds, per iteration, the port's window in row-major order (zeros outside the
    tensor), PLIO_BITS worth of values per line. Returns the paths written.
    """
    from ..io import write_text

    data_dir = Path(project_dir) / SIM_OUTPUT_DIR
    per_line = max(1, PLIO_BITS // (8 * y.dtype.itemsize))
    paths = []
    for w in windows:
        tile = np.zeros((y.shape[0], w.rows, w.cols), dtype=np.int64)
        part = y[:, w.row0:w.row0 + w.rows, w.col0:w.col0 + w.cols]
        tile[:, :part.shape[1], :part.shape[2]] = part
        flat = tile.reshape(-1, per_line) if tile.size % per_line == 0 else tile.reshape(-1, 1)
        text = "\n".join(" ".join(map(str, line)) for line in flat.tolist()) + "\n"
        paths.append(write_text(data_dir / f"y_p{w.port}.txt", text))
    return paths
