"""The workshop: what exists to measure, demonstrate or test hst_mm, beside the product.

``workshop`` lives at the root of a checkout and only there: it is not installed (not in
the wheel, not in ``pip install``), so it may read the checkout's ``configs/`` and
``data/`` and may change freely between versions. Nothing in ``hst_mm`` imports it.

* :mod:`workshop.benchmark`: HST vs full fine-tuning vs the frozen-trunk probe, side by side
  (``tools/analysis/benchmark.py``);
* :mod:`workshop.gpu_check`: operator parity, training throughput and the benchmark on a
  CUDA machine (``tools/gpu_check.py``);
* :mod:`workshop.toy_data`: the toy COCO and ADE20K-style sets under ``data/toy``
  (``tools/make_toy_data.py``);
* :mod:`workshop.fixtures`: the tiny test trunk, shrinking a shipped config to it, synthetic
  det/seg batches (tests, benchmark, GPU check).

Tests import it as ``workshop.*`` (pytest puts the repository root on ``sys.path``); the
tools that use it put the repository root on ``sys.path`` themselves, in one line.
"""
