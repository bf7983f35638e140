"""Trunks of timm's ``Eva`` family (DINOv3, EVA-02, Perception Encoder): their tokens and
rotary position embeddings with HST's meta tokens in the sequence.

An ``Eva`` block's attention rotates queries and keys by the rotary embedding (RoPE) of each
patch and leaves the first ``num_prefix_tokens`` (class and register tokens) as they are:
it splits the sequence at that count and rotates the rest with one embedding row per token.
HST puts ``M`` meta tokens in front of the sequence, ``[meta x M, prefix x P, patches]``, and
leaves the attention module untouched: the embedding gets ``M`` identity rows (sin 0, cos 1)
in front. The attention then skips the first ``P`` tokens and rotates the last ``M`` of
``[meta, prefix]`` by the identity, ``x * 1 + rot(x) * 0 == x`` to the last bit, and each
patch by its own row: the meta tokens are skipped exactly as the class and register tokens
are, and without them (``M = 0``) the computation is timm's.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from timm.models.eva import Eva


def rope_with_identity_rows(rope: torch.Tensor, num_rows: int) -> torch.Tensor:
    """``rope`` with ``num_rows`` identity rotations in front of its token dimension.

    Args:
        rope: timm's concatenated ``[sin, cos]`` embedding, tokens along dim -2:
            (N, 2d), or per head / per block (..., N, 2d).
        num_rows: identity rows to prepend (one per meta token).

    Returns:
        (..., num_rows + N, 2d): each new row is ``[0] * d + [1] * d``.
    """
    if num_rows == 0:
        return rope
    shape = (*rope.shape[:-2], num_rows, rope.shape[-1] // 2)
    identity = torch.cat([rope.new_zeros(shape), rope.new_ones(shape)], dim=-1)
    return torch.cat([identity, rope], dim=-2)


def eva_tokens(
    eva: Eva, x: torch.Tensor, num_meta: int
) -> Tuple[torch.Tensor, Tuple[int, int], List[dict]]:
    """The tokens that enter an ``Eva``'s first block, and each block's keyword arguments.

    As timm's ``Eva.forward_features`` up to its blocks: patch embedding, class / register
    tokens, absolute position embedding (if any), pre-norm (PE). The model runs with
    ``dynamic_img_size`` (:func:`.trunk.create_trunk`): the rotary embedding is computed for
    this input's grid.

    Args:
        eva: the timm ``Eva`` trunk.
        x: images, (B, 3, H, W).
        num_meta: meta tokens each block will see in front of the sequence.

    Returns:
        tokens: (B, P + h*w, D), P prefix (class / register) tokens.
        grid: (h, w), the patch grid.
        block_kwargs: per block, ``dict(rope=...)`` for ``block(tokens, **kwargs)`` on a
            sequence with ``num_meta`` meta tokens in front: (num_meta + h*w, 2d) rows, or
            None for a trunk without RoPE.
    """
    x = eva.patch_embed(x)  # (B, h, w, D)
    h, w = x.shape[1:3]
    x, rope = eva._pos_embed(x)  # rope: (h*w, 2d); mixed RoPE: (depth, heads, h*w, 2d)
    x = eva.norm_pre(x)
    depth = len(eva.blocks)
    if rope is None:
        ropes = [None] * depth
    else:
        rope = rope_with_identity_rows(rope, num_meta)
        ropes = list(rope.unbind(0)) if eva.rope_mixed else [rope] * depth
    return x, (h, w), [dict(rope=r) for r in ropes]
