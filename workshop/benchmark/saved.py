"""What autograd saves for backward during one training forward, per part of the model.

Every tensor autograd keeps for backward passes through ``saved_tensors_hooks``; module
hooks say which part of the model was running when it was saved. Sizes are of whole
storages, each counted once (a view keeps its whole storage alive), parameters excluded,
attributed to the first part, in :func:`part_modules`' order, that saved them (a trunk
block's output, which the T-Bridge and the next block both keep, is the trunk's whichever
runs first). An activation-checkpointed region shows the
inputs its checkpoint keeps, not what it recomputes in backward.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import torch
import torch.nn as nn


def part_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The parts to attribute saved tensors to: (name, module), outer parts first.

    HST: ``trunk``, ``bridge``, ``side`` (its checkpoint inputs, if any), ``side stage s``
    (stem or downsampling, Side Blocks, norm); the simple pyramid: ``trunk``, ``pyramid``;
    a detector or segmentor: the backbone's parts, then ``neck`` and ``heads``.
    """
    from timm.models.vision_transformer import VisionTransformer

    from hst_mm.models import HST, ViTPyramid

    backbone = getattr(model, 'backbone', model)
    parts: List[Tuple[str, nn.Module]] = []
    if isinstance(backbone, HST):
        side = backbone.side
        # The side network runs the trunk block by block (MetaTokenViT.iter_blocks, not a
        # call of the trunk module): saved_activation_mb marks those steps as the trunk's.
        parts += [('trunk', backbone.trunk), ('bridge', backbone.bridge), ('side', side)]
        for s, norm in enumerate(side.norms):
            name = f'side stage {s + 1}'
            parts.append((name, side.stem if s == 0 else side.downsamples[s - 1]))
            parts.append((name, norm))
        parts += [(f'side stage {s + 1}', b) for s, b in zip(side.stage_of_block, side.blocks)]
    elif isinstance(backbone, ViTPyramid):
        # timm's forward_intermediates calls the ViT's blocks one by one, not the ViT.
        parts += [('trunk', m) for m in backbone.vit.modules() if m is not backbone.vit]
        # its levels are called one by one, not the ModuleList
        parts += [('pyramid', m) for m in backbone.pyramid.modules()]
    elif isinstance(backbone, VisionTransformer):
        parts.append(('trunk', backbone))
    else:
        parts.append(('backbone', backbone))
    if backbone is not model:
        for name, child in model.named_children():
            if child is not backbone:
                parts.append(('neck' if name == 'neck' else 'heads', child))
    return parts


def _marked_blocks(iter_blocks: Callable, stack: List[str]) -> Callable:
    """``iter_blocks`` with ``'trunk'`` on ``stack`` while each of its steps runs, so that
    what a trunk block saves between its modules (e.g. the input of a recomputed MLP) is the
    trunk's, not that of the side network that asked for the block."""

    def marked(*args, **kwargs):
        blocks = iter_blocks(*args, **kwargs)
        while True:
            stack.append('trunk')
            try:
                item = next(blocks)
            except StopIteration:
                return
            finally:
                stack.pop()
            yield item

    return marked


def saved_activation_mb(model: nn.Module, forward_loss: Callable[[], torch.Tensor]) -> Dict:
    """MB that autograd saves for backward in ``forward_loss()``, per part of ``model``.

    ``forward_loss`` runs a training forward and returns the loss; its backward is run
    afterwards so that nothing stays alive. Returns ``{'parts': {part: MB}, 'total': MB}``
    (``other``: saved outside every part, e.g. by the loss).
    """
    stack: List[str] = []

    def enter(name: str) -> Callable:
        def hook(module, args) -> None:
            stack.append(name)

        return hook

    def leave(module, args, output) -> None:  # returns None: the output stays as it is
        stack.pop()

    handles = []
    for name, module in part_modules(model):
        handles.append(module.register_forward_pre_hook(enter(name)))
        handles.append(module.register_forward_hook(leave))
    trunk = getattr(getattr(model, 'backbone', model), 'trunk', None)
    streamed = trunk is not None and hasattr(trunk, 'iter_blocks')
    if streamed:  # HST: the trunk's blocks run one at a time inside the side network
        trunk.iter_blocks = _marked_blocks(trunk.iter_blocks, stack)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    order = [n for n, _ in part_modules(model)] + ['other']
    rank = {n: order.index(n) for n in order}
    seen: Dict[int, Tuple[str, int]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        part = stack[-1] if stack else 'other'
        if ptr not in params and storage.nbytes():
            if ptr not in seen or rank[part] < rank[seen[ptr][0]]:
                seen[ptr] = (part, storage.nbytes())
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = forward_loss()
    finally:
        for h in handles:
            h.remove()
        if streamed:
            del trunk.iter_blocks  # the class's method again
    loss.backward()
    model.zero_grad(set_to_none=True)
    parts: Dict[str, float] = {}
    for part, nbytes in seen.values():
        parts[part] = parts.get(part, 0.0) + nbytes / 2**20
    # A part under 0.05 MB is left out (e.g. the bridge of the lean trunk, whose inputs are
    # views of the trunk's block outputs, counted as the trunk's).
    parts = {n: round(parts[n], 1) for n in dict.fromkeys(order) if round(parts.get(n, 0), 1)}
    return {'parts': parts, 'total': round(sum(parts.values()), 1)}
