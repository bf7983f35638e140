"""Hierarchical Side Network: a small pyramid at strides 4/8/16/32 fed by the trunk."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .bridge import TBridge
from .side_block import SideBlock
from .weight_init import init_side_weights


def split_blocks(depth: int, num_stages: int) -> List[int]:
    """Assign trunk blocks to side stages evenly and in order: stage index per block.

    >>> split_blocks(12, 4)
    [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    """
    if depth % num_stages:
        raise ValueError(
            f'a trunk of {depth} blocks cannot be split evenly into {num_stages} '
            f'side stages (embed_dims has {num_stages} entries): choose a trunk '
            f'whose depth is a multiple of {num_stages}'
        )
    return [b * num_stages // depth for b in range(depth)]


@contextmanager
def buffers_kept(module: nn.Module) -> Iterator[None]:
    """Within the block ``module``'s buffers may change; afterwards they hold their values
    from before again. A recomputation in backward runs a training-mode BatchNorm a second
    time on the same batch: its running statistics must count that batch once."""
    kept = [b.clone() for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(module.buffers(), kept):
                buffer.copy_(value)


class TokenConv(nn.Module):
    """A conv stage entrance that returns LayerNorm-ed tokens and their grid size.

    ``recompute``: in training, keep only the input for backward and run the convolution and
    norm again there (buffers, e.g. a BatchNorm's running statistics, change once a step).
    """

    def __init__(self, conv: nn.Module, dim: int, recompute: bool = False) -> None:
        super().__init__()
        self.conv = conv
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.recompute = recompute

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """(B, C_in, H, W) -> (B, H'*W', C), (H', W')."""
        if self.recompute and torch.is_grad_enabled():
            contexts = lambda: (nullcontext(), buffers_kept(self))  # noqa: E731
            return checkpoint(self._tokens, x, use_reentrant=False, context_fn=contexts)
        return self._tokens(x)

    def _tokens(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        x = self.conv(x)
        size = tuple(x.shape[-2:])
        return self.norm(x.flatten(2).transpose(1, 2)), size


class HierarchicalSideNetwork(nn.Module):
    """Stem, then per stage: (downsample) -> Side Blocks -> LayerNorm -> map.

    Args:
        embed_dims: widths C_s of the stages.
        num_heads: cross-attention heads per stage.
        stage_of_block: for each trunk block, the stage whose next Side Block it feeds.
        drop_path_rate: stochastic depth, rising linearly from 0 over all Side Blocks.
        in_chans: image channels.
        with_cp: checkpoint each bridge + Side Block step: at stride 4 the side network
            stores about as much for backward as the whole ViT-B trunk.
        fold_attention: the folded cross-attention (:class:`.side_block.CrossAttention`);
            False: the reference computation, same values.
        recompute: selective recomputation inside each Side Block (``SideBlock.recompute``),
            and of the stem (``TokenConv.recompute``): its stride-2 maps are the side
            network's largest tensors (~75 MB stored for two 512x512 images otherwise).
        compile_options: ``torch.compile`` arguments (a dict) for the Side Blocks' training
            forward (``SideBlock.compile_options``); None: eager.
    """

    def __init__(
        self,
        embed_dims: Sequence[int],
        num_heads: Sequence[int],
        stage_of_block: Sequence[int],
        drop_path_rate: float = 0.0,
        in_chans: int = 3,
        with_cp: bool = False,
        fold_attention: bool = True,
        recompute: bool = False,
        compile_options: Optional[dict] = None,
    ) -> None:
        super().__init__()
        self.with_cp = with_cp
        if len(embed_dims) != len(num_heads):
            raise ValueError(
                f'embed_dims {tuple(embed_dims)} and num_heads {tuple(num_heads)} '
                f'must have one entry per stage'
            )
        c1 = embed_dims[0]
        self.stage_of_block = tuple(stage_of_block)
        self.stem = TokenConv(
            nn.Sequential(
                nn.Conv2d(in_chans, c1, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c1),
                nn.ReLU(inplace=True),
                nn.Conv2d(c1, c1, 2, stride=2),
            ),
            c1,
            recompute=recompute,
        )
        self.downsamples = nn.ModuleList(
            TokenConv(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), c_out)
            for c_in, c_out in zip(embed_dims[:-1], embed_dims[1:])
        )
        # device='cpu': the rates are Python floats, so the model also builds under
        # `with torch.device('meta')` (tools/analysis/count_params.py --meta).
        rates = torch.linspace(0, drop_path_rate, len(self.stage_of_block), device='cpu').tolist()
        self.blocks = nn.ModuleList(
            SideBlock(
                embed_dims[s],
                num_heads[s],
                drop_path=rate,
                fold=fold_attention,
                recompute=recompute and not with_cp,
            )
            for s, rate in zip(self.stage_of_block, rates)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(c, eps=1e-6) for c in embed_dims)
        self.apply(init_side_weights)
        if compile_options is not None:
            for block in self.blocks:
                block.compile_options = dict(compile_options)

    def forward(
        self,
        img: torch.Tensor,
        blocks: Iterable[Tuple[torch.Tensor, torch.Tensor]],
        bridge: TBridge,
    ) -> List[torch.Tensor]:
        """Build the pyramid from the trunk's blocks as they come.

        Args:
            img: (B, 3, H, W) the input image.
            blocks: yields each trunk block's (meta (B, 1, D), patch map (B, D, h, w)), in
                block order: :meth:`.trunk.MetaTokenViT.iter_blocks`, or
                ``zip(*trunk(img))`` for the lists of a whole trunk run.
            bridge: the T-Bridge.

        Returns:
            per stage s, (B, C_s, H_s, W_s) with H_s ~ H / 2**(s + 2).

        Side step ``b`` needs only trunk block ``b`` and the side steps before it, so with
        ``iter_blocks`` each block's outputs are bridged as soon as they exist, and in
        inference a block's tokens are freed before the next block runs (the trunk's memory
        is reused instead of twelve blocks' outputs being held at once).
        """
        blocks = iter(blocks)
        outs = []
        # The stem's convolutions run channels-last: 3 input channels at full resolution are
        # the slowest layout for oneDNN's NCHW kernels (about 1.8x the time of channels-last
        # on the CPU), and its output's token view (B, H*W, C) is then dense.
        feat = img.contiguous(memory_format=torch.channels_last)
        for s, norm in enumerate(self.norms):
            x, size = self.stem(feat) if s == 0 else self.downsamples[s - 1](feat)
            for b, stage in enumerate(self.stage_of_block):
                if stage != s:
                    continue
                meta, patch_map = self._next_block(blocks, b)
                args = (b, x, meta, patch_map, size, bridge)
                del meta, patch_map  # in inference, the block's tokens go with its side step
                x = (
                    checkpoint(self._step, *args, use_reentrant=False)
                    if self.with_cp and x.requires_grad
                    else self._step(*args)
                )
                del args
            # contiguous: the transposed view is channels-last in memory, and mmcv's RoIAlign
            # (CPU and CUDA) reads its input as dense NCHW without checking: Mask R-CNN's RoI
            # heads would see scrambled features (convolutions and mmseg heads would not).
            feat = norm(x).transpose(1, 2).reshape(x.shape[0], -1, *size).contiguous()
            outs.append(feat)
        if next(blocks, None) is not None:
            raise ValueError(
                f'the trunk gave more than the {len(self.stage_of_block)} blocks the side '
                f'network has Side Blocks for (stage_of_block)'
            )
        return outs

    def _next_block(self, blocks, b: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Trunk block ``b``'s (meta, patch map) from ``blocks``, or a named error."""
        item = next(blocks, None)
        if item is None:
            raise ValueError(
                f'the trunk gave {b} blocks; the side network needs '
                f'{len(self.stage_of_block)}, one per Side Block (stage_of_block)'
            )
        return item

    def _step(
        self,
        b: int,
        x: torch.Tensor,
        meta: torch.Tensor,
        patch_map: torch.Tensor,
        size: Tuple[int, int],
        bridge: TBridge,
    ) -> torch.Tensor:
        """Trunk block ``b`` through the bridge into its Side Block: (B, N, C) -> (B, N, C)."""
        kv, fg = bridge(b, meta, patch_map, size)
        return self.blocks[b](x, kv, fg)
