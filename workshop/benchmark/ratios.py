"""The ratios the report computes: one metric of one row over the same metric of another.

HST's training step, peak memory and memory added by training are compared with full
fine-tuning's (with and without activation checkpointing), and its inference speed with the
frozen-trunk probe's and the bare trunk's (the ``trunk`` row, the floor). ``hst_lean`` is
the configuration the HST configs train with (configs/_base_/hst-vit-b.py). Ratios whose
rows were not run are skipped by the report.

Memory is compared three ways: peak tensor memory (``peak_tensor_mb``, what CUDA's
``max_memory_allocated`` counts, on either device), the process's peak RSS
(``peak_rss_mb``) and what the training run added to the memory held once the model was
built (``train_increment_mb``: on the CPU the RSS, on CUDA the allocated tensors).

A speed ratio (``train_step_s``, ``infer_img_per_s``) is the median of its rounds' ratios:
with ``--interleave N`` the N rounds, each timing both rows one after the other in one
process; otherwise each row's timed iterations, paired in order. The report prints it with
the rounds' spread, and only if there are at least :data:`MIN_ROUNDS` rounds whose ratios
spread (max - min) by no more than the run's margin of the median (``--margin``).
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

from .modes import CONFIG_MODE, LADDER_HST_MODES

# Speed metrics: their ratios come from rounds; the others from one measurement.
SPEED_METRICS = ('train_step_s', 'infer_img_per_s')
# The fewest rounds a speed ratio is reported from.
MIN_ROUNDS = 2


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
        for metric in ('train_step_s', 'peak_tensor_mb', 'peak_rss_mb', 'train_increment_mb')
    )


# The ladder of HST options and a CONFIG's backbone, against full fine-tuning and the trunk.
LADDER = (*LADDER_HST_MODES, CONFIG_MODE)
# In report order. The checkpointed HST rows are compared with full fine-tuning both with
# and without checkpointing.
RATIOS: Tuple[Ratio, ...] = (
    *(r for row in LADDER for r in _training_ratios(row, 'full')),
    *_training_ratios('hst_rc_side', 'full'),
    *_training_ratios('hst', 'full'),
    *_training_ratios('hst_cp', 'full_cp'),
    *_training_ratios('hst_cp', 'full'),
    *_training_ratios('hst_cp_side', 'full'),
    Ratio('infer_img_per_s', 'hst', 'frozen'),
    Ratio('infer_img_per_s', 'hst', 'trunk'),
    Ratio('infer_img_per_s', 'hst_lean', 'frozen'),
    *(Ratio('infer_img_per_s', row, 'trunk') for row in LADDER),
)
