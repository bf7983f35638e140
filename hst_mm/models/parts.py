"""Which part of a model a parameter or a module is: the one home of the backbones' layout.

Both backbones hold their timm ViT at ``trunk.vit`` (:data:`VIT_PATH`): HST inside
:class:`.trunk.MetaTokenViT` (with the meta tokens beside it), the baselines' ``ViTPyramid``
inside :class:`.trunk.ViTTrunk`. Around the trunk: HST's ``bridge`` and ``side`` network;
the baselines' ``norms`` and ``pyramid``, and the PETL method's ``petl`` module (LoRA's
parameters live inside the trunk as ``*.lora_*``). In a detector or segmentor the backbone
is ``backbone``, followed by ``neck`` and the heads.

Used by the parameter counts (``tools/analysis/count_params.py``), the saved-activation
breakdown of the benchmark, the trainable-only export (:mod:`hst_mm.engine.frozen_trunk`)
and the OpenMMLab registration (:mod:`hst_mm.registration`).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch.nn as nn

from .hst import HST
from .simple_pyramid import ViTPyramid
from .trunk import TRUNK_TYPES

# Where each backbone of this package holds the timm ViT that ``load_pretrained`` fills.
VIT_PATH = 'trunk.vit'

# The parts of :func:`part_of`, in the model's order.
PARTS = (
    'trunk frozen',
    'trunk tuned',
    'meta tokens',
    'bridge',
    'side network',
    'pyramid',
    'petl',
    'backbone other',
    'neck',
    'heads',
)


def trunk_vit(backbone: nn.Module) -> Optional[nn.Module]:
    """The timm ViT that ``backbone.load_pretrained`` loads (``backbone.trunk.vit``), or
    None for a module that is not one of this package's backbones."""
    if isinstance(backbone, (HST, ViTPyramid)):
        return backbone.get_submodule(VIT_PATH)
    return None


def rename_old_keys(model: nn.Module, state_dict: dict) -> dict:
    """``state_dict`` (of the whole ``model``) with the keys of older layouts renamed in
    place as the backbones rename them when they load (``ViTPyramid``: ``vit.*`` ->
    ``trunk.vit.*``), for checks that compare a checkpoint's keys with the model's before
    loading it. Returns ``state_dict``."""
    for name, module in model.named_modules():
        if isinstance(module, ViTPyramid):
            module.rename_old_keys(state_dict, f'{name}.' if name else '')
    return state_dict


def part_of(name: str, trainable: bool) -> str:
    """The part (one of :data:`PARTS`) of a detector's / segmentor's parameter ``name``,
    e.g. ``'backbone.trunk.vit.blocks.0.norm1.weight'`` -> ``'trunk tuned'`` if it trains."""
    if not name.startswith('backbone.'):
        return 'neck' if name.startswith('neck.') else 'heads'
    sub = name[len('backbone.') :]
    if sub.startswith('petl.') or '.lora_' in sub:
        return 'petl'
    if sub.startswith('trunk.meta_tokens'):
        return 'meta tokens'
    if sub.startswith('trunk.'):
        return 'trunk tuned' if trainable else 'trunk frozen'
    if sub.startswith('bridge.'):
        return 'bridge'
    if sub.startswith('side.'):
        return 'side network'
    if sub.startswith(('pyramid.', 'norms.')):
        return 'pyramid'
    return 'backbone other'


def part_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The parts of ``model`` as modules, ``(name, module)``, outer parts first, for
    attributing what runs (module hooks) to a part.

    HST: ``trunk``, ``bridge``, ``side`` (its checkpoint inputs, if any), ``side stage s``
    (stem or downsampling, Side Blocks, norm); the simple pyramid: ``trunk``, ``pyramid``;
    a detector or segmentor: the backbone's parts, then ``neck`` and ``heads``.
    """
    backbone = getattr(model, 'backbone', model)
    parts: List[Tuple[str, nn.Module]] = []
    if isinstance(backbone, HST):
        side = backbone.side
        # The side network runs the trunk block by block (MetaTokenViT.iter_blocks, not a
        # call of the trunk module): whoever attributes must mark those steps as the trunk's.
        parts += [('trunk', backbone.trunk), ('bridge', backbone.bridge), ('side', side)]
        for s, norm in enumerate(side.norms):
            name = f'side stage {s + 1}'
            parts.append((name, side.stem if s == 0 else side.downsamples[s - 1]))
            parts.append((name, norm))
        parts += [(f'side stage {s + 1}', b) for s, b in zip(side.stage_of_block, side.blocks)]
    elif isinstance(backbone, ViTPyramid):
        # timm's forward_intermediates calls the ViT's blocks one by one, not the ViT.
        vit = trunk_vit(backbone)
        parts += [('trunk', m) for m in vit.modules() if m is not vit]
        # its levels are called one by one, not the ModuleList
        parts += [('pyramid', m) for m in backbone.pyramid.modules()]
    elif isinstance(backbone, TRUNK_TYPES):  # a bare timm ViT or Eva
        parts.append(('trunk', backbone))
    else:
        parts.append(('backbone', backbone))
    if backbone is not model:
        for name, child in model.named_children():
            if child is not backbone:
                parts.append(('neck' if name == 'neck' else 'heads', child))
    return parts
