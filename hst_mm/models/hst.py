"""The assembled HST backbone: frozen trunk + T-Bridge + Hierarchical Side Network.

Plain PyTorch (imports only torch and timm); :mod:`hst_mm.registration` registers it with
OpenMMLab as ``type='HST'``.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .bridge import TBridge
from .pretrained import load_trunk_weights
from .side_network import HierarchicalSideNetwork, split_blocks
from .small_inputs import crop_to_input, pad_small_input
from .trunk import MetaTokenViT
from .weight_init import init_side_weights

# Values of ``with_cp``: nothing, everything, the Side Blocks only, the trunk blocks only.
CP_CHOICES = (False, True, 'side', 'trunk')
# Values in ``recompute``: selective recomputation inside the Side Blocks / the trunk's MLPs.
RECOMPUTE_CHOICES = ('side', 'trunk_mlp')


def check_with_cp(with_cp):
    """``with_cp`` as one of :data:`CP_CHOICES` (``'all'``, the old spelling of ``True``, warns)."""
    if with_cp == 'all':
        warnings.warn(
            "with_cp='all' is deprecated: use with_cp=True", DeprecationWarning, stacklevel=3
        )
        return True
    if with_cp not in CP_CHOICES:
        raise ValueError(f'with_cp={with_cp!r}: expected one of {", ".join(map(repr, CP_CHOICES))}')
    return with_cp


def compile_options(compile) -> Optional[dict]:
    """``HST(compile=...)`` as the Side Blocks' ``torch.compile`` arguments: None for False,
    ``{}`` (torch's defaults: inductor) for True, the dict itself for a dict."""
    if compile is False or compile is None:
        return None
    if compile is True:
        return {}
    if not isinstance(compile, dict):
        raise ValueError(
            f'compile={compile!r}: expected False, True or a dict of torch.compile arguments'
        )
    known = set(inspect.signature(torch.compile).parameters) - {'model'}
    bad = sorted(set(compile) - known)
    if bad:
        raise ValueError(f'compile={compile!r}: {bad} are not torch.compile arguments')
    return dict(compile)


def stage_stride(stage: int) -> int:
    """Input pixels per map cell of side-network stage ``stage`` (0-3): 4, 8, 16, 32 (the
    stem halves twice, each later stage once more)."""
    return 2 ** (stage + 2)


class HST(nn.Module):
    """Hierarchical Side-Tuning backbone.

    ``(B, 3, H, W) -> [(B, C_i, H/s, W/s) for s in 4, 8, 16, 32]`` (for ``out_indices``).
    What it returns, for the neck: :attr:`out_channels` (``C_i``) and :attr:`out_strides`
    (``s``), one entry per map.

    Args:
        trunk: timm model name of a VisionTransformer or an Eva (DINOv3, EVA-02, PE).
        pretrained: None, a local checkpoint (``.pth``, ``.npz``, ``.safetensors``, ...),
            or a timm pretrained tag (``'augreg_in21k'``), loaded into the trunk now.
        embed_dims: side-network width per stage.
        num_heads: cross-attention heads per stage.
        drop_path_rate: stochastic depth of the Side Blocks (linear from 0).
        out_indices: which stages to return.
        with_cp: activation checkpointing, to trade compute for memory: ``False``; ``True``
            for the trunk blocks and the Side Blocks (with their bridge step):
            least memory, one more forward pass of both in backward; ``'side'`` for the
            Side Blocks only: the side network's stride-4/8 maps are about half of what a
            training step stores, and recomputing them is cheap next to the trunk;
            ``'trunk'`` for the trunk blocks only.
        trunk_kwargs: extra ``timm.create_model`` arguments for the trunk.
        recompute: selective recomputation, exact, cheaper than ``with_cp``: ``'side'``:
            each Side Block recomputes LN1 with its attention scores and LN2, ``fc1`` and
            GELU of its MLP in backward, storing 2 of ~15 token-sized tensors, and the stem
            its convolutions and norms from the image (its BatchNorm's running statistics
            still count each batch once);
            ``'trunk_mlp'``: each trunk block recomputes ``norm2``, ``fc1`` and GELU (about a
            quarter of its forward) instead of storing its (B, T, 4D) hidden layer.
            A part that ``with_cp`` already checkpoints ignores it.
        fold_attention: compute the Side Blocks' cross-attention folded around its two
            key/value tokens (:class:`.side_block.CrossAttention`); False: the reference
            q/k/v/proj computation. Same values and parameters either way.
        lean_trunk: trunk blocks store one tensor per block that the T-Bridge and the next
            block share (:func:`.trunk.lean_block_with_meta`); False: the reference
            computation. Same values either way.
        grad_start: ``K``, the first trunk block that trains (0 to the trunk depth; 0, the
            paper's model, is the default). Blocks ``0 .. K-1`` run without autograd: their
            meta tokens and LayerNorms are frozen at their initial / pretrained values (the
            trainable count drops by ``K`` meta tokens and ``K`` blocks' norm1/norm2), they
            store nothing for backward and take no backward pass; their outputs still feed
            the T-Bridge and the side network, which train as before. ``K`` = depth: the side
            network alone learns (the trunk is a fixed feature extractor). Same forward
            values as ``K=0`` from the same weights; ``load_pretrained`` and
            ``trunk.freeze()`` keep the blocks before ``K`` frozen.
        trunk_dtype: None (float32) or ``'bfloat16'``: the frozen trunk's matrices (qkv,
            proj, fc1, fc2, patch embedding) stored in bfloat16 and computed in it, cast at
            those layers (:mod:`.low_precision`); the tuned norms, meta tokens, position
            embedding, T-Bridge and side network stay float32. Measured against float32 from
            the same weights (timm's random init, one 224x224 image, CPU): relative error
            max |diff| / max |ref| (mean |diff| / mean |ref|) of the pyramid maps at most
            0.43% (0.36%) for ViT-S/16, 0.53% (0.55%) for ViT-B/16, 0.03% for the 4-block
            test trunk; of the last trunk block's patch map 0.46% / 0.66%; tested at 1% on
            the test trunk. Pretrained float32 files load strictly and are stored in
            bfloat16; gradients reach the tuned norms through bfloat16 products.
        compile: ``torch.compile`` of each Side Block's training forward (False: eager; True:
            torch's defaults (inductor); a dict: ``torch.compile`` arguments, e.g.
            ``dict(backend='aot_eager')``). The token count is a dynamic dimension, so a new
            input size does not recompile: one graph per side width (4 for 4 stages).
            Inference (no gradients) keeps the eager, chunked Side Blocks. The state dict,
            deepcopy and pickling are those of the eager model.

    ``grad_start``, ``trunk_dtype`` and ``compile`` combine with each other and with every
    value of ``with_cp``, ``recompute``, ``fold_attention`` and ``lean_trunk`` (tested): the
    blocks before ``grad_start`` skip the trunk's checkpoints and recomputation (they record
    no graph), and ``with_cp`` checkpoints the compiled Side Block step as the eager one.
    """

    def __init__(
        self,
        trunk: str = 'vit_base_patch16_224',
        pretrained: Optional[str] = None,
        embed_dims: Sequence[int] = (64, 128, 256, 384),
        num_heads: Sequence[int] = (2, 4, 8, 12),
        drop_path_rate: float = 0.0,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        with_cp: Union[bool, str] = False,
        trunk_kwargs: Optional[dict] = None,
        recompute: Sequence[str] = (),
        fold_attention: bool = True,
        lean_trunk: bool = True,
        grad_start: int = 0,
        trunk_dtype: Optional[str] = None,
        compile: Union[bool, dict] = False,
    ) -> None:
        super().__init__()
        with_cp = check_with_cp(with_cp)
        side_compile = compile_options(compile)
        recompute = (recompute,) if isinstance(recompute, str) else tuple(recompute)
        bad = [r for r in recompute if r not in RECOMPUTE_CHOICES]
        if bad:
            raise ValueError(
                f'recompute={recompute!r}: {bad} unknown; expected a subset of '
                f'{RECOMPUTE_CHOICES!r}'
            )
        if len(embed_dims) != len(num_heads):
            raise ValueError(
                f'embed_dims {tuple(embed_dims)} and num_heads {tuple(num_heads)} '
                f'must have one entry per stage'
            )
        for c, h in zip(embed_dims, num_heads):
            if not (isinstance(h, int) and h > 0 and isinstance(c, int) and c > 0):
                raise ValueError(
                    f'embed_dims {tuple(embed_dims)} and num_heads '
                    f'{tuple(num_heads)} must be positive integers'
                )
            if c % h:
                raise ValueError(
                    f'embed_dims {tuple(embed_dims)}: width {c} is not divisible '
                    f'by its num_heads {h}'
                )
        bad = [i for i in out_indices if not 0 <= i < len(embed_dims)]
        if bad:
            raise ValueError(
                f'out_indices {tuple(out_indices)}: {bad} outside the {len(embed_dims)} stages'
            )
        self.trunk_name = trunk
        self.trunk_kwargs = dict(trunk_kwargs or {})
        self.embed_dims = tuple(embed_dims)
        self.out_indices = tuple(out_indices)
        self.with_cp = with_cp
        self.recompute = recompute
        self.trunk = MetaTokenViT(
            trunk,
            with_cp=with_cp in (True, 'trunk'),
            lean=lean_trunk,
            recompute_mlp='trunk_mlp' in recompute,
            grad_start=grad_start,
            trunk_dtype=trunk_dtype,
            **self.trunk_kwargs,
        )
        stage_of_block = split_blocks(self.trunk.depth, len(embed_dims))
        self.bridge = TBridge(self.trunk.embed_dim, embed_dims, stage_of_block)
        self.bridge.apply(init_side_weights)
        self.side = HierarchicalSideNetwork(
            embed_dims,
            num_heads,
            stage_of_block,
            drop_path_rate,
            with_cp=with_cp in (True, 'side'),
            fold_attention=fold_attention,
            recompute='side' in recompute,
            compile_options=side_compile,
        )
        if pretrained:
            self.load_pretrained(pretrained)

    def load_pretrained(self, source: str) -> None:
        """Load trunk weights from a file or timm tag (see :mod:`.pretrained`)."""
        load_trunk_weights(self.trunk.vit, self.trunk_name, source, **self.trunk_kwargs)
        self.trunk.freeze()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> tuple of (B, C_i, H_i, W_i), H_i ~ H / 2**(i + 2), i in out_indices.

        An image with fewer rows or columns than one trunk patch (mmseg does not pad at test
        time) is zero-padded to one patch, and every map cropped back to
        ``max(1, ceil(H / s))`` rows / columns for its stride ``s``
        (:mod:`.small_inputs`); larger inputs are not touched.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f'HST expects a (B, 3, H, W) batch of 3-channel images, got shape '
                f'{tuple(x.shape)} (convert grayscale input to RGB in the pipeline)'
            )
        size = tuple(x.shape[-2:])
        x = pad_small_input(x, min_size=self.trunk.patch_size, pad_to=self.min_pad_size)
        # Trunk and side network interleaved, block by block (same values as running the
        # trunk first): each block's outputs are bridged as soon as they exist.
        outs = self.side(x, self.trunk.iter_blocks(x), self.bridge)
        outs = crop_to_input(
            outs, size, tuple(x.shape[-2:]), strides=[stage_stride(s) for s in range(len(outs))]
        )
        return tuple(outs[i] for i in self.out_indices)

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each map :meth:`forward` returns, in its order: ``embed_dims[i]`` for
        ``i`` in ``out_indices``, e.g. (64, 128, 256, 384). A neck's ``in_channels``."""
        return tuple(self.embed_dims[i] for i in self.out_indices)

    @property
    def out_strides(self) -> Tuple[int, ...]:
        """Input pixels per cell of each map :meth:`forward` returns, in its order: (4, 8,
        16, 32) for ``out_indices=(0, 1, 2, 3)``."""
        return tuple(stage_stride(i) for i in self.out_indices)

    @property
    def min_pad_size(self) -> int:
        """What a dimension below one patch is padded to: the patch size rounded up to a
        multiple of 4, so that the stride-4 map of the padded input (``floor(ceil(P/2)/2)``
        rows for P rows) has at least the ``ceil(H/4)`` rows the crop keeps (16 for /16)."""
        return -(-self.trunk.patch_size // 4) * 4


HSTBackbone = HST  # the name before 0.2
