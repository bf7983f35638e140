"""Parameter-efficient fine-tuning (PETL) methods of the baselines' frozen ViT, the paper's
comparison rows: LoRA, VPT-deep, AdaptFormer, SSF. ``build_petl(vit, dict(method=..., ...))``
adapts a frozen timm ViT in place and returns the method module."""

from __future__ import annotations

import torch.nn as nn

from .adaptformer import AdaptFormer
from .base import PETLMethod, load_plain_state_dict
from .lora import LoRA
from .ssf import SSF
from .vpt import VPTDeep

METHODS = {'lora': LoRA, 'vpt': VPTDeep, 'adaptformer': AdaptFormer, 'ssf': SSF}


def build_petl(vit: nn.Module, cfg: dict) -> PETLMethod:
    """``cfg``: ``dict(method=<one of METHODS>, **that method's arguments)``."""
    if not isinstance(cfg, dict) or 'method' not in cfg:
        raise ValueError(f"petl must be a dict with a 'method' key ({sorted(METHODS)}), got {cfg}")
    kwargs = dict(cfg)
    method = kwargs.pop('method')
    if method not in METHODS:
        raise ValueError(f"petl method '{method}' is not one of {sorted(METHODS)}")
    try:
        return METHODS[method](vit, **kwargs)
    except TypeError as e:
        raise TypeError(f"petl method '{method}': {e}") from e


__all__ = [
    'AdaptFormer',
    'LoRA',
    'METHODS',
    'PETLMethod',
    'SSF',
    'VPTDeep',
    'build_petl',
    'load_plain_state_dict',
]
