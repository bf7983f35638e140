"""The weights of a checkpoint as mmengine loads them, and the error for weights that do not
fit a model: shared by the checkpoint fit check (:mod:`.hooks.checkpoint_fit`) and the
trunk restore of trainable-only exports (:mod:`.frozen_trunk`), which the check uses."""

from __future__ import annotations

import re
from typing import Dict

import torch


class CheckpointMismatchError(ValueError):
    """A checkpoint whose weights do not fit the model (names the file and the keys)."""


def checkpoint_state_dict(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The weights as mmengine loads them: ``state_dict`` (or the whole dict), with the
    ``module.`` prefix of wrapped models removed."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    return {re.sub(r'^module\.', '', k): v for k, v in state_dict.items()}
