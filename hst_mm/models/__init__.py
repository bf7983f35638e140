"""Plain-PyTorch HST modules (torch + timm only), one paper box per file.

``HST`` and ``ViTPyramid`` are the classes that ``type='HST'`` / ``type='ViTPyramid'`` build
in OpenMMLab configs (:mod:`hst_mm.registration` adds ``init_weights`` and ``init_cfg``).
"""

from .bridge import TBridge
from .hst import HST, HSTBackbone
from .pretrained import PretrainedMismatchError
from .side_block import CrossAttention, SideBlock
from .side_network import HierarchicalSideNetwork
from .simple_pyramid import ViTPyramid, ViTSimplePyramid
from .trunk import MetaTokenViT, create_trunk

__all__ = [
    'HST',
    'ViTPyramid',
    'MetaTokenViT',
    'TBridge',
    'SideBlock',
    'CrossAttention',
    'HierarchicalSideNetwork',
    'PretrainedMismatchError',
    'create_trunk',
    'HSTBackbone',
    'ViTSimplePyramid',
]
