"""Count a model's parameters, total and trainable, split by part.

Parts (:mod:`hst_mm.models.parts`): trunk frozen, trunk tuned (LN-tuning), meta tokens,
bridge, side network (HST); pyramid (the baselines' simple pyramid and its norms); petl (the
PETL rows' LoRA, prompts, adapters or scale/shift vectors); neck; heads.
``build_model(cfg, meta=True)`` builds a config's model on PyTorch's meta device: the same
modules and parameter shapes, no memory and no random initialisation (the ViT-L HST Mask
R-CNN in 3 s instead of 19 s on a 2-core CPU).
``tools/analysis/count_params.py`` is the command line over it.
"""

import importlib
from collections import OrderedDict

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch.overrides import TorchFunctionMode

import hst_mm  # noqa: F401  (registers the backbones)
from hst_mm.models.parts import PARTS, part_of


class _NoValuesOnMeta(TorchFunctionMode):
    """Skips the value-only in-place ops of weight initialisation on meta tensors: they change
    no shape, and the meta device runs ``clamp_`` and ``erfinv_`` (timm's ``trunc_normal_``)
    through PyTorch's Python references, ~2 ms a call: half of a ViT-B config's meta build."""

    SKIP = frozenset({torch.Tensor.clamp_, torch.Tensor.erfinv_})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.SKIP and args and getattr(args[0], 'is_meta', False):
            return args[0]
        return func(*args, **(kwargs or {}))


def build_model(cfg: Config, meta: bool = False):
    """Build ``cfg.model`` in its framework's registry, without pretrained weights; on the
    meta device (shapes only) if ``meta``."""
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    backbone = cfg.model.get('backbone', {})
    if 'pretrained' in backbone:
        backbone.pretrained = None
    cfg.model.pop('pretrained', None)  # mmseg's EncoderDecoder-level pretrained
    if 'init_cfg' in backbone:
        backbone.init_cfg = None
    models = importlib.import_module(f'{scope}.registry').MODELS
    if meta:
        with torch.device('meta'), _NoValuesOnMeta():
            return models.build(cfg.model)
    return models.build(cfg.model)


def count(model) -> 'OrderedDict[str, dict]':
    """{part: {'total': n, 'trainable': n}} plus an 'all' row."""
    rows = OrderedDict((p, {'total': 0, 'trainable': 0}) for p in PARTS)
    for name, p in model.named_parameters():
        row = rows[part_of(name, p.requires_grad)]
        row['total'] += p.numel()
        row['trainable'] += p.numel() if p.requires_grad else 0
    rows = OrderedDict((k, v) for k, v in rows.items() if v['total'])
    rows['all'] = {k: sum(r[k] for r in rows.values()) for k in ('total', 'trainable')}
    return rows
