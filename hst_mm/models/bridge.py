"""T-Bridge (v1: Adaptive Feature Bridge): trunk tokens -> side-network injections.

Stage ``s`` owns one ``Linear(D, C_s)``, shared by the trunk blocks that feed stage ``s``
and by both paths:

* meta path:          ``mg_l = LN_l(Linear_s(m_l))``                 (B, 1, C_s)
* fine-grained path:  ``fg_l = Linear_s(resize(p_l))`` as tokens    (B, H_s*W_s, C_s)
* GlobalT:            ``g_l = mean_tokens(fg_l)``                    (B, 1, C_s)

and block ``l``'s cross-attention reads the two tokens ``kv_l = [mg_l, g_l]``.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def resize_then_project(
    patch_map: torch.Tensor, proj: nn.Linear, size: Tuple[int, int]
) -> torch.Tensor:
    """The authors' order: bilinear resize of the D-channel map, then project.

    (B, D, h, w) -> (B, H_s*W_s, C). Kept as the reference for the parity test.
    """
    x = F.interpolate(patch_map, size=size, mode='bilinear', align_corners=False)
    return proj(x.flatten(2).transpose(1, 2))


def project_then_resize(
    patch_map: torch.Tensor, proj: nn.Linear, size: Tuple[int, int]
) -> torch.Tensor:
    """Project to C channels first, then resize: equal to :func:`resize_then_project`.

    Bilinear weights sum to one and the projection is affine, so the two orders agree;
    projecting first touches D channels at the trunk's h*w positions instead of the side
    network's H_s*W_s (16x more at stride 4). (B, D, h, w) -> (B, H_s*W_s, C).

    The projection is a batched product on the (B, h*w, D) token view of ``patch_map``: when
    the map is a view of the trunk's token tensor (the lean trunk), that view, not a copy,
    is what autograd keeps for the weight's gradient (``nn.Linear`` would copy it into a
    contiguous (B*h*w, D) matrix first, and keep the copy).
    """
    B, D, h, w = patch_map.shape
    tokens = patch_map.flatten(2).transpose(1, 2)  # (B, h*w, D)
    x = torch.baddbmm(proj.bias, tokens, proj.weight.t().expand(B, D, -1))  # (B, h*w, C)
    x = x.transpose(1, 2).unflatten(2, (h, w))  # (B, C, h, w)
    if x.shape[-2:] != size:
        x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
    return x.flatten(2).transpose(1, 2)


class TBridge(nn.Module):
    """Projects each trunk block's outputs into its side stage.

    Args:
        trunk_dim: D, the trunk's embedding width.
        embed_dims: C_s of each side stage.
        stage_of_block: for each trunk block, the index of the stage it feeds.
    """

    def __init__(
        self, trunk_dim: int, embed_dims: Sequence[int], stage_of_block: Sequence[int]
    ) -> None:
        super().__init__()
        self.stage_of_block = tuple(stage_of_block)
        self.proj = nn.ModuleList(nn.Linear(trunk_dim, c) for c in embed_dims)
        self.meta_norm = nn.ModuleList(
            nn.LayerNorm(embed_dims[s], eps=1e-5) for s in self.stage_of_block
        )

    def forward(
        self, block: int, meta: torch.Tensor, patch_map: torch.Tensor, size: Tuple[int, int]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Bridge trunk block ``block`` into its stage at side resolution ``size``.

        Args:
            meta: (B, 1, D) meta-token output of the block.
            patch_map: (B, D, h, w) patch tokens of the block.
            size: (H_s, W_s), the side stage's resolution.

        Returns:
            kv: (B, 2, C_s) the meta and global tokens for cross-attention.
            fg: (B, H_s*W_s, C_s) the fine-grained tokens to add.
        """
        proj = self.proj[self.stage_of_block[block]]
        fg = project_then_resize(patch_map, proj, size)
        mg = self.meta_norm[block](proj(meta))
        kv = torch.cat([mg, fg.mean(dim=1, keepdim=True)], dim=1)
        return kv, fg
