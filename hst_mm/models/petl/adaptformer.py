"""AdaptFormer (Chen et al., 2022): a bottleneck adapter in parallel with each block's MLP.

Block ``l`` computes ``x + MLP(LN2(x)) + s * up(ReLU(down(x)))`` where ``x`` (B, L, D) is the
residual stream after attention (the MLP branch's input before its LayerNorm, as in
AdaptFormer's ``ffn_adapter_layernorm_option='none'``). ``up`` starts at zero, so the
adapted trunk computes exactly what the frozen one does until training moves it.

Two forward hooks, so the trunk's keys stay those of a plain ViT: one on ``norm2`` computes
the adapter on its input, one on ``mlp`` adds the result to the MLP's output (before timm's
LayerScale and drop path, which ViT-B does not use / the frozen trunk does not apply).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn

from .base import PETLMethod


class Adapter(nn.Module):
    """``(B, L, D) -> (B, L, D)``: ``scale * up(ReLU(down(x)))``, down D -> r, up r -> D."""

    def __init__(self, dim: int, bottleneck: int, scale: float) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.ReLU()
        self.up = nn.Linear(bottleneck, dim)
        self.scale = scale
        self.pending: Optional[torch.Tensor] = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # AdaptFormer's initialisation: down as a default Linear, up and both biases zero.
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(self.act(self.down(x)))

    def from_mlp_input(self, norm: nn.Module, args: Tuple, out: torch.Tensor) -> None:
        """Hook on ``norm2``: run the adapter on the residual stream entering it."""
        self.pending = self(args[0])

    def add_to_mlp_output(self, mlp: nn.Module, args: Tuple, out: torch.Tensor) -> torch.Tensor:
        """Hook on ``mlp``: its output plus the adapter's (held only until used)."""
        if self.pending is None:
            raise RuntimeError('AdaptFormer: the block ran its MLP without its norm2')
        adapted, self.pending = out + self.pending, None
        return adapted

    def extra_repr(self) -> str:
        return f'scale={self.scale}'


class AdaptFormer(PETLMethod):
    """One :class:`Adapter` per block, beside its MLP.

    Args:
        vit: the frozen timm ViT, adapted in place (hooks on ``norm2`` and ``mlp``).
        bottleneck: r, the adapter's inner width.
        scale: s, the adapter output's fixed scale.

    Trainable parameters: depth * (2 * D * r + r + D); ViT-B, r = 64: 1,189,632.
    """

    def __init__(self, vit: nn.Module, bottleneck: int = 64, scale: float = 0.1) -> None:
        super().__init__()
        dim = vit.embed_dim
        self.adapters = nn.ModuleList(Adapter(dim, bottleneck, scale) for _ in vit.blocks)
        for block, adapter in zip(vit.blocks, self.adapters):
            if not (hasattr(block, 'norm2') and hasattr(block, 'mlp')):
                raise TypeError(
                    f'AdaptFormer needs blocks with norm2 and mlp, got {type(block).__name__}'
                )
            block.norm2.register_forward_hook(adapter.from_mlp_input)
            block.mlp.register_forward_hook(adapter.add_to_mlp_output)
