"""The ratios the report computes: one metric of one row over the same metric of another.

HST's training step, peak memory and memory added by training are compared with full
fine-tuning's (with and without activation checkpointing), and its inference speed with the
frozen-trunk probe's and the bare trunk's (the ``trunk`` row, the floor). ``hst_lean`` is
the configuration the HST configs train with (configs/_base_/hst-vit-b.py). Ratios whose
rows were not run are skipped by the report.

Memory is compared three ways: peak tensor memory (``peak_tensor_mb``, what CUDA's
``max_memory_allocated`` counts, on either device), and on the CPU the process's peak RSS
(``peak_mem_mb``) and what the training run added to it (``train_increment_mb``).
"""

from __future__ import annotations

from typing import NamedTuple, Tuple


class Ratio(NamedTuple):
    """``num.metric / den.metric``.

    ``metric`` is a row's key (``peak_tensor_mb`` is None in a row without training), or
    ``train_increment_mb`` (``peak_mem_mb - model_mem_mb``, derived by the report).
    """

    metric: str
    num: str
    den: str


def _training_ratios(hst_row: str, full_row: str) -> Tuple[Ratio, ...]:
    """The training ratios of one (HST row, full fine-tuning row) pair."""
    return tuple(
        Ratio(metric, hst_row, full_row)
        for metric in ('train_step_s', 'peak_tensor_mb', 'peak_mem_mb', 'train_increment_mb')
    )


# In report order. The checkpointed HST rows are compared with full fine-tuning both with
# and without checkpointing.
RATIOS: Tuple[Ratio, ...] = (
    *_training_ratios('hst_lean', 'full'),
    *_training_ratios('hst_rc_side', 'full'),
    *_training_ratios('hst', 'full'),
    *_training_ratios('hst_cp', 'full_cp'),
    *_training_ratios('hst_cp', 'full'),
    *_training_ratios('hst_cp_side', 'full'),
    Ratio('infer_img_per_s', 'hst', 'frozen'),
    Ratio('infer_img_per_s', 'hst', 'trunk'),
    Ratio('infer_img_per_s', 'hst_lean', 'frozen'),
    Ratio('infer_img_per_s', 'hst_lean', 'trunk'),
)
