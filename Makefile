# Two commands do all the set-up: `make demo` (main job) and `make test` (test suite).
# Both create or reuse the virtual environment .venv and install from constraints.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv data clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt timm
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pfedkit compare configs/demo.yaml --algos all --seeds 3 --workers 2 --overwrite --quiet

test: $(STAMP)
	$(PY) -m pytest

data:
	bash scripts/install_data.sh

clean:
	rm -rf $(VENV) results
