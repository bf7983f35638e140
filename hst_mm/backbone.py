"""OpenMMLab adapters: ``type='HST'`` and the baseline ``type='ViTPyramid'``.

Both are registered once in mmengine's root ``MODELS`` registry, which mmdet's and mmseg's
registries fall back to, so they build from either framework's configs. Import them with
``custom_imports=dict(imports=['hst_mm'], allow_failed_imports=False)``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

from mmengine.model import BaseModule
from mmengine.registry import MODELS

from .models import HSTBackbone, ViTSimplePyramid


class PretrainedOnInit(BaseModule):
    """Loads the trunk's ``pretrained`` weights in ``init_weights()``, as mmengine expects.

    The Runner calls ``init_weights()`` before training; ``tools/test.py`` does not, so
    testing a checkpoint never needs the pretrained source. mmengine's default
    ``init_weights()`` visits direct children only; ours (trunk wrapper, bridge, side
    network) have no ``init_weights()``, so the timm ViT's own, which would re-randomise the
    trunk, is never reached.
    """

    pretrained: Optional[str] = None

    def init_weights(self) -> None:
        first_call = not self._is_init
        super().init_weights()          # applies init_cfg, if any
        if first_call and self.pretrained:
            self.load_pretrained(self.pretrained)


@MODELS.register_module()
class HST(HSTBackbone, PretrainedOnInit):
    """HST for MMDetection / MMSegmentation configs.

    Same arguments as :class:`hst_mm.models.HSTBackbone`, plus ``init_cfg``.
    ``(B, 3, H, W) -> [(B, C_i, H/s, W/s) for s in 4, 8, 16, 32]``.
    """

    def __init__(self, trunk: str = 'vit_base_patch16_224', pretrained: Optional[str] = None,
                 embed_dims: Sequence[int] = (64, 128, 256, 384),
                 num_heads: Sequence[int] = (2, 4, 8, 12), drop_path_rate: float = 0.0,
                 out_indices: Sequence[int] = (0, 1, 2, 3), with_cp: Union[bool, str] = False,
                 trunk_kwargs: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(trunk=trunk, pretrained=None, embed_dims=embed_dims,
                         num_heads=num_heads, drop_path_rate=drop_path_rate,
                         out_indices=out_indices, with_cp=with_cp, trunk_kwargs=trunk_kwargs)
        self.pretrained = pretrained
        self.init_cfg = init_cfg


@MODELS.register_module()
class ViTPyramid(ViTSimplePyramid, PretrainedOnInit):
    """The paper's baselines: a timm ViT, fully fine-tuned (``frozen=False``) or frozen
    (``frozen=True``, the frozen-trunk probe), with a simple feature pyramid.

    Same arguments as :class:`hst_mm.models.ViTSimplePyramid`, plus ``init_cfg``.
    """

    def __init__(self, trunk: str = 'vit_base_patch16_224', pretrained: Optional[str] = None,
                 frozen: bool = False, drop_path_rate: float = 0.0,
                 out_indices: Sequence[int] = (0, 1, 2, 3), with_cp: bool = False,
                 trunk_kwargs: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(trunk=trunk, pretrained=None, frozen=frozen,
                         drop_path_rate=drop_path_rate, out_indices=out_indices,
                         with_cp=with_cp, trunk_kwargs=trunk_kwargs)
        self.pretrained = pretrained
        self.init_cfg = init_cfg
