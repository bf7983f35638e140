#!/usr/bin/env python
"""Check hst_mm on a CUDA machine in a few minutes: operators, training speed, benchmark.

    python tools/gpu_check.py                         # on a CUDA machine, about 7 minutes
    python tools/gpu_check.py --device cpu --tiny --iters 2 --warmup 1   # smoke run on a CPU

The check lives in the workshop (:mod:`workshop.gpu_check`; what each part does: its
docstring, or ``--help``); this script runs it from a checkout.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: workshop, hst_mm

from workshop.gpu_check.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
