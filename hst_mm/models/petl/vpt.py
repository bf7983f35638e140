"""VPT-deep (Jia et al., 2022): learnable prompt tokens prepended at every trunk block.

Before block ``l`` its ``N`` prompts (1, N, D) are inserted after the prefix (class /
register) tokens: ``[prefix, prompts_l, patches]``; after the block those N positions are
dropped, so block ``l + 1`` sees its own fresh prompts and nothing downstream (the pyramid)
ever sees a prompt. Done with a forward pre-hook and a forward hook on each block, so the
trunk's keys and timm's ``forward_intermediates`` stay as they are.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn as nn

from .base import PETLMethod


class _BlockPrompts:
    """The hooks of one block (a plain object: ``copy.deepcopy`` of the model copies it
    along with the ``VPTDeep`` it points to)."""

    def __init__(self, owner: 'VPTDeep', index: int) -> None:
        self.owner, self.index = owner, index

    def prepend(self, block: nn.Module, args: Tuple) -> Tuple:
        """(B, P + L, D) -> (B, P + N + L, D)."""
        x, *rest = args
        p = self.owner.num_prefix_tokens
        prompts = self.owner.prompts[self.index].expand(x.shape[0], -1, -1).to(x.dtype)
        return (torch.cat([x[:, :p], prompts, x[:, p:]], dim=1), *rest)

    def drop(self, block: nn.Module, args: Tuple, out: torch.Tensor) -> torch.Tensor:
        """(B, P + N + L, D) -> (B, P + L, D)."""
        p, n = self.owner.num_prefix_tokens, self.owner.num_tokens
        return torch.cat([out[:, :p], out[:, p + n :]], dim=1)


class VPTDeep(PETLMethod):
    """``num_tokens`` learnable prompts per block, prompts (depth, N, D).

    Args:
        vit: the frozen timm ViT, adapted in place (hooks on its blocks).
        num_tokens: N, prompts per block.

    Trainable parameters: depth * N * D; ViT-B, N = 64: 12 * 64 * 768 = 589,824.
    """

    def __init__(self, vit: nn.Module, num_tokens: int = 64) -> None:
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f'VPT num_tokens must be >= 1, got {num_tokens}')
        depth, dim = len(vit.blocks), vit.embed_dim
        self.num_tokens = num_tokens
        self.num_prefix_tokens = vit.num_prefix_tokens
        self.prompts = nn.Parameter(torch.empty(depth, 1, num_tokens, dim))
        # VPT's initialisation: uniform, xavier-style over the patch pixels and the width.
        p = vit.patch_embed.patch_size
        self.init_bound = math.sqrt(6.0 / (3 * p[0] * p[1] + dim))
        nn.init.uniform_(self.prompts, -self.init_bound, self.init_bound)
        for i, block in enumerate(vit.blocks):
            hooks = _BlockPrompts(self, i)
            block.register_forward_pre_hook(hooks.prepend)
            block.register_forward_hook(hooks.drop)

    def extra_repr(self) -> str:
        return f'num_tokens={self.num_tokens}'
