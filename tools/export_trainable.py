#!/usr/bin/env python
"""Write a checkpoint's trainable weights only: no frozen trunk, no optimizer state.

The export lives in :mod:`hst_mm.engine.trainable_export` (what is kept, how it loads); this
script runs it from a checkout::

    python tools/export_trainable.py work_dirs/RUN/iter_90000.pth hst_maskrcnn.pth
    # writes hst_maskrcnn-<sha256[:8]>.pth (--no-hash: hst_maskrcnn.pth)
"""

import sys
from pathlib import Path

# The checkout first, so that its hst_mm is the one used, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hst_mm  # noqa: E402,F401  registers HST, allow-lists checkpoint types
from hst_mm.engine.trainable_export import main  # noqa: E402

if __name__ == '__main__':
    main()
