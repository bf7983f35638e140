#!/usr/bin/env python
"""Side-by-side cost of HST, full fine-tuning and the frozen-trunk probe.

The benchmark lives in :mod:`workshop.benchmark` (arguments and usage:
``workshop/benchmark/cli.py``, or ``--help``); this script runs it from a checkout, e.g.::

    python tools/analysis/benchmark.py --trunk vit_base_patch16_224 --img-size 512 \\
        --batch 2 --json bench.json
    python tools/analysis/benchmark.py CONFIG --interleave 3   # a config's backbone
"""

import sys
from pathlib import Path

# The checkout first, so that its hst_mm is the one benchmarked, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from workshop.benchmark.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
