"""Workshop exercises: every numbered notebook ends with exercises whose solutions exist and run.

Each `notebooks/solutions/NN_exK.py` is run on its own (as `%load` would paste it) in quick mode,
in a subprocess with its own timeout, from the notebooks folder (where the notebooks run).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOLUTIONS = sorted((NOTEBOOKS / "solutions").glob("*.py"))
NUMBERED = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
SOLUTION_NAME = re.compile(r"^(\d\d)_ex(\d+)\.py$")
TIMEOUT_S = 240


def test_there_is_something_to_check():
    assert len(NUMBERED) >= 2 and len(SOLUTIONS) >= 3


@pytest.mark.parametrize("nb_path", NUMBERED, ids=[p.stem[:2] for p in NUMBERED])
def test_notebook_ends_with_exercises_that_load_existing_solutions(nb_path):
    nb = nbformat.read(nb_path, as_version=4)
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and last.source.lstrip().startswith("## Exercises"), \
        f"{nb_path.name} must end with a markdown cell headed '## Exercises'"
    text = "\n".join(c.source for c in nb.cells)
    loads = re.findall(r"%load (solutions/\S+\.py)", text)
    assert 2 <= len(set(loads)) <= 3, f"{nb_path.name}: 2-3 exercises with a %load solution each, found {loads}"
    for rel in loads:
        assert (NOTEBOOKS / rel).is_file(), f"{nb_path.name} loads {rel}, which does not exist"
    nn = nb_path.name[:2]
    mine = {f"solutions/{p.name}" for p in SOLUTIONS if p.name.startswith(nn + "_")}
    assert mine == set(loads), f"{nb_path.name}: solutions on disk {sorted(mine)} vs loaded {sorted(loads)}"


@pytest.mark.parametrize("sol", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solution_belongs_to_a_notebook(sol):
    m = SOLUTION_NAME.match(sol.name)
    assert m, f"{sol.name}: solutions are named NN_exK.py"
    assert any(p.name.startswith(m.group(1) + "_") for p in NUMBERED), f"{sol.name}: no notebook {m.group(1)}_*.ipynb"


@pytest.mark.parametrize("sol", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solution_runs_in_quick_mode(sol):
    env = dict(os.environ, HCCS_LAB_QUICK="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    try:
        done = subprocess.run([sys.executable, str(sol)], cwd=NOTEBOOKS, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{sol.name} did not finish within {TIMEOUT_S}s in quick mode")
    assert done.returncode == 0, f"{sol.name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
    assert done.stdout.strip(), f"{sol.name} printed nothing: a solution should show its answer"


def test_start_here_maps_every_numbered_notebook():
    nb = nbformat.read(NOTEBOOKS / "00_start_here.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    missing = [p.name for p in NUMBERED if f"`{p.name}`" not in text]
    assert not missing, f"00_start_here's map lacks {missing}"
