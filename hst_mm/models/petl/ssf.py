"""SSF (Lian et al., 2022): a learnable per-channel scale and shift after the trunk's
operations.

After the patch embedding and, in every block, after ``norm1``, ``attn.qkv``, ``attn.proj``,
``norm2``, ``mlp.fc1`` and ``mlp.fc2``: ``y -> y * gamma + beta`` over the last (channel)
dimension. gamma starts at 1 and beta at 0 (identity), so the adapted trunk computes exactly
what the frozen one does until training moves them. Forward hooks, so the trunk's keys stay
those of a plain ViT.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn

from .base import PETLMethod

# Modules of each block followed by a scale and shift (SSF's ViT placement; the final norm is
# not used by the pyramid).
BLOCK_TARGETS = ('norm1', 'attn.qkv', 'attn.proj', 'norm2', 'mlp.fc1', 'mlp.fc2')


class ScaleShift(nn.Module):
    """``(..., C) -> (..., C)``: ``x * scale + shift``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift

    def hook(self, module: nn.Module, args: Tuple, out: torch.Tensor) -> torch.Tensor:
        return self(out)


class SSF(PETLMethod):
    """One :class:`ScaleShift` per target module.

    Args:
        vit: the frozen timm ViT, adapted in place (hooks on its patch embedding and on the
            blocks' :data:`BLOCK_TARGETS`).

    Trainable parameters: 2 x the output widths; ViT-B: 2 * 768 + 12 * 2 * (768 * 5 + 2304)
    = 204,288.
    """

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        # timm's patch embedding ends channels-last ((B, h, w, D) or (B, N, D)).
        targets = {'patch_embed': (vit.patch_embed, vit.embed_dim)}
        for i, block in enumerate(vit.blocks):
            for name in BLOCK_TARGETS:
                module = block.get_submodule(name)
                width = module.out_features if isinstance(module, nn.Linear) else vit.embed_dim
                targets[f'blocks.{i}.{name}'] = (module, width)
        # ModuleDict keys may not contain dots.
        self.scale_shifts = nn.ModuleDict(
            {name.replace('.', '_'): ScaleShift(width) for name, (_, width) in targets.items()}
        )
        for name, (module, _) in targets.items():
            module.register_forward_hook(self.scale_shifts[name.replace('.', '_')].hook)
