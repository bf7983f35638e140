"""Side-by-side cost of HST, full fine-tuning and the frozen-trunk probe.

The command line is :mod:`hst_mm.benchmark.cli` (``python -m hst_mm.benchmark.cli`` or
``tools/analysis/benchmark.py``). The modules, by job:

* :mod:`~hst_mm.benchmark.modes`: the rows (modes and their checkpointed variants);
* :mod:`~hst_mm.benchmark.workloads`: what is run for a row (backbone or whole detector,
  with its synthetic batch and optimizer);
* :mod:`~hst_mm.benchmark.measure`: timing, memory, FLOPs and parameter counts of one row,
  inside its worker process;
* :mod:`~hst_mm.benchmark.targets`: the project's acceptance ratios, as data;
* :mod:`~hst_mm.benchmark.report`: the ratios measured and the markdown report.

Nothing is imported here, so that importing one module does not pull in the others.
"""
