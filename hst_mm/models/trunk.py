"""Frozen ViT trunk with one meta token per block and LN-tuning (HST paper, Sec. 3.2).

The trunk is a timm ``VisionTransformer`` (ViT, DeiT, DINOv2, ...) or ``Eva`` (DINOv3, EVA-02,
Perception Encoder: rotary position embeddings, :mod:`.eva_trunk`). Everything in it is
frozen except each block's ``norm1`` / ``norm2`` (LN-tuning). Before block ``l`` a learnable
meta token is prepended, so the block sees ``[meta_l, cls, patches]``; afterwards the meta
position is handed to the side network and dropped, so block ``l + 1`` gets its own fresh
token.
"""

from __future__ import annotations

import math
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.eva import Eva, EvaBlock
from timm.models.vision_transformer import Block, VisionTransformer
from torch.utils.checkpoint import checkpoint

from .eva_trunk import eva_tokens
from .low_precision import check_trunk_dtype, store_frozen_matrices

# Trunk parameters that stay trainable: the blocks' two LayerNorms.
TUNED_NORMS = ('norm1', 'norm2')
# The timm model classes a trunk may be (subclasses included).
TRUNK_TYPES = (VisionTransformer, Eva)
Trunk = Union[VisionTransformer, Eva]


def create_trunk(model_name: str, drop_path_rate: float = 0.0, **timm_kwargs) -> Trunk:
    """A timm ``VisionTransformer`` or ``Eva`` for dense prediction, without its final norm,
    pooling and head.

    ``dynamic_img_size``: timm resamples the position embeddings to each input's grid;
    ``dynamic_img_pad``: sizes that are not a multiple of the patch are padded, not cut. The
    model type is checked on a parameter-free (meta device) build first, so a wrong name
    fails at once with a named error instead of in the first forward.
    """
    timm_kwargs = {'dynamic_img_size': True, 'dynamic_img_pad': True, **timm_kwargs}
    if not timm.is_model(model_name.split('.')[0]):
        raise ValueError(f"trunk '{model_name}' is not a timm model name")
    with torch.device('meta'):
        try:
            probe = timm.create_model(model_name, pretrained=False, num_classes=0, **timm_kwargs)
        except TypeError:  # another family refuses the ViT keywords (dynamic_img_size, ...)
            probe = timm.create_model(model_name, pretrained=False, num_classes=0)
            if isinstance(probe, TRUNK_TYPES):
                raise  # a ViT refusing a keyword of the config's trunk_kwargs: torch's words
    if not isinstance(probe, TRUNK_TYPES):
        raise TypeError(
            f"trunk '{model_name}' is not a timm VisionTransformer or Eva (it builds "
            f'{type(probe).__name__}); HST needs its patch embedding, position '
            f'embedding and plain blocks'
        )
    vit = timm.create_model(
        model_name, pretrained=False, num_classes=0, drop_path_rate=drop_path_rate, **timm_kwargs
    )
    # The final norm and the head are unused by dense heads: dropped, so they neither hold
    # parameters nor appear as "missing" when weights are loaded.
    vit.norm, vit.fc_norm, vit.head = nn.Identity(), nn.Identity(), nn.Identity()
    if isinstance(vit, Eva):
        vit.attn_pool = None  # Perception Encoder's attention pooling: unused likewise
    return vit


def trunk_tokens(
    vit: Trunk, x: torch.Tensor, num_meta: int
) -> Tuple[torch.Tensor, Tuple[int, int], Sequence[dict]]:
    """The tokens that enter the trunk's first block, the patch grid, and each block's
    keyword arguments (an ``Eva``'s rotary embedding, :func:`.eva_trunk.eva_tokens`, for a
    sequence with ``num_meta`` meta tokens in front).

    (B, 3, H, W) -> (B, P + h*w, D), (h, w), one dict per block; P prefix (cls/reg) tokens.
    """
    if isinstance(vit, Eva):
        return eva_tokens(vit, x, num_meta)
    x = vit.patch_embed(x)  # (B, h, w, D): dynamic_img_size gives NHWC
    h, w = x.shape[1:3]
    x = vit._pos_embed(x)
    x = vit.norm_pre(vit.patch_drop(x))
    return x, (h, w), [{}] * len(vit.blocks)


def _block_with_meta(
    block: nn.Module, meta: torch.Tensor, x: torch.Tensor, **block_kwargs
) -> torch.Tensor:
    """One trunk block on [meta_l, prefix tokens, patches]: (B, M, D), (B, N, D) -> (B, M+N, D).

    ``block_kwargs``: an ``Eva`` block's ``rope`` (:func:`trunk_tokens`)."""
    return block(torch.cat([meta, x], dim=1), **block_kwargs)


def _norm_mlp(block: Union[Block, EvaBlock], y: torch.Tensor) -> torch.Tensor:
    """``block.mlp(block.norm2(y))``: (B, T, D) -> (B, T, D)."""
    return block.mlp(block.norm2(y))


def lean_block_with_meta(
    block: Block, meta: torch.Tensor, x: torch.Tensor, recompute_mlp: bool = False
) -> torch.Tensor:
    """:func:`_block_with_meta` for a timm ``Block``, storing less for backward.

    ``norm1`` works per token, so ``norm1(cat([meta, x])) == cat([norm1(meta), norm1(x)])``;
    normalising before concatenating makes ``norm1`` save ``x`` itself, a view of the
    previous block's output that the T-Bridge keeps anyway, instead of a concatenated copy.
    ``recompute_mlp``: ``norm2``, ``fc1`` and GELU are recomputed in backward (about a
    quarter of a block's forward FLOPs) instead of storing the (B, T, 4D) hidden layer.
    (B, 1, D), (B, N, D) -> (B, 1 + N, D).
    """
    norm = block.norm1
    # The (B, 1, D) meta token goes through the functional form: it is a view of a
    # parameter, which module hooks (FlopCounterMode's) cannot register a gradient hook on.
    meta_normed = F.layer_norm(meta, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    h = torch.cat([meta_normed, norm(x)], dim=1)
    y = torch.cat([meta, x], dim=1) + block.drop_path1(block.ls1(block.attn(h)))
    if recompute_mlp and torch.is_grad_enabled():
        mlp = checkpoint(_norm_mlp, block, y, use_reentrant=False)
    else:
        mlp = _norm_mlp(block, y)
    return y + block.drop_path2(block.ls2(mlp))


def lean_eva_block_with_meta(
    block: EvaBlock,
    meta: torch.Tensor,
    x: torch.Tensor,
    recompute_mlp: bool = False,
    rope: Union[torch.Tensor, None] = None,
) -> torch.Tensor:
    """:func:`lean_block_with_meta` for a timm ``EvaBlock`` (pre-norm): the same steps, with
    its rotary embedding ``rope`` (:func:`trunk_tokens`) and its layer scales ``gamma_1`` /
    ``gamma_2`` (None: none). ``recompute_mlp`` recomputes ``norm2`` and the MLP (SwiGLU for
    EVA-02) in backward. (B, M, D), (B, N, D) -> (B, M + N, D).
    """
    norm = block.norm1
    meta_normed = F.layer_norm(meta, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    h = torch.cat([meta_normed, norm(x)], dim=1)
    attn = block.attn(h, rope=rope)
    if block.gamma_1 is not None:
        attn = block.gamma_1 * attn
    y = torch.cat([meta, x], dim=1) + block.drop_path1(attn)
    if recompute_mlp and torch.is_grad_enabled():
        mlp = checkpoint(_norm_mlp, block, y, use_reentrant=False)
    else:
        mlp = _norm_mlp(block, y)
    if block.gamma_2 is not None:
        mlp = block.gamma_2 * mlp
    return y + block.drop_path2(mlp)


# The lean form of each block class that has one (exact types: a subclass may change forward).
LEAN_BLOCKS = {Block: lean_block_with_meta, EvaBlock: lean_eva_block_with_meta}


def lean_form(block: nn.Module):
    """The lean function of ``block`` (:data:`LEAN_BLOCKS`), or None: its class has none, or
    its ``norm1`` is not a LayerNorm (the meta token is normalised apart from the rest)."""
    if not isinstance(getattr(block, 'norm1', None), nn.LayerNorm):
        return None
    return LEAN_BLOCKS.get(type(block))


class ViTTrunk(nn.Module):
    """A timm ViT (:func:`create_trunk`) held as ``.vit``, behind a module without an
    ``init_weights()``.

    mmengine's ``BaseModule.init_weights()`` calls the ``init_weights()`` of a backbone's
    direct children; timm's ``VisionTransformer.init_weights()`` would re-draw every weight
    of the ViT, and of anything inserted into it (LoRA's A and B). Behind this wrapper it is
    never reached: the trunk's weights come from its initialisation here and from
    ``load_pretrained`` only. State-dict keys: ``vit.<timm key>``.

    Args:
        model_name: timm model name, e.g. ``'vit_base_patch16_224'``.
        drop_path_rate: stochastic depth of the trunk blocks.
        **timm_kwargs: passed to ``timm.create_model``.
    """

    def __init__(
        self, model_name: str = 'vit_base_patch16_224', drop_path_rate: float = 0.0, **timm_kwargs
    ) -> None:
        super().__init__()
        self.vit = create_trunk(model_name, drop_path_rate, **timm_kwargs)
        self.embed_dim: int = self.vit.embed_dim
        self.depth: int = len(self.vit.blocks)
        self.patch_size: int = self.vit.patch_embed.patch_size[0]


class MetaTokenViT(ViTTrunk):
    """A frozen timm ViT that emits, per block, its meta-token output and its patch map.

    Args:
        model_name: timm model name, e.g. ``'vit_base_patch16_224'``.
        drop_path_rate: stochastic depth of the trunk blocks (0 for a frozen trunk).
        with_cp: checkpoint each trunk block's activations (saves memory, costs a
            second forward pass of the blocks during backward).
        lean: run the blocks through their lean form (:func:`lean_block_with_meta`,
            :func:`lean_eva_block_with_meta`) and return the patch maps as views of the block
            outputs (no copy); False: the reference computation (each map a contiguous
            copy), same values. A trunk whose blocks have no lean form (:func:`lean_form`)
            raises a ValueError with ``lean=True``.
        recompute_mlp: recompute each block's ``norm2``/``fc1``/GELU in backward (needs
            ``lean``): the (B, T, 4D) hidden layers are the largest tensors the trunk stores.
        grad_start: blocks before this index run without autograd: their meta tokens
            (``meta_tokens_frozen``, (K, 1, 1, D)) and norms are frozen, they store nothing
            for backward; ``meta_tokens`` holds the tuned blocks' tokens, (depth - K, 1, 1,
            D). 0: every block tuned.
        trunk_dtype: None (float32) or ``'bfloat16'``: the frozen matrices' dtype
            (:mod:`.low_precision`).
        **timm_kwargs: passed to ``timm.create_model``.
    """

    def __init__(
        self,
        model_name: str = 'vit_base_patch16_224',
        drop_path_rate: float = 0.0,
        with_cp: bool = False,
        lean: bool = True,
        recompute_mlp: bool = False,
        grad_start: int = 0,
        trunk_dtype: Optional[str] = None,
        **timm_kwargs,
    ) -> None:
        super().__init__(model_name, drop_path_rate, **timm_kwargs)
        # A lever that cannot apply to this trunk's blocks is refused, never skipped.
        plain = sorted({type(b).__name__ for b in self.vit.blocks if lean_form(b) is None})
        if lean and plain:
            raise ValueError(
                f"trunk '{model_name}': the lean trunk (lean_trunk) has no form for its "
                f'{", ".join(plain)} blocks (it needs timm Block or EvaBlock with LayerNorm '
                f'norm1); set lean_trunk=False'
            )
        if recompute_mlp and not lean:
            raise ValueError(
                "recompute 'trunk_mlp' recomputes inside the lean trunk's blocks: it needs "
                'lean_trunk=True'
            )
        self.with_cp = with_cp
        self.lean = lean
        self.recompute_mlp = recompute_mlp
        if not (type(grad_start) is int and 0 <= grad_start <= self.depth):
            raise ValueError(
                f'grad_start={grad_start!r}: expected an int from 0 (every trunk block '
                f'tuned) to the trunk depth {self.depth} (no trunk block tuned)'
            )
        self.grad_start = grad_start

        # One meta token (1, 1, D) per block, xavier-uniform as in the authors' code:
        # for a (1, 1, D) tensor fan_in = fan_out = D, so the bound is sqrt(3 / D).
        # Drawn for all blocks at once whatever grad_start is: the same seed, the same tokens.
        bound = math.sqrt(3.0 / self.embed_dim)
        tokens = nn.init.uniform_(torch.empty(self.depth, 1, 1, self.embed_dim), -bound, bound)
        if grad_start:
            frozen = tokens[:grad_start].clone()
            self.meta_tokens_frozen = nn.Parameter(frozen, requires_grad=False)
        tuned = tokens[grad_start:].clone() if grad_start else tokens
        # grad_start == depth: no tuned meta token, no empty parameter (DDP would wait for
        # its gradient)
        self.register_parameter('meta_tokens', nn.Parameter(tuned) if tuned.numel() else None)
        self.freeze()
        dtype = check_trunk_dtype(trunk_dtype)
        if dtype is not None:
            store_frozen_matrices(self.vit, dtype)

    def freeze(self) -> None:
        """Freeze the ViT except the norm1/norm2 of every block from ``grad_start`` on
        (LN-tuning)."""
        for name, param in self.vit.named_parameters():
            parts = name.split('.')
            tuned = (
                parts[0] == 'blocks'
                and len(parts) > 2
                and parts[2] in TUNED_NORMS
                and int(parts[1]) >= self.grad_start
            )
            param.requires_grad_(tuned)

    def block_meta_tokens(self) -> Iterator[torch.Tensor]:
        """Each block's meta token, (1, 1, D), in block order (frozen ones first)."""
        if self.grad_start:
            yield from self.meta_tokens_frozen
        if self.meta_tokens is not None:
            yield from self.meta_tokens

    def train(self, mode: bool = True) -> 'MetaTokenViT':
        # The frozen ViT always runs in eval mode (no dropout / stochastic depth of its
        # own): its weights are not trained, so training-time noise would only hurt.
        super().train(mode)
        self.vit.eval()
        return self

    def forward(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Run the trunk.

        Args:
            x: images, (B, 3, H, W) with H, W >= patch size.

        Returns:
            metas: per block, the meta token's output, (B, 1, D).
            patches: per block, the patch tokens as a map, (B, D, ceil(H / p), ceil(W / p));
                with ``lean`` a (non-contiguous) view of the block's output tokens, so that
                the meta token, the map and the next block's input share one tensor.
        """
        metas, patches = [], []
        for meta, patch_map in self.iter_blocks(x):
            metas.append(meta)
            patches.append(patch_map)
        return metas, patches

    def iter_blocks(self, x: torch.Tensor) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`forward` one block at a time: yields each block's (meta (B, M, D), patch map
        (B, D, h, w)) as soon as the block has run, so that a consumer (the side network)
        can use and drop a block's outputs before the next block runs. ``M``: meta tokens per
        block (``meta_tokens.shape[2]``, 1; 0 runs the bare timm trunk)."""
        H, W = x.shape[-2:]
        if H < self.patch_size or W < self.patch_size:
            raise ValueError(
                f'input of {H}x{W} is smaller than one trunk patch '
                f'({self.patch_size}x{self.patch_size})'
            )
        vit = self.vit
        num_meta = next(self.block_meta_tokens()).shape[1]
        # (B, P + h*w, D), P prefix (cls/reg) tokens; per block e.g. an Eva's rotary embedding
        x, (h, w), block_kwargs = trunk_tokens(vit, x, num_meta)
        B, _, D = x.shape
        prefix = vit.num_prefix_tokens
        for b, (blk, meta, kwargs) in enumerate(
            zip(vit.blocks, self.block_meta_tokens(), block_kwargs)
        ):
            meta = meta.expand(B, -1, -1)
            # Blocks before grad_start record no graph; the context ends before the yield,
            # so the side network's step on their outputs records its own as usual.
            with torch.set_grad_enabled(torch.is_grad_enabled() and b >= self.grad_start):
                if self.with_cp and (x.requires_grad or meta.requires_grad):
                    # The concatenation happens inside the checkpoint: what is saved is the
                    # previous block's output, which the side network keeps alive anyway,
                    # not a second (B, 1 + N, D) copy per block.
                    x = checkpoint(_block_with_meta, blk, meta, x, use_reentrant=False, **kwargs)
                elif self.lean:
                    x = lean_form(blk)(blk, meta, x, self.recompute_mlp, **kwargs)
                else:
                    x = _block_with_meta(blk, meta, x, **kwargs)
            meta_out = x[:, :num_meta]
            x = x[:, num_meta:]
            grid = x[:, prefix:].transpose(1, 2)  # (B, D, h*w), a view
            yield meta_out, (grid.unflatten(2, (h, w)) if self.lean else grid.reshape(B, D, h, w))
