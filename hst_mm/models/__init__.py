"""Plain-PyTorch HST modules (torch + timm only), one paper box per file."""
from .bridge import TBridge
from .hst import HSTBackbone
from .pretrained import PretrainedMismatchError
from .side_block import CrossAttention, SideBlock
from .side_network import HierarchicalSideNetwork
from .simple_pyramid import ViTSimplePyramid
from .trunk import MetaTokenViT

__all__ = ['HSTBackbone', 'MetaTokenViT', 'TBridge', 'SideBlock', 'CrossAttention',
           'HierarchicalSideNetwork', 'PretrainedMismatchError', 'ViTSimplePyramid']
