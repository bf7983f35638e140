"""Initialisation of the trainable side parts, as in the authors' code."""
import math

import torch.nn as nn


def init_side_weights(m: nn.Module) -> None:
    """Linear: trunc-normal(std .02), bias 0; LayerNorm: 1 / 0; Conv: normal(0, sqrt(2/fan_out)).

    Use with ``module.apply``.
    """
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
