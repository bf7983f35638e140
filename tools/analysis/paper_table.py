#!/usr/bin/env python
"""The paper's COCO and ADE20K tables with your runs' numbers beside them.

The logic lives in :mod:`hst_mm.analysis.paper_table` (what it reads: its docstring); this
script runs it from a checkout, e.g.::

    python tools/analysis/paper_table.py work_dirs/mask-rcnn_hst-vit-b_fpn_amp-1x_coco \\
        work_dirs/upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512 [--json]
"""

import sys
from pathlib import Path

# The checkout first, so that its hst_mm (and paper_results.yaml) is the one used.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hst_mm.analysis.paper_table import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
