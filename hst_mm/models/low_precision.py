"""Frozen trunk matrices held in a lower precision (``HST(trunk_dtype='bfloat16')``).

The frozen ``nn.Linear`` and ``nn.Conv2d`` layers of a timm ViT (attention qkv / proj, MLP
fc1 / fc2, the patch embedding) are stored in bfloat16: half the trunk's weight memory and
the CPU's / GPU's bfloat16 matrix units. Everything else keeps its dtype: the tuned
LayerNorms, LayerScale, position embedding and class / register tokens, and the residual
stream between the layers, which stays float32.

A plain ``F.linear`` of a float32 input with bfloat16 weights fails on the CPU, so each such
layer casts its input to the weights' dtype and its output back to the input's dtype: the
cast sits at the frozen layers only, and what follows (softmax, norms, residual adds, the
T-Bridge and the side network) sees float32 tensors as before. Under autocast (mmengine's
AMP) the layers are left to autocast, which casts inputs and weights itself.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

# Values of ``trunk_dtype``: None (the weights as built, float32) or a lower precision.
TRUNK_DTYPES = {None: None, 'float32': None, 'bfloat16': torch.bfloat16}


def check_trunk_dtype(trunk_dtype) -> Optional[torch.dtype]:
    """The torch dtype of ``trunk_dtype`` (None for float32), or a named error."""
    if trunk_dtype not in TRUNK_DTYPES:
        raise ValueError(
            f'trunk_dtype={trunk_dtype!r}: expected one of {", ".join(map(repr, TRUNK_DTYPES))}'
        )
    return TRUNK_DTYPES[trunk_dtype]


def _cast_call(module: nn.Module, forward, x: torch.Tensor) -> torch.Tensor:
    weight = module.weight
    if x.dtype == weight.dtype or torch.is_autocast_enabled(x.device.type):
        return forward(x)
    return forward(x.to(weight.dtype)).to(x.dtype)


class CastLinear(nn.Linear):
    """An ``nn.Linear`` whose weights may be of a lower precision than its input: (..., D_in)
    -> (..., D_out) in the input's dtype, computed in the weights' dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cast_call(self, super().forward, x)


class CastConv2d(nn.Conv2d):
    """:class:`CastLinear` for ``nn.Conv2d`` (the patch embedding): (B, C, H, W) in the
    input's dtype, computed in the weights' dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cast_call(self, super().forward, x)


_CAST_CLASS = {nn.Linear: CastLinear, nn.Conv2d: CastConv2d}


def store_frozen_matrices(vit: nn.Module, dtype: torch.dtype) -> int:
    """Convert, in place, every ``nn.Linear`` / ``nn.Conv2d`` of ``vit`` whose parameters are
    all frozen to ``dtype`` and to its casting class (:class:`CastLinear` /
    :class:`CastConv2d`; the same parameters and state-dict keys). Returns how many."""
    n = 0
    for module in vit.modules():
        cast_class = _CAST_CLASS.get(type(module))
        if cast_class is None or any(p.requires_grad for p in module.parameters()):
            continue
        # The same module object keeps its parameters, hooks and place in the ViT; only its
        # forward changes (the casting subclass adds no state).
        module.__class__ = cast_class
        module.to(dtype)
        n += 1
    return n
