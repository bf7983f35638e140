#!/usr/bin/env bash
# make demo: everything after `make install`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python tools/run_demo.py "$@"
