"""``type='HST'``: the HST backbone registered in mmengine's root ``MODELS`` registry.

mmdet and mmseg registries both fall back to mmengine's root registry, so one
registration serves both. Import it with ``custom_imports=dict(imports=['hst_mm'])``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

from mmengine.model import BaseModule
from mmengine.registry import MODELS

from .models import HSTBackbone


@MODELS.register_module()
class HST(HSTBackbone, BaseModule):
    """HST for MMDetection / MMSegmentation configs.

    Same arguments as :class:`hst_mm.models.HSTBackbone`, plus ``init_cfg``. The trunk's
    ``pretrained`` weights are loaded in :meth:`init_weights` (the Runner calls it before
    training; ``tools/test.py`` does not, so testing a checkpoint never needs them).
    """

    def __init__(self, trunk: str = 'vit_base_patch16_224', pretrained: Optional[str] = None,
                 embed_dims: Sequence[int] = (64, 128, 256, 384),
                 num_heads: Sequence[int] = (2, 4, 8, 12), drop_path_rate: float = 0.0,
                 out_indices: Sequence[int] = (0, 1, 2, 3), with_cp: bool = False,
                 trunk_kwargs: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(trunk=trunk, pretrained=None, embed_dims=embed_dims,
                         num_heads=num_heads, drop_path_rate=drop_path_rate,
                         out_indices=out_indices, with_cp=with_cp, trunk_kwargs=trunk_kwargs)
        self.pretrained = pretrained
        self.init_cfg = init_cfg

    def init_weights(self) -> None:
        """mmengine's init (``init_cfg``), then the trunk's pretrained weights.

        Our children have no ``init_weights`` of their own, so mmengine never reaches the
        timm ViT's ``init_weights()``, which would re-randomise the trunk.
        """
        first_call = not self._is_init
        super().init_weights()
        if first_call and self.pretrained:
            self.load_pretrained(self.pretrained)
