"""OpenMMLab registration: ``type='HST'`` and the baselines' ``type='ViTPyramid'``.

Both are registered once in mmengine's root ``MODELS`` registry, which mmdet's and mmseg's
registries fall back to, so they build from either framework's configs. Each is the
plain-PyTorch class of :mod:`hst_mm.models` (same arguments, passed through) plus what
mmengine expects of a backbone: ``init_cfg``, and ``pretrained`` loaded in
``init_weights()`` rather than in the constructor.
"""

from __future__ import annotations

import copy
from typing import Optional, Tuple, Union

import torch
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from . import models
from .models.parts import VIT_PATH


class PretrainedOnInit(BaseModule):
    """Loads the trunk's ``pretrained`` weights in ``init_weights()``, as mmengine expects.

    The Runner calls ``init_weights()`` before training; ``tools/test.py`` does not, so
    testing a checkpoint never needs the pretrained source. mmengine's default
    ``init_weights()`` visits direct children only; ours (the trunk wrappers
    :class:`~hst_mm.models.trunk.MetaTokenViT` / :class:`~hst_mm.models.trunk.ViTTrunk`,
    bridge, side network, pyramid) have no ``init_weights()``, so the timm ViT's own, which
    would re-randomise the trunk (and LoRA's A and B in it), is never reached.

    The trunk is loaded once: by ``init_weights()`` or by :meth:`load_pretrained_once`,
    whichever comes first (mmengine's init flag, set only there, records it).
    """

    pretrained: Optional[str] = None

    def init_weights(self) -> None:
        loaded = self.is_init
        super().init_weights()  # applies init_cfg, if any; mmengine's flag is set after it
        if not loaded and self.pretrained:
            self.load_pretrained(self.pretrained)

    def load_pretrained_once(self) -> None:
        """Load the trunk from ``pretrained`` now, unless it is loaded already; a later
        ``init_weights()`` then leaves the trunk alone (for a checkpoint without the frozen
        trunk, loaded where the Runner's ``init_weights()`` has not run: tools/test.py,
        the Inferencers)."""
        if not self.is_init:
            self.load_pretrained(self.pretrained)
            self._is_init = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """A state dict without the frozen trunk (a trainable-only export of
        ``tools/export_trainable.py``) gets the trunk from ``pretrained`` first: whatever
        loads it (the Runner, mmdet's / mmseg's Inferencers, ``load_checkpoint``), the model
        never runs on an untrained trunk. The state dict's own trunk weights (the tuned
        LayerNorms) are copied over it afterwards, as torch loads children after parents."""
        ours = [k for k in state_dict if k.startswith(prefix)]
        trunk_key = f'{prefix}{VIT_PATH}.patch_embed.proj.weight'
        if ours and trunk_key not in state_dict and not self.is_init:
            if not self.pretrained:
                raise models.PretrainedMismatchError(
                    f'the checkpoint holds this backbone without its frozen trunk (no '
                    f"'{trunk_key}'; a trainable-only export?) and {prefix}pretrained is not "
                    f"set: point model.backbone.pretrained at the trunk's weights"
                )
            self.load_pretrained_once()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@MODELS.register_module()
class HST(models.HST, PretrainedOnInit):
    """:class:`hst_mm.models.HST` for MMDetection / MMSegmentation configs.

    ``(B, 3, H, W) -> [(B, C_i, H/s, W/s) for s in 4, 8, 16, 32]``.
    """

    def __init__(
        self,
        pretrained: Optional[str] = None,
        init_cfg: Optional[Union[dict, list]] = None,
        **kwargs,
    ) -> None:
        super().__init__(pretrained=None, **kwargs)
        self.pretrained = pretrained
        self.init_cfg = init_cfg


@MODELS.register_module()
class ViTPyramid(models.ViTPyramid, PretrainedOnInit):
    """:class:`hst_mm.models.ViTPyramid`, the paper's baselines, for OpenMMLab configs: a timm
    ViT fully fine-tuned (``frozen=False``) or frozen (``frozen=True``, the frozen-trunk
    probe; with ``petl``: a PETL method on it), with a simple feature pyramid."""

    def __init__(
        self,
        pretrained: Optional[str] = None,
        init_cfg: Optional[Union[dict, list]] = None,
        **kwargs,
    ) -> None:
        super().__init__(pretrained=None, **kwargs)
        self.pretrained = pretrained
        self.init_cfg = init_cfg


def fit_heads_to_backbone(model_cfg: dict) -> Tuple[int, ...]:
    """Give the neck of an OpenMMLab ``model`` config (mmseg's UperNet, without a neck: its
    ``decode_head`` and ``auxiliary_head``) the ``in_channels`` its ``backbone`` returns.

    For a config whose backbone was changed (another trunk, other side widths): the backbone
    is built on the meta device (shapes only: no memory, no weights) and its
    ``out_channels`` read, e.g. (64, 128, 256, 384) for HST's defaults. An auxiliary head
    gets the width of the map it reads (``in_index``). Returns the widths.
    """
    backbone = copy.deepcopy(model_cfg['backbone'])
    backbone.pop('_delete_', None)
    with torch.device('meta'):
        widths = tuple(MODELS.build(backbone).out_channels)
    if model_cfg.get('neck'):
        model_cfg['neck']['in_channels'] = list(widths)
        return widths
    model_cfg['decode_head']['in_channels'] = list(widths)
    aux = model_cfg.get('auxiliary_head')
    if aux:
        aux['in_channels'] = widths[aux.get('in_index', -1)]
    return widths
