"""aie4ml export and aie4ml's own kernels on host: the real aie4ml 0.2.1, no mocks.

Each (variant, layout) project is exported once and its kernel built once (cached by content
hash), then many rows go through it: >= 50,000 per variant and layout, hard rows (ties, all-equal
rows, extremes) plus MiniLM's captured attention rows, against `hccs_int` and hccs-lab's own
emulator.
"""
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import aie4ml
from aie4ml.aie_types import AIEDataType
from aie4ml.op_impls.families.softmax.common import validate_hccs_params
from aie4ml.simulation import IOLayout, IOPortLayout, collect_outputs

from hccs_lab import HCCSParams, hccs_int
from hccs_lab.aie import emulate, generate
from hccs_lab.aie.hostbuild import NoCompiler, find_compiler
from hccs_lab.aie.testrows import hard_rows
from hccs_lab.export import aie4ml_violations, emulate_aie4ml, export_aie4ml, select_heads
from hccs_lab.export.hostbuild import build_node
from hccs_lab.export.project_files import instance_structs

try:
    find_compiler()
    HAVE_CXX = True
except NoCompiler:
    HAVE_CXX = False
needs_cxx = pytest.mark.skipif(not HAVE_CXX, reason="no C++ compiler on this machine: host build cannot run")

VARIANTS = ("i16-div", "u8-div", "i16-clb", "u8-clb")
LAYOUTS = ("linear", "tiled")
N = 64
ROWS_PER_CASE = 50_000
# one head per variant, each at an edge of aie4ml's region for n=64
PARAMS = {
    "i16-div": HCCSParams(511, 3, 127),  # n*B = 32704, just under 32767
    "u8-div": HCCSParams(131, 1, 127),   # n*(B - S*D) = 256 exactly: the smallest Z aie4ml allows
    "i16-clb": HCCSParams(300, 5, 50),
    "u8-clb": HCCSParams(258, 2, 127),   # Z >= 256 again, and the clb reciprocal overshoots up to 2x
}
HEADS = {v: [{"layer": 3, "head": 7, **PARAMS[v].as_dict(), "scale": 0.05}] for v in VARIANTS}


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """{(variant, layout): (project dir, manifest)}, every kernel built up front on 2 threads."""
    root = tmp_path_factory.mktemp("aie4ml")
    out = {}
    for v in VARIANTS:
        for layout in LAYOUTS:
            d = root / f"{v}_{layout}"
            x = hard_rows(N, 2 * N, seed=1)  # two iterations of [64, 64] through write_inputs
            out[v, layout] = d, export_aie4ml(d, HEADS[v], N, v, layout=layout, inputs=x)
    if HAVE_CXX:
        jobs = [(d, instance_structs(d)[mf["heads"][0]["instance"]]) for d, mf in out.values()]
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda job: build_node(*job), jobs))
    return out


@pytest.fixture(scope="module")
def minilm_rows():
    """Captured MiniLM attention rows at n=64 (every head), quantized to int8 with each head's scale."""
    from hccs_lab import choose_scale
    from hccs_lab.capture import capture_logits
    from hccs_lab.models import load

    texts = ["A gripping, beautifully shot film that never lets go of its characters.",
             "The plot is thin and the jokes fall flat long before the end.",
             "An uneven but often charming comedy about growing up in a small town.",
             "Not worth the ticket, not even for the soundtrack.",
             "It is smart, funny and moving, and the lead performance is a marvel.",
             "The director keeps the tension taut, but the script lets him down."]
    bank = capture_logits(load("minilm-l6"), texts, max_len=N, progress=False)
    rows = []
    for layer in range(6):
        for head in range(12):
            r = bank[layer, head]
            rows.append(r.int8(scale=choose_scale(r.logits, mask=r.mask)))
    return np.concatenate(rows)


def _struct_text(d, struct):
    text = (d / "src" / "parameters.h").read_text()
    return re.search(r"struct " + struct + r" \{(.*?)\n\};", text, re.S).group(1)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_export_round_trip(projects, variant, layout):
    d, mf = projects[variant, layout]
    p = PARAMS[variant]
    assert mf["target"] == "aie4ml" and mf["aie4ml_version"] == aie4ml.__version__ == "0.2.1"
    assert (mf["variant"], mf["seq_len"], mf["layout"]) == (variant, N, layout)
    head = mf["heads"][0]
    assert {k: head[k] for k in ("layer", "head", "node", "B", "S", "D", "scale")} == \
        {"layer": 3, "head": 7, "node": "softmax_l3_h7", "B": p.B, "S": p.S, "D": p.D, "scale": 0.05}
    assert json.loads((d / "hccs_export.json").read_text()) == mf
    # parameters.h holds our numbers, in the output type and reciprocal of the variant
    body = _struct_text(d, head["struct"])
    tiles = int(re.search(r"CAS_NUM = (\d+);", body).group(1))
    for name, value in (("B", p.B), ("S", p.S), ("Dmax", p.D)):
        values = re.search(name + r"\[CAS_NUM\] = \{([^}]*)\}", body).group(1)
        assert [int(v) for v in values.split(",")] == [value] * tiles
    out, recip = variant.split("-")
    assert f"using output_t = {'int16_t' if out == 'i16' else 'uint8_t'};" in body
    assert f"USE_CLB = {'true' if recip == 'clb' else 'false'};" in body
    assert f"LAYOUT_TILED = {'true' if layout == 'tiled' else 'false'};" in body
    assert "INV_SHIFT = 15;" in body and f"COLS = {N};" in body
    # aie4ml's own project JSON names our node and picked the HCCS kernel of the layout
    pipeline = json.loads((d / "aie_pipeline.json").read_text())
    assert [e["metadata"]["source_layer"] for e in pipeline["logical"]] == ["softmax_l3_h7"]
    want = "softmax.hccs.i8.v1" if layout == "linear" else "softmax.hccs.i8.tiled.v1"
    assert [e["variant_id"] for e in pipeline["execution"]] == [want]
    # the project's kernel sources are the wheel's, unmodified
    wheel = Path(aie4ml.__path__[0]) / "templates" / "nnet_utils" / "softmax"
    for name in ("softmax.cpp", "softmax.h"):
        assert (d / "src/kernels/softmax" / name).read_text() == (wheel / name).read_text()
    # write_inputs put our rows, in order, into the simulator's input files
    x = hard_rows(N, 2 * N, seed=1)
    ports = [p for p in pipeline["physical"]["plan"]["io_ports"] if p["direction"] == "input"]
    got = np.zeros((2, N, N), np.int64)
    for port in ports:
        (c0, r0), (tc, tr) = port["staging"]["logical_origin"], port["staging"]["tiling_dimension"]
        vals = np.array((d / "data" / f"ifm_c{port['port']}.txt").read_text().split(), np.int64)
        got[:, r0:r0 + tr, c0:c0 + tc] = vals.reshape(2, tr, tc)
    assert np.array_equal(got.reshape(-1, N), x)


@needs_cxx
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_aie4ml_kernels_on_host_equal_hccs_int(projects, minilm_rows, variant, layout):
    d, _ = projects[variant, layout]
    p = PARAMS[variant]
    x = np.concatenate([hard_rows(N, ROWS_PER_CASE, seed=7), minilm_rows])
    y, info = emulate_aie4ml(d, x, write_sim_output=False)
    out, recip = variant.split("-")
    ref = hccs_int(x, p, out=out, recip=recip)
    assert info["engine"] == "aie4ml-host" and info["node"] == "softmax_l3_h7"
    assert y.dtype == ref.dtype and y.shape == x.shape
    assert int((y != ref).any(axis=1).sum()) == 0, "rows differ from hccs_int"
    assert len(x) >= ROWS_PER_CASE + 1000
    emu, _ = emulate(generate(p, variant, "aie-ml", N).kernel, x)
    assert np.array_equal(y, emu), "aie4ml's kernel and hccs-lab's emulator disagree"
    # aie4ml's own reader parses the y_p*.txt files a host run writes (a slice: the reader is slow)
    part = x[:3001]
    y_part, _ = emulate_aie4ml(d, part)
    plan = json.loads((d / "aie_pipeline.json").read_text())["physical"]["plan"]
    outs = [IOPortLayout(q["direction"], int(q["port"]), q["tensor"], q["descriptor"], q["staging"],
                         AIEDataType.from_dict(q["dtype"])) for q in plan["io_ports"] if q["direction"] == "output"]
    read = collect_outputs(d, "x86", IOLayout(inputs={}, outputs={outs[0].tensor: outs}))[outs[0].tensor]
    assert read.shape == (-(-len(part) // N), N, N)
    assert np.array_equal(read.reshape(-1, N)[:len(part)], y_part)
    assert np.array_equal(y_part, y[:len(part)])


@needs_cxx
def test_tiled_kernel_at_a_length_linear_refuses(tmp_path):
    """n=80: not a multiple of 32 (the linear layout refuses), 10 microtile blocks per row for tiled."""
    p = HCCSParams(150, 1, 120)
    mf = export_aie4ml(tmp_path / "t80", [{"layer": 0, "head": 0, **p.as_dict()}], 80, "u8-clb", layout="tiled")
    x = hard_rows(80, 8003, seed=3)  # not a whole number of 80-row windows: the last one is padded
    y, info = emulate_aie4ml(tmp_path / "t80", x)
    assert mf["rows"] == 80 and info["iterations"] == 101
    assert np.array_equal(y, hccs_int(x, p, out="u8", recip="clb"))


def test_several_heads_share_one_project(tmp_path):
    heads = [{"layer": L, "head": H, "B": 200 + H, "S": 1, "D": 100, "scale": 0.1} for L in (0, 5) for H in (0, 11)]
    mf = export_aie4ml(tmp_path / "p", heads, 64, "i16-div")
    assert [h["node"] for h in mf["heads"]] == ["softmax_l0_h0", "softmax_l0_h11", "softmax_l5_h0", "softmax_l5_h11"]
    ports = [q for h in mf["heads"] for q in h["output_ports"]]
    assert len(set(ports)) == len(ports)  # every head its own PLIO outputs
    if HAVE_CXX:
        x = hard_rows(64, 500, seed=5)
        with pytest.raises(ValueError, match="holds 4 heads; pick one with --node"):
            emulate_aie4ml(tmp_path / "p", x)
        y, info = emulate_aie4ml(tmp_path / "p", x, node="5:11")
        assert info["node"] == "softmax_l5_h11"
        assert np.array_equal(y, hccs_int(x, HCCSParams(211, 1, 100)))


def test_rules_agree_with_aie4ml_own_validation():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(3000):
        n = int(rng.choice([32, 64, 96, 128, 256]))
        B, S, D = int(rng.integers(1, 700)), int(rng.integers(0, 128)), int(rng.integers(0, 128))
        try:
            validate_hccs_params({"B": B, "S": S, "Dmax": D}, cols=n, param_sets=1)
            theirs = True
        except ValueError:
            theirs = False
        assert (not aie4ml_violations({"B": B, "S": S, "D": D}, n, "linear")) == theirs, (B, S, D, n)
        checked += theirs
    assert checked > 100  # both sides of the boundary were sampled


def test_rejected_before_aie4ml_is_called(tmp_path):
    out = tmp_path / "never"
    head = {"layer": 2, "head": 4, "B": 40, "S": 1, "D": 36}
    with pytest.raises(ValueError, match=re.escape("n*(B - S*D) = 128 < 256 for n=32, B=40, S=1, D=36")) as e:
        export_aie4ml(out, [head], 32, "u8-div")
    assert "head 2:4" in str(e.value) and "--target aie4ml" in str(e.value)
    with pytest.raises(ValueError, match="cols \\* \\(B - S\\*Dmax\\) >= 256"):  # aie4ml agrees, in its words
        validate_hccs_params({"B": 40, "S": 1, "Dmax": 36}, cols=32, param_sets=1)
    with pytest.raises(ValueError, match="n = 80 is not a multiple of 32.*pad the rows to 96.*tiled"):
        export_aie4ml(out, [{"layer": 0, "head": 0, "B": 100, "S": 1, "D": 50}], 80, "i16-div")
    with pytest.raises(ValueError, match=r"n\*B = 32832 > 32767"):
        export_aie4ml(out, [{"layer": 0, "head": 0, "B": 513, "S": 1, "D": 50}], 64, "i16-div")
    with pytest.raises(ValueError, match=r"B - S\*D = 10 - 1\*20 = -10 < 0"):
        export_aie4ml(out, [{"layer": 0, "head": 0, "B": 10, "S": 1, "D": 20}], 64, "i16-div")
    with pytest.raises(ValueError, match="variant must be one of"):
        export_aie4ml(out, [{"layer": 0, "head": 0, "B": 100, "S": 1, "D": 50}], 64, "i8-div")
    with pytest.raises(ValueError, match="rows = 30 is not a multiple of 4"):
        export_aie4ml(out, [{"layer": 0, "head": 0, "B": 100, "S": 1, "D": 50}], 64, "i16-div", layout="tiled", rows=30)
    with pytest.raises(TypeError, match="int8"):
        export_aie4ml(out, [{"layer": 0, "head": 0, "B": 100, "S": 1, "D": 50}], 64, "i16-div",
                      inputs=np.zeros((64, 64), np.float32))
    with pytest.raises(ValueError, match="inputs hold 100 rows, not a whole number of --rows 64"):
        export_aie4ml(out, [{"layer": 0, "head": 0, "B": 100, "S": 1, "D": 50}], 64, "i16-div", rows=64,
                      inputs=np.zeros((100, 64), np.int8))
    assert not out.exists()  # nothing was written


def _calibration_file(path, cal: dict):
    from hccs_lab.calibrate import Calibration, HeadCalibration

    heads = tuple(HeadCalibration(h["layer"], h["head"], h["B"], h["S"], h["D"], h["scale"], 1.0, 0.5)
                  for h in cal["heads"])
    Calibration(model="m", seq_len=cal["seq_len"], n_layers=1 + max(h.layer for h in heads),
                n_heads=1 + max(h.head for h in heads), samples=1, rows=1, data_fingerprint="x", method="grid",
                granularity="head", hccs_lab_version="0", created="now", seconds=0.0, candidates=1,
                before=HCCSParams(254, 2, 127), target=cal["target"], heads=heads).to_json(path)


def test_calibration_selection_errors(tmp_path):
    cal = {"seq_len": 128, "target": "aie4ml",
           "heads": [{"layer": L, "head": H, "B": 100, "S": 1, "D": 60, "scale": 0.1} for L in range(2) for H in range(3)]}
    path = tmp_path / "cal.json"
    _calibration_file(path, cal)  # a path is read strictly, as a real calibration file
    with pytest.raises(ValueError, match="calibrated for seq_len 128, not --seq-len 64"):
        select_heads(path, "all", seq_len=64)
    with pytest.raises(ValueError, match="unknown heads 2:0, 1:7.*layers 0-1, heads 0-2"):
        select_heads(path, "0:1,2:0,1:7", seq_len=128)
    with pytest.raises(ValueError, match="'all' or 'L:H"):
        select_heads(path, "0-1", seq_len=128)
    assert [(h["layer"], h["head"]) for h in select_heads(path, "1:2,0:0", 128)] == [(1, 2), (0, 0)]
    assert len(select_heads(cal, "all", 128)) == 6


def test_output_directory_rules(tmp_path):
    head = [{"layer": 0, "head": 0, "B": 100, "S": 1, "D": 50}]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an hccs-lab aie4ml export \\(notes.txt\\)"):
        export_aie4ml(busy, head, 64, "i16-div")
    assert (busy / "notes.txt").read_text() == "mine"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        export_aie4ml(tmp_path / "afile", head, 64, "i16-div")
    # a previous export is replaced: none of aie4ml's old files survive, the user's own do
    d = tmp_path / "proj"
    first = export_aie4ml(d, [{"layer": 0, "head": h, "B": 100, "S": 1, "D": 50} for h in range(3)], 64, "i16-div",
                          inputs=np.zeros((64, 64), np.int8))
    assert len(first["heads"]) == 3 and len(list((d / "data").iterdir())) >= 3
    (d / "README.txt").write_text("my notes")
    mf = export_aie4ml(d, head, 64, "u8-clb")
    assert [h["node"] for h in mf["heads"]] == ["softmax_l0_h0"]
    pipeline = json.loads((d / "aie_pipeline.json").read_text())
    assert len(pipeline["logical"]) == 1 and not list((d / "data").iterdir())  # the old inputs are gone
    assert (d / "README.txt").read_text() == "my notes"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_calibrate_target_aie4ml_gives_heads_aie4ml_accepts():
    # every MiniLM head, calibrated for the aie4ml target, passes aie4ml's own parameter check; the
    # same rows calibrated for hccs-lab (no 256 rule) can only be as good or better, head by head
    from hccs_lab.calibrate import calibrate
    from hccs_lab.capture import capture_logits
    from hccs_lab.data import calibration_texts
    from hccs_lab.models import load

    n = 128
    bank = capture_logits(load("minilm-l6"), calibration_texts(8), max_len=n, max_rows_per_head=128, progress=False)
    cal = calibrate(bank, n, progress=False)  # default target
    assert cal.target == "aie4ml" and len(cal.heads) == 72
    for h in cal.heads:
        validate_hccs_params({"B": h.B, "S": h.S, "Dmax": h.D}, cols=n, param_sets=1)
    free = calibrate(bank, n, progress=False, target="hccs-lab")
    assert all(a.kl_after >= b.kl_after - 1e-12 for a, b in zip(cal.heads, free.heads))
    moved = sum((a.B, a.S, a.D) != (b.B, b.S, b.D) for a, b in zip(cal.heads, free.heads))
    assert moved > 0  # MiniLM has heads whose best hccs-lab point breaks aie4ml's rule
    for b in free.heads:
        assert (n * (b.B - b.S * b.D) < 256) == bool(aie4ml_violations(b, n))


@needs_cxx
def test_cli_export_then_emulate_the_project(tmp_path):
    from hccs_lab.cli import main

    cal = tmp_path / "cal.json"
    heads = [{"layer": 0, "head": 1, **PARAMS["u8-clb"].as_dict(), "scale": 0.05},
             {"layer": 2, "head": 5, **PARAMS["i16-clb"].as_dict(), "scale": 0.07}]
    cal.write_text(json.dumps({"seq_len": N, "heads": heads}))
    proj = tmp_path / "proj"
    # a malformed calibration is refused with our error, exit 2 (not a traceback)
    assert main(["export", "aie4ml", "--out", str(proj), "--seq-len", str(N), "--variant", "u8-clb",
                 "--calibration", str(cal)]) == 2
    from hccs_lab.calibrate import Calibration, HeadCalibration

    good = Calibration(model="m", seq_len=N, n_layers=3, n_heads=6, samples=1, rows=1, data_fingerprint="x",
                       method="grid", granularity="head", hccs_lab_version="0", created="now", seconds=0.0,
                       candidates=1, before=HCCSParams(254, 2, 127), target="aie4ml",
                       heads=tuple(HeadCalibration(l, h, *PARAMS["u8-clb"].as_dict().values(), 0.05, 1.0, 0.5)
                                   for l in range(3) for h in range(6)))
    good.to_json(cal)
    assert main(["export", "aie4ml", "--out", str(proj), "--seq-len", str(N), "--variant", "u8-clb",
                 "--calibration", str(cal), "--heads", "0:1,2:5"]) == 0
    mf = json.loads((proj / "hccs_export.json").read_text())
    assert [h["node"] for h in mf["heads"]] == ["softmax_l0_h1", "softmax_l2_h5"]
    x = hard_rows(N, 300, seed=4)
    np.save(tmp_path / "x.npy", x)
    args = ["emulate", "--kernel", str(proj), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
            "--report", str(tmp_path / "r.json")]
    assert main(args) == 2  # two heads: --node is required
    assert main(args + ["--node", "2:5"]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["engine"] == "aie4ml-host" and rep["node"] == "softmax_l2_h5"
    assert {"cycles_per_row", "elements_per_cycle", "clock_ghz", "gelem_per_s"} <= set(rep)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), hccs_int(x, PARAMS["u8-clb"], "u8", "clb"))
    # --B/--S/--D that break aie4ml's rule: the rule and the numbers, before aie4ml runs
    assert main(["export", "aie4ml", "--out", str(tmp_path / "p2"), "--seq-len", "32", "--variant", "u8-div",
                 "--B", "40", "--S", "1", "--D", "36"]) == 2
    assert not (tmp_path / "p2").exists()


def test_corrupt_calibration_file_is_a_clear_error(tmp_path):
    path = tmp_path / "cal.json"
    path.write_text('{"schema": "hccs-lab/calibration", "heads": [')
    with pytest.raises(ValueError, match="not valid JSON"):
        select_heads(path, "all", seq_len=128)
