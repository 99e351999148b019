"""`hccs-lab kernel` and `hccs-lab emulate`, end to end through the CLI router."""
import json

import numpy as np
import pytest

from hccs_lab import HCCSParams, hccs_int
from hccs_lab.cli import main


def _calibration(tmp_path):
    from hccs_lab.calibrate import Calibration, HeadCalibration

    heads = tuple(HeadCalibration(layer=l, head=h, B=150 + 10 * l + h, S=2 + h, D=30 + l, scale=0.1,
                                  kl_before=0.5, kl_after=0.2) for l in range(2) for h in range(2))
    cal = Calibration(model="tiny", seq_len=64, n_layers=2, n_heads=2, samples=8, rows=100,
                      data_fingerprint="test", method="grid", granularity="head", hccs_lab_version="0",
                      created="2026-01-01T00:00:00Z", seconds=1.0, candidates=10,
                      before=HCCSParams(100, 1, 50), heads=heads)
    path = tmp_path / "cal.json"
    cal.to_json(path)
    return path


def test_kernel_from_calibration_then_emulate(tmp_path, capsys):
    cal = _calibration(tmp_path)
    out = tmp_path / "k"
    rc = main(["kernel", "--calibration", str(cal), "--layer", "1", "--head", "1", "--variant", "u8-clb",
               "--arch", "aie-mlv2", "--seq-len", "64", "--out", str(out)])
    assert rc == 0
    m = json.loads((out / "kernel.json").read_text())
    assert m["params"] == {"B": 161, "S": 3, "D": 31}  # layer 1, head 1 of the file
    from hccs_lab.aie.kernels import fastest_schedule

    assert (m["variant"], m["arch"], m["seq_len"]) == ("u8-clb", "aie-mlv2", 64)
    assert m["schedule"] == fastest_schedule("u8-clb", "aie-mlv2", 64) and "valid_len" not in m
    src = (out / m["files"]["source"]).read_text()
    assert "aie::mac" in src and "aie::reduce_max" in src and "clb(" in src

    x = np.random.default_rng(0).integers(-128, 128, size=(50, 64)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    rc = main(["emulate", "--kernel", str(out), "--input", str(tmp_path / "x.npy"),
               "--output", str(tmp_path / "p.npy"), "--report", str(tmp_path / "r.json")])
    assert rc == 0
    p = np.load(tmp_path / "p.npy")
    assert np.array_equal(p, hccs_int(x, HCCSParams(161, 3, 31), out="u8", recip="clb"))
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["clock_ghz"] == 1.25 and r["rows"] == 50
    assert r["gelem_per_s"] == pytest.approx(r["elements_per_cycle"] * 1.25, rel=1e-3)
    assert r["elements_per_cycle"] == pytest.approx(64 / r["cycles_per_row"], rel=1e-3)
    assert "estimate" in r["estimate"]


def test_kernel_with_direct_params_and_paper_schedule(tmp_path):
    out = tmp_path / "k"
    assert main(["kernel", "--B", "200", "--S", "3", "--D", "40", "--variant", "i16-div", "--arch", "aie-ml",
                 "--seq-len", "128", "--schedule", "paper", "--out", str(out)]) == 0
    m = json.loads((out / "kernel.json").read_text())
    assert m["schedule"] == "paper" and m["lanes"] == 32 and m["output_dtype"] == "int16"
    assert "#define HCCS_B 200" in (out / "hccs_params.h").read_text()


@pytest.mark.parametrize("argv, msg", [
    (["--B", "400", "--S", "3", "--D", "40", "--seq-len", "128"], "n*B"),
    (["--B", "100", "--S", "3", "--D", "40", "--seq-len", "100"], "multiple of 32"),
    (["--B", "10", "--S", "3", "--D", "40", "--seq-len", "64"], "B - S*D"),
    (["--B", "100", "--S", "3", "--seq-len", "64"], "--B, --S and --D"),
])
def test_kernel_bad_input(tmp_path, capsys, argv, msg):
    rc = main(["kernel", "--variant", "u8-clb", "--arch", "aie-ml", "--out", str(tmp_path / "k"), *argv])
    assert rc == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "k" / "kernel.json").exists()


def test_kernel_unknown_head_in_calibration(tmp_path, capsys):
    rc = main(["kernel", "--calibration", str(_calibration(tmp_path)), "--layer", "5", "--head", "0",
               "--variant", "u8-clb", "--arch", "aie-ml", "--seq-len", "64", "--out", str(tmp_path / "k")])
    assert rc == 2 and "(5, 0)" in capsys.readouterr().err


def test_emulate_bad_input(tmp_path, capsys):
    k = tmp_path / "k"
    assert main(["kernel", "--B", "100", "--S", "2", "--D", "30", "--variant", "u8-clb", "--arch", "aie-ml",
                 "--seq-len", "64", "--out", str(k)]) == 0
    base = ["emulate", "--kernel", str(k), "--output", str(tmp_path / "p.npy"), "--report", str(tmp_path / "r.json")]
    cases = [
        (np.zeros((4, 64), np.int16), "dtype int16"),
        (np.zeros((4, 32), np.int8), "[rows, 64]"),
        (np.zeros((64,), np.int8), "[rows, 64]"),
    ]
    for arr, msg in cases:
        np.save(tmp_path / "x.npy", arr)
        assert main([*base, "--input", str(tmp_path / "x.npy")]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "p.npy").exists() and not (tmp_path / "r.json").exists()
    # a directory that is not ours, and a foreign kernel.json
    other = tmp_path / "other"
    other.mkdir()
    np.save(tmp_path / "x.npy", np.zeros((4, 64), np.int8))
    args = ["emulate", "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "p.npy"),
            "--report", str(tmp_path / "r.json"), "--kernel", str(other)]
    assert main(args) == 2 and "no kernel.json" in capsys.readouterr().err
    (other / "kernel.json").write_text(json.dumps({"format": "something-else"}))
    assert main(args) == 2 and "not an hccs-lab kernel manifest" in capsys.readouterr().err
    (other / "kernel.json").write_text("{ truncated")
    assert main(args) == 2 and "not valid JSON" in capsys.readouterr().err


def test_emulate_with_valid_lengths(tmp_path, capsys):
    k = tmp_path / "k"
    assert main(["kernel", "--B", "150", "--S", "3", "--D", "30", "--variant", "u8-div", "--arch", "aie-ml",
                 "--seq-len", "64", "--valid-len", "--out", str(k)]) == 0
    assert json.loads((k / "kernel.json").read_text())["valid_len"] is True
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, size=(40, 64)).astype(np.int8)
    vl = rng.integers(0, 65, size=40)
    vl[:2] = [0, 64]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "vl.npy", vl)
    base = ["emulate", "--kernel", str(k), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "p.npy"),
            "--report", str(tmp_path / "r.json")]
    assert main([*base, "--valid-len", str(tmp_path / "vl.npy")]) == 0
    p = np.load(tmp_path / "p.npy")
    assert np.array_equal(p, hccs_int(x, HCCSParams(150, 3, 30), out="u8", recip="div", valid_len=vl))
    assert json.loads((tmp_path / "r.json").read_text())["valid_len"].endswith("vl.npy")
    (tmp_path / "p.npy").unlink()
    for arr, msg in [(vl[:10], "takes [40]"), (vl.astype(np.float32), "integers"), (vl + 65, "[0, 64]")]:
        np.save(tmp_path / "bad.npy", arr)
        assert main([*base, "--valid-len", str(tmp_path / "bad.npy")]) == 2
        assert msg in capsys.readouterr().err
    assert main(base) == 2 and "pass --valid-len" in capsys.readouterr().err
    assert main([*base, "--valid-len", str(tmp_path / "missing.npy")]) == 2
    assert "does not exist" in capsys.readouterr().err
    plain = tmp_path / "plain"
    assert main(["kernel", "--B", "150", "--S", "3", "--D", "30", "--variant", "u8-div", "--arch", "aie-ml",
                 "--seq-len", "64", "--out", str(plain)]) == 0
    assert main(["emulate", "--kernel", str(plain), "--input", str(tmp_path / "x.npy"), "--output",
                 str(tmp_path / "p.npy"), "--report", str(tmp_path / "r.json"), "--valid-len",
                 str(tmp_path / "vl.npy")]) == 2
    assert "without valid-length support" in capsys.readouterr().err
    assert not (tmp_path / "p.npy").exists()


def test_checked_in_example_kernels_match_the_emitter(tmp_path):
    """kernels/examples/ holds generated kernels for reading; they must be what the emitter emits now."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "kernels" / "examples"
    dirs = sorted(d for d in root.iterdir() if d.is_dir())
    assert len(dirs) >= 3 and any(json.loads((d / "kernel.json").read_text()).get("valid_len") for d in dirs)
    for d in dirs:
        m = json.loads((d / "kernel.json").read_text())
        out = tmp_path / d.name
        assert main(["kernel", "--B", str(m["params"]["B"]), "--S", str(m["params"]["S"]), "--D", str(m["params"]["D"]),
                     "--variant", m["variant"], "--arch", m["arch"], "--seq-len", str(m["seq_len"]),
                     "--schedule", m["schedule"], *(["--valid-len"] if m.get("valid_len") else []),
                     "--out", str(out)]) == 0
        for f in d.iterdir():
            if f.name != "kernel.json":
                assert (out / f.name).read_text() == f.read_text(), f"{d.name}/{f.name} is stale: regenerate it"
        fresh = json.loads((out / "kernel.json").read_text())
        fresh.pop("hccs_lab_version"), m.pop("hccs_lab_version")
        assert fresh == m
