# The two commands a newcomer needs: `make demo` (set up, then run the whole chain on an embedded default) and
# `make test` (set up, then run the test suite). Both create .venv and install everything on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision are pinned to the builds this project is tested with (a CUDA build that also runs on CPU).
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test lint bench clean runtime-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# The edge profile, as a device installs it: the runtime and ONNX Runtime, no PyTorch (tests/test_install_profiles.py
# builds the same venv itself; this target is for trying it by hand).
runtime-venv:
	rm -rf .venv-runtime && $(PYTHON) -m venv .venv-runtime
	.venv-runtime/bin/python -m pip install --quiet ".[cpu]"

demo: setup
	$(BIN)/srg-deploy demo --workdir demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: setup
	$(BIN)/python benchmarks/ort_vs_naive.py

clean:
	rm -rf demo .pytest_cache .venv-runtime .venv-triton
