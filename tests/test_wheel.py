"""The package works installed from its wheel, not only as an editable checkout.

`pip wheel` builds hccs-lab; the wheel must carry the files the package reads at run time (the AIE
API shim and the adf.h stand-in), and a plain (non-editable) install of it, run from outside the
repository, must generate a kernel, emulate it and build it on the host with g++.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    # no build isolation: the venv's setuptools builds it, nothing is downloaded
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), str(ROOT)], check=True, capture_output=True, text=True)
    (wheel,) = (tmp / "dist").glob("hccs_lab-*.whl")
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True)
    return wheel, target, tmp


def test_wheel_carries_the_shim(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"hccs_lab/aie/shim/aie_api_shim.hpp", "hccs_lab/aie/shim/adf.h"} <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "notebooks/")) for n in names)


def test_installed_wheel_runs_kernel_emulate_and_host_build(installed, tmp_path):
    _, target, _ = installed
    env = dict(os.environ, PYTHONPATH=str(target))  # ahead of the editable install of the checkout
    work = tmp_path / "elsewhere"
    work.mkdir()

    def py(*args):
        return subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True)

    where = py("-c", "import hccs_lab; print(hccs_lab.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(target), where.stdout
    cli = ["-m", "hccs_lab.cli"]
    done = py(*cli, "kernel", "--B", "200", "--S", "3", "--D", "40", "--variant", "u8-clb", "--arch", "aie-ml",
              "--seq-len", "64", "--out", "k")
    assert done.returncode == 0, done.stderr
    x = np.random.default_rng(0).integers(-128, 128, (64, 64), dtype=np.int8)
    np.save(work / "x.npy", x)
    done = py(*cli, "emulate", "--kernel", "k", "--input", "x.npy", "--output", "y.npy", "--report", "r.json")
    assert done.returncode == 0, done.stderr
    assert json.loads((work / "r.json").read_text())["cycles_per_row"] > 0
    host = py("-c", "import numpy as np, hccs_lab.aie as A; from hccs_lab.aie.emit import emit; "
                    "from hccs_lab.aie.hostbuild import run_host, shim_dir; import hccs_lab; "
                    "k = A.load_kernel_dir('k'); x = np.load('x.npy'); "
                    "y = run_host(emit(k), x); np.save('y_host.npy', y); print(shim_dir())")
    assert host.returncode == 0, host.stderr
    assert Path(host.stdout.strip()).is_relative_to(target)
    from hccs_lab import HCCSParams, hccs_int

    want = hccs_int(x, HCCSParams(200, 3, 40), "u8", "clb")
    np.testing.assert_array_equal(np.load(work / "y.npy"), want)
    np.testing.assert_array_equal(np.load(work / "y_host.npy"), want)
