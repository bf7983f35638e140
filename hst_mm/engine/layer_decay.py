"""Layer-wise learning-rate decay for timm ViTs (the fully fine-tuned baselines).

MMSegmentation's ``LayerDecayOptimizerConstructor`` and MMDetection's
``LearningRateDecayOptimizerConstructor`` find the transformer blocks by their own backbones'
names (``backbone.layers.N``, ``backbone.stages.N``); a timm ViT names them
``backbone.trunk.vit.blocks.N``, so with those constructors every block would get the head's rate.
This one keeps mmengine's ``DefaultOptimWrapperConstructor`` for everything it does
(``custom_keys``, ``norm_decay_mult``, ...) and only scales each group's learning rate by its
layer:

* ``vit.cls_token``, ``vit.reg_token``, ``vit.pos_embed``, ``vit.patch_embed.*``: layer 0;
* ``vit.blocks.i.*``: layer ``i + 1``;
* everything else (pyramid, neck, heads): layer ``num_layers + 1``, the full rate;

``lr = base_lr * lr_mult * decay_rate ** (num_layers + 1 - layer_id)``, as in the BEiT / MAE
recipes (and mmseg's constructor). Usage::

    optim_wrapper = dict(
        constructor='ViTLayerDecayOptimizerConstructor',
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
        paramwise_cfg=dict(num_layers=12, decay_rate=0.7, norm_decay_mult=0.0),
    )
"""

from __future__ import annotations

import re
from typing import List, Optional

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

# A timm ViT's parts, after any prefix that ends in 'vit.' ('backbone.trunk.vit.' of both
# backbones).
_EMBEDDING = re.compile(r'(^|\.)vit\.(cls_token|reg_token|pos_embed|patch_embed\.)')
_BLOCK = re.compile(r'(^|\.)vit\.blocks\.(\d+)\.')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ViTLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor plus layer-wise lr decay over a timm ViT's blocks.

    ``paramwise_cfg`` takes mmengine's keys and two more:

    Args (in ``paramwise_cfg``):
        num_layers: the ViT's number of blocks (12 for ViT-B, 24 for ViT-L).
        decay_rate: the lr factor per layer, in (0, 1].

    Registered in mmengine's root registry, which mmdet's and mmseg's fall back to.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        missing = [k for k in ('num_layers', 'decay_rate') if k not in paramwise_cfg]
        if missing:
            raise KeyError(
                f'optim_wrapper.paramwise_cfg lacks {", ".join(missing)}: '
                f'ViTLayerDecayOptimizerConstructor needs num_layers (the ViT depth) and '
                f'decay_rate'
            )
        # Read, not popped: mmengine ignores keys it does not know, and builds per-parameter
        # groups (add_params) only when paramwise_cfg is not empty.
        self.num_layers = paramwise_cfg['num_layers']
        self.decay_rate = paramwise_cfg['decay_rate']
        if not (isinstance(self.num_layers, int) and self.num_layers > 0):
            raise ValueError(
                f'optim_wrapper.paramwise_cfg.num_layers={self.num_layers!r}: '
                f'expected a positive int'
            )
        if not 0 < self.decay_rate <= 1:
            raise ValueError(
                f'optim_wrapper.paramwise_cfg.decay_rate={self.decay_rate!r}: expected (0, 1]'
            )
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def get_layer_id(self, name: str) -> int:
        """The layer of parameter ``name``: 0 embeddings, i + 1 block i, num_layers + 1 rest."""
        if _EMBEDDING.search(name):
            return 0
        block = _BLOCK.search(name)
        if block:
            index = int(block.group(2))
            if index >= self.num_layers:
                raise ValueError(
                    f'{name}: block {index} of a ViT, but optim_wrapper.paramwise_cfg.'
                    f'num_layers={self.num_layers}; set it to the trunk depth'
                )
            return index + 1
        return self.num_layers + 1

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs):
        """mmengine's groups (one per parameter), each lr then scaled by its layer."""
        if prefix:  # mmengine's recursion into the children: unchanged
            return super().add_params(params, module, prefix, **kwargs)
        start = len(params)
        super().add_params(params, module, prefix, **kwargs)
        names = {id(p): n for n, p in module.named_parameters()}
        decayed = 0
        for group in params[start:]:
            (param,) = group['params']  # mmengine builds one group per parameter
            layer_id = self.get_layer_id(names[id(param)])
            scale = self.decay_rate ** (self.num_layers + 1 - layer_id)
            group['lr'] = group.get('lr', self.base_lr) * scale
            decayed += layer_id <= self.num_layers
        if not decayed:
            raise ValueError(
                'ViTLayerDecayOptimizerConstructor: no trainable parameter belongs to a timm '
                "ViT ('vit.blocks.N', 'vit.pos_embed', ...): nothing to decay (a frozen "
                'trunk? use the default constructor)'
            )
        print_log(
            f'layer-wise lr decay {self.decay_rate} over {self.num_layers} ViT blocks: '
            f'{decayed} of {len(params) - start} parameter groups decayed',
            logger='current',
        )
