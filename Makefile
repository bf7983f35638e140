# hst_mm: `make demo` and `make test` are all the set-up a new user needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test demo toy-data clean-venv

## install: the pinned OpenMMLab stack in ./.venv (mmcv built once, then cached)
install:
	bash tools/setup_env.sh

## test: set up, then run the whole test suite
test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

## toy-data: generate the small COCO-format and ADE20K-layout sets under data/toy/
toy-data: install
	$(PY) tools/make_toy_data.py

## demo: set up, generate toy data, train and evaluate HST on it (CPU)
demo: install
	bash tools/demo.sh

## clean-venv: remove ./.venv (the cached mmcv wheel under ~/.cache/hst_mm stays)
clean-venv:
	rm -rf $(VENV)
