"""Images smaller than the trunk can take: zero-pad them, run, crop the maps back.

mmseg does not pad at test time, so a thin image (a 16x2000 picture that the ADE20K test
pipeline resizes to 2x256) reaches the backbone with fewer rows than one trunk patch. Both
backbones pad such a dimension on the right / bottom, run as usual, and crop each output map
of stride ``s`` back to ``max(1, ceil(H / s))`` rows (and likewise columns), so the decode
heads see maps aligned with the small image. A dimension that is large enough is neither
padded nor cropped: such inputs are computed exactly as without this module.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F


def pad_small_input(x: torch.Tensor, min_size: int, pad_to: int) -> torch.Tensor:
    """Zero-pad each spatial dimension below ``min_size`` up to ``pad_to`` (right / bottom).

    (B, C, H, W) -> (B, C, H', W') with H' = ``pad_to`` if H < ``min_size`` else H (same
    for W). Returns ``x`` itself when nothing needs padding.
    """
    H, W = x.shape[-2:]
    pad_h = pad_to - H if H < min_size else 0
    pad_w = pad_to - W if W < min_size else 0
    if not (pad_h or pad_w):
        return x
    return F.pad(x, (0, pad_w, 0, pad_h))  # zeros: the normalised image's mean colour


def crop_to_input(
    outs: Sequence[torch.Tensor],
    size: Tuple[int, int],
    padded_size: Tuple[int, int],
    strides: Sequence[float],
) -> Tuple[torch.Tensor, ...]:
    """Crop the maps of a padded input back to the input's extent.

    Args:
        outs: per level, (B, C, h_i, w_i) computed from the padded input.
        size: (H, W) of the input before padding.
        padded_size: (H', W') after :func:`pad_small_input`.
        strides: per level of ``outs``, its stride in input pixels.

    Returns:
        per level, (B, C, max(1, ceil(H / s)), max(1, ceil(W / s))) along each padded
        dimension; a dimension that was not padded keeps its size.
    """
    (H, W), (Hp, Wp) = size, padded_size
    if (H, W) == (Hp, Wp):
        return tuple(outs)
    cropped = []
    for feat, s in zip(outs, strides):
        h = max(1, math.ceil(H / s)) if Hp != H else feat.shape[-2]
        w = max(1, math.ceil(W / s)) if Wp != W else feat.shape[-1]
        cropped.append(feat[..., :h, :w].contiguous())  # dense NCHW, see side_network.py
    return tuple(cropped)
