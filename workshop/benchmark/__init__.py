"""Side-by-side cost of HST, full fine-tuning and the frozen-trunk probe.

The command line is :mod:`workshop.benchmark.cli` (``python -m workshop.benchmark.cli`` or
``tools/analysis/benchmark.py``). The modules, by job:

* :mod:`~workshop.benchmark.modes`: the rows, and which a run measures;
* :mod:`~workshop.benchmark.config`: a CONFIG's backbone and input size;
* :mod:`~workshop.benchmark.workloads`: what is run for a row (backbone or whole detector,
  with its synthetic batch and optimizer);
* :mod:`~workshop.benchmark.measure`: timing, memory, FLOPs and parameter counts of one row,
  inside its worker process;
* :mod:`~workshop.benchmark.saved`, :mod:`~workshop.benchmark.profile`: what a row saves
  for backward and where its time goes, per part of the model;
* :mod:`~workshop.benchmark.ratios`: which rows the report compares, as data;
* :mod:`~workshop.benchmark.report`: the ratios measured and the markdown report.

Nothing is imported here, so that importing one module does not pull in the others.
"""
