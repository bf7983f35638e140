# hst_mm: `make demo` and `make test` are all the set-up a new user needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# torchvision (default): mmcv as pure Python with hst_mm's operators, nothing compiled;
# compiled: mmcv's own C++ (and CUDA) operators, 10-25 minutes on 2 cores, cached.
MMCV_OPS ?= torchvision
export MMCV_OPS

.PHONY: install test test-fast lint demo toy-data clean-venv

## install: the pinned OpenMMLab stack in ./.venv (MMCV_OPS=compiled for mmcv's C++ operators)
install:
	bash tools/setup_env.sh

## test: set up, then run the whole test suite
test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

## test-fast: the tests without subprocess training and installed-stack checks
test-fast: install
	$(PY) -m pytest tests -m "not slow and not env" $(PYTEST_ARGS)

## lint: ruff check and format check (pyproject.toml)
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## toy-data: generate the small COCO-format and ADE20K-layout sets under data/toy/
toy-data: install
	$(PY) tools/make_toy_data.py

## demo: set up, generate toy data, train and evaluate HST on it (CPU)
demo: install
	bash tools/demo.sh

## clean-venv: remove ./.venv (cached wheels under ~/.cache/hst_mm stay)
clean-venv:
	rm -rf $(VENV)
