"""Initialisation of the trainable side parts, as in the authors' code."""

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
        # The authors' normal(0, sqrt(2 / (k*k*out / groups))); the side network has no
        # grouped convolutions, so that is exactly He initialisation over fan_out.
        assert m.groups == 1, "grouped convolutions: fan_out would differ from the authors'"
        nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
        if m.bias is not None:
            nn.init.zeros_(m.bias)
