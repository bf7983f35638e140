#!/usr/bin/env python
"""Generate the toy datasets under data/toy: the command line of workshop.toy_data.

    python tools/make_toy_data.py [--out DIR] [--seed 0] [--num-train 64]
                                  [--num-val 16] [--force] [--no-trunk-weights]

Layout, determinism and what happens to an existing folder: see workshop/toy_data.py.
"""

import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # the checkout: workshop

from workshop.toy_data import main  # noqa: E402

if __name__ == '__main__':
    raise SystemExit(main())
