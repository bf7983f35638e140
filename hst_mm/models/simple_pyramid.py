"""Baseline backbone for the paper's comparison rows: a plain ViT with a simple pyramid.

The ViT is either fully fine-tuned or completely frozen (the "frozen-trunk probe"); the
pyramid follows ViT-Adapter's ``ViTBaseline``: the outputs of four evenly spaced blocks
(3, 6, 9, 12 of 12) are each layer-normalised by a LayerNorm of their own (eps 1e-6), then
become stride 4 (ConvT 2x2 -> GroupNorm(32) -> GELU -> ConvT 2x2), 8 (ConvT 2x2), 16 (as is)
and 32 (max-pool 2x2) maps, all D channels wide.

``petl`` turns the frozen probe into one of the paper's PETL rows (:mod:`.petl`: LoRA,
VPT-deep, AdaptFormer, SSF): the ViT stays frozen and in eval mode, the method's modules and
the pyramid train.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from .petl import build_petl, load_plain_state_dict
from .pretrained import load_trunk_weights
from .small_inputs import crop_to_input, pad_small_input
from .trunk import ViTTrunk, create_trunk


class ViTPyramid(nn.Module):
    """``(B, 3, H, W) -> [(B, D, H/s, W/s) for s in 4, 8, 16, 32]`` (for ``out_indices``).

    What it returns, for the neck: :attr:`out_channels` (``D``, the trunk's width, for
    every map) and :attr:`out_strides` (``s``), one entry per map.

    Args:
        trunk: timm model name of a VisionTransformer or an Eva (DINOv3, EVA-02, PE).
        pretrained: None, a local checkpoint or a timm tag (see :mod:`.pretrained`).
        frozen: freeze the whole ViT (it then always runs in eval mode).
        drop_path_rate: stochastic depth of the ViT blocks.
        out_indices: which pyramid levels to return.
        with_cp: activation checkpointing of the ViT blocks.
        trunk_kwargs: extra ``timm.create_model`` arguments.
        petl: a parameter-efficient method on the frozen ViT, ``dict(method='lora' |
            'vpt' | 'adaptformer' | 'ssf', **its arguments)`` (:mod:`.petl`); needs
            ``frozen=True``.
    """

    def __init__(
        self,
        trunk: str = 'vit_base_patch16_224',
        pretrained: Optional[str] = None,
        frozen: bool = False,
        drop_path_rate: float = 0.0,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        with_cp: bool = False,
        trunk_kwargs: Optional[dict] = None,
        petl: Optional[dict] = None,
    ) -> None:
        super().__init__()
        self.trunk_name = trunk
        self.trunk_kwargs = dict(trunk_kwargs or {})
        # behind a wrapper without init_weights(): mmengine never re-draws the ViT (or LoRA)
        self.trunk = ViTTrunk(trunk, drop_path_rate, **self.trunk_kwargs)
        depth, dim = len(self.vit.blocks), self.vit.embed_dim
        if depth % 4:
            raise ValueError(f'a trunk of {depth} blocks cannot feed 4 pyramid levels evenly')
        if dim % 32:
            raise ValueError(f'trunk width {dim} is not divisible by the 32 groups of the pyramid')
        self.feature_blocks = tuple(depth * (i + 1) // 4 - 1 for i in range(4))  # 2, 5, 8, 11
        self.out_indices = tuple(out_indices)
        self.frozen = frozen
        self.with_cp = with_cp
        self.vit.set_grad_checkpointing(bool(with_cp))
        # One LayerNorm per tapped block: the raw residual stream of a ViT grows in scale with
        # depth, and ViTBaseline normalises each tap before its pyramid branch. The norms are
        # part of the pyramid, not of the trunk, so they train even in the frozen-trunk probe
        # (as in ViTBaseline, where only the ViT's own weights are pretrained).
        self.norms = nn.ModuleList([nn.LayerNorm(dim, eps=1e-6) for _ in range(4)])
        self.pyramid = nn.ModuleList(
            [
                nn.Sequential(
                    nn.ConvTranspose2d(dim, dim, 2, 2),
                    # GroupNorm, as ViTBaseline: batch-size independent (detection trains
                    # with 2 images per GPU), no running statistics.
                    nn.GroupNorm(32, dim),
                    nn.GELU(),
                    nn.ConvTranspose2d(dim, dim, 2, 2),
                ),
                nn.ConvTranspose2d(dim, dim, 2, 2),
                nn.Identity(),
                nn.MaxPool2d(2),
            ]
        )
        self.vit.requires_grad_(not frozen)
        self.petl = None
        if petl is not None:
            if not frozen:
                raise ValueError(f'petl={petl} adapts a frozen trunk: set frozen=True')
            if not isinstance(self.vit, VisionTransformer):
                # VPT's prompts would meet an Eva's rotary embeddings, LoRA its q/k/v layout
                raise ValueError(
                    f'petl={petl}: the PETL methods adapt timm VisionTransformer trunks; trunk '
                    f"'{trunk}' is a timm {type(self.vit).__name__}"
                )
            self.petl = build_petl(self.vit, petl)
            # Only the method's own parameters inside the trunk (LoRA) train there.
            tuned = self.petl.trunk_parameter_names(self.vit)
            for name, param in self.vit.named_parameters():
                param.requires_grad_(name in tuned)
        if pretrained:
            self.load_pretrained(pretrained)

    @property
    def vit(self) -> nn.Module:
        """The timm ViT (``trunk.vit``; state-dict keys ``trunk.vit.*``)."""
        return self.trunk.vit

    @staticmethod
    def rename_old_keys(state_dict: dict, prefix: str = '') -> None:
        """State dicts of hst_mm 0.2.0 and earlier hold the ViT as ``vit.*``: renamed to
        ``trunk.vit.*`` in place (keys under ``prefix``, this module's place in the model)."""
        for key in [k for k in state_dict if k.startswith(f'{prefix}vit.')]:
            state_dict[f'{prefix}trunk.{key[len(prefix) :]}'] = state_dict.pop(key)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # before this module and its children load them (torch hands the children the
        # entries of this dict)
        self.rename_old_keys(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def load_pretrained(self, source: str) -> None:
        if self.petl is None:
            load_trunk_weights(self.vit, self.trunk_name, source, **self.trunk_kwargs)
            return
        # A PETL trunk's keys differ from a plain ViT's (LoRA renames the layers it wraps)
        # and hold the method's parameters: the weights go through a plain trunk first (timm's
        # loaders, position-embedding resampling and named errors as for any trunk), then are
        # copied over key by key. The plain copy lives only for this call.
        plain = create_trunk(self.trunk_name, **self.trunk_kwargs)
        load_trunk_weights(plain, self.trunk_name, source, **self.trunk_kwargs)
        load_plain_state_dict(self.vit, self.petl, plain.state_dict(), source)

    def train(self, mode: bool = True) -> 'ViTPyramid':
        super().train(mode)
        if self.frozen:
            self.vit.eval()
        return self

    @property
    def strides(self) -> Tuple[float, ...]:
        """Input pixels per map cell of the four levels: p/4, p/2, p, 2p (4, 8, 16, 32 for
        a /16 trunk)."""
        p = self.vit.patch_embed.patch_size[0]
        return (p / 4, p / 2, p, 2 * p)

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each map :meth:`forward` returns, in its order: the trunk's width for
        every level, e.g. (768, 768, 768, 768) for ViT-B. A neck's ``in_channels``."""
        return (self.vit.embed_dim,) * len(self.out_indices)

    @property
    def out_strides(self) -> Tuple[float, ...]:
        """Input pixels per cell of each map :meth:`forward` returns, in its order
        (:attr:`strides` of ``out_indices``): (4, 8, 16, 32) for a /16 trunk."""
        return tuple(self.strides[i] for i in self.out_indices)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> tuple of (B, D, H_i, W_i), H_i ~ H / s_i (:attr:`strides`).

        The stride-32 level max-pools the patch grid by 2, so a dimension of one patch or
        less (a grid of 1, which would pool to nothing) is zero-padded to two patches and
        every map cropped back to ``max(1, ceil(H / s))`` (:mod:`.small_inputs`); larger
        inputs are not touched.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f'expected a (B, 3, H, W) batch, got shape {tuple(x.shape)}')
        p = self.vit.patch_embed.patch_size[0]
        size = tuple(x.shape[-2:])
        x = pad_small_input(x, min_size=p + 1, pad_to=2 * p)
        # timm's own intermediates: NCHW maps of the tapped blocks, dense (mmcv's compiled
        # RoIAlign reads dense NCHW; see HierarchicalSideNetwork.forward).
        feats = self.vit.forward_intermediates(
            x,
            indices=list(self.feature_blocks),
            norm=False,
            output_fmt='NCHW',
            intermediates_only=True,
        )
        outs = [
            self.pyramid[i](self.normalize_tap(i, feats[i])).contiguous() for i in self.out_indices
        ]
        return crop_to_input(
            outs, size, tuple(x.shape[-2:]), [self.strides[i] for i in self.out_indices]
        )

    def normalize_tap(self, level: int, feat: torch.Tensor) -> torch.Tensor:
        """LayerNorm over channels of one tapped block: (B, D, h, w) -> (B, D, h, w).

        timm returns NCHW maps; the norm runs on the (B, h, w, D) view, no copy.
        """
        return self.norms[level](feat.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


ViTSimplePyramid = ViTPyramid  # the name before 0.2
