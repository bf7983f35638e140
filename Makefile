# hst_mm: `make demo` and `make test` are all the set-up a new user needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# torchvision (default): mmcv as pure Python with hst_mm's operators, nothing compiled;
# compiled: mmcv's own C++ (and CUDA) operators, 10-25 minutes on 2 cores, cached.
MMCV_OPS ?= torchvision
export MMCV_OPS
# extras of pyproject.toml for `make install`, comma-separated (lora,tensorboard,analysis,dev)
HST_MM_EXTRAS ?=
export HST_MM_EXTRAS

# What the tests and lint need besides the runtime stack (pyproject.toml's extras).
DEV_EXTRAS := lora,tensorboard,analysis,dev

.PHONY: install install-dev test test-fast lint demo toy-data clean-venv

## install: the pinned OpenMMLab stack in ./.venv, runtime only (MMCV_OPS=compiled for mmcv's
## C++ operators; HST_MM_EXTRAS=lora,tensorboard,... for extras)
install:
	HST_MM_VENV=$(abspath $(VENV)) bash tools/setup_env.sh

## install-dev: install, plus the extras the tests and lint need
install-dev:
	HST_MM_VENV=$(abspath $(VENV)) HST_MM_EXTRAS=$(DEV_EXTRAS) bash tools/setup_env.sh

## test: set up (with the test extras), then run the whole test suite
test: install-dev
	$(PY) -m pytest tests $(PYTEST_ARGS)

## test-fast: the tests without subprocess training and installed-stack checks
test-fast: install-dev
	$(PY) -m pytest tests -m "not slow and not env" $(PYTEST_ARGS)

## lint: ruff check and format check (pyproject.toml)
lint: install-dev
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
