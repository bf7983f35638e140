"""Reading a run's results: :mod:`.paper_table` sets them beside the paper's tables
(numbers in ``paper_results.yaml``)."""
