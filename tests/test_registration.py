"""HST and the baseline backbone build through mmdet's and mmseg's registries; the trunk's
pretrained weights survive mmengine's init_weights()."""

import pytest
import torch

from workshop.fixtures import TINY_SIDE
from workshop.fixtures import TINY_TRUNK as TINY


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
@pytest.mark.parametrize(
    'cfg',
    [
        dict(type='HST', **TINY_SIDE, **TINY),
        dict(type='ViTPyramid', frozen=True, **TINY),
    ],
)
def test_builds_from_registry(scope, cfg):
    import importlib

    from mmengine.registry import init_default_scope

    import hst_mm  # noqa: F401  what custom_imports does

    init_default_scope(scope)
    models = importlib.import_module(f'{scope}.registry').MODELS
    backbone = models.build(dict(cfg)).eval()
    outs = backbone(torch.randn(1, 3, 64, 64))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]
    # what the backbone declares is what it returns
    assert [o.shape[1] for o in outs] == list(backbone.out_channels)
    assert [64 / o.shape[-1] for o in outs] == list(backbone.out_strides)


@pytest.mark.slow  # a fresh interpreter: what `import hst_mm` alone imports
def test_hst_mm_imports_neither_framework():
    import subprocess
    import sys

    code = (
        'import sys, hst_mm\n'
        'bad = [m for m in sys.modules if m.split(".")[0] in ("mmdet", "mmseg")]\n'
        'assert not bad, bad\n'
    )
    subprocess.run([sys.executable, '-c', code], check=True)


@pytest.mark.parametrize(
    'backbone',
    [
        dict(type='HST', **TINY_SIDE, **TINY),
        dict(type='ViTPyramid', frozen=False, **TINY),
    ],
)
def test_pretrained_survives_init_weights(backbone, saved_tiny_vit):
    """mmengine's init_weights() must not re-randomise the trunk (timm's ViT.init_weights)."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    from hst_mm.registration import fit_heads_to_backbone

    init_default_scope('mmdet')
    path, vit = saved_tiny_vit
    model = dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor'),
        backbone=dict(backbone, pretrained=path),
        neck=dict(type='FPN', out_channels=16, num_outs=4),
        bbox_head=dict(
            type='RetinaHead',
            num_classes=3,
            in_channels=16,
            feat_channels=16,
            anchor_generator=dict(
                type='AnchorGenerator',
                octave_base_scale=4,
                scales_per_octave=1,
                ratios=[1.0],
                strides=[4, 8, 16, 32],
            ),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True),
            loss_bbox=dict(type='L1Loss'),
        ),
    )
    fit_heads_to_backbone(model)  # the neck takes what the backbone returns
    detector = MODELS.build(model)
    trunk = detector.backbone.trunk.vit if backbone['type'] == 'HST' else detector.backbone.vit
    ref = vit.state_dict()
    assert not torch.equal(trunk.blocks[0].attn.qkv.weight, ref['blocks.0.attn.qkv.weight'])
    detector.init_weights()
    for k, v in trunk.state_dict().items():
        assert torch.equal(v, ref[k]), f'{k} differs from the pretrained file after init_weights()'
    if backbone['type'] == 'HST':  # freezing survives too
        assert not trunk.blocks[0].attn.qkv.weight.requires_grad
        assert trunk.blocks[0].norm1.weight.requires_grad
