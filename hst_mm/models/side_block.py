"""Side Block: cross-attention to the trunk's meta/global tokens, fine-grained add, MLP."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp


class CrossAttention(nn.Module):
    """Multi-head attention with queries from ``x`` and keys/values from ``kv``.

    Separate q, k, v projections (the side tokens and the bridged trunk tokens live in the
    same width C but come from different places), fused through
    ``F.scaled_dot_product_attention``.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'side width {dim} is not divisible by its num_heads {num_heads}')
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """(B, N, C), (B, M, C) -> (B, N, C)."""
        B, N, C = x.shape
        heads = lambda t: t.reshape(B, t.shape[1], self.num_heads, -1).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(kv)), heads(self.v(kv)))
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class SideBlock(nn.Module):
    """One Side Block, fed by one trunk block::

        x = x + DropPath(CrossAttn(LN1(x), kv))   # meta-global injection
        x = x + fg                                # fine-grained injection
        x = x + DropPath(MLP(LN2(x)))

    Shapes: ``x`` and ``fg`` (B, N, C) side tokens and their fine-grained injection, ``kv``
    (B, 2, C) the bridged meta and global tokens.
    """

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, kv: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
        """x: (B, N, C) side tokens; kv: (B, 2, C); fg: (B, N, C) -> (B, N, C)."""
        x = x + self.drop_path(self.attn(self.norm1(x), kv))
        x = x + fg
        return x + self.drop_path(self.mlp(self.norm2(x)))
