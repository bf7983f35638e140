"""ViTLayerDecayOptimizerConstructor: each parameter's lr is base * decay ** (L + 1 - layer),
with the layer read from timm's names; mmengine's other paramwise options still apply; it
builds from mmdet's and mmseg's registries and from the baseline configs."""

import pytest

from workshop.fixtures import TINY_TRUNK as TINY

DEPTH = TINY['trunk_kwargs']['depth']


def expected_layer(name: str) -> int:
    """Written out per name, independently of the constructor's regular expressions."""
    parts = name.split('.')
    if parts[:3] == ['backbone', 'trunk', 'vit']:
        if parts[3] in ('cls_token', 'pos_embed', 'patch_embed'):
            return 0
        if parts[3] == 'blocks':
            return int(parts[4]) + 1
    return DEPTH + 1


def detector():
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import hst_mm  # noqa: F401

    init_default_scope('mmdet')
    return MODELS.build(
        dict(
            type='RetinaNet',
            data_preprocessor=dict(type='DetDataPreprocessor'),
            backbone=dict(type='ViTPyramid', frozen=False, **TINY),
            neck=dict(
                type='FPN',
                in_channels=[TINY['trunk_kwargs']['embed_dim']] * 4,
                out_channels=16,
                num_outs=4,
            ),
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
            ),
        )
    )


def build_wrapper(model, decay=0.65, lr=2e-4, wd=0.05, **paramwise):
    from mmengine.optim import build_optim_wrapper

    return build_optim_wrapper(
        model,
        dict(
            type='OptimWrapper',
            constructor='ViTLayerDecayOptimizerConstructor',
            optimizer=dict(type='AdamW', lr=lr, weight_decay=wd),
            paramwise_cfg=dict(num_layers=DEPTH, decay_rate=decay, **paramwise),
        ),
    )


def lr_and_wd_by_name(model, optimizer):
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for group in optimizer.param_groups:
        for p in group['params']:
            out[names[id(p)]] = (group['lr'], group['weight_decay'])
    return out


def test_lr_per_parameter_follows_the_layer():
    model = detector()
    decay, lr = 0.65, 2e-4
    got = lr_and_wd_by_name(model, build_wrapper(model, decay, lr).optimizer)
    assert set(got) == {n for n, p in model.named_parameters() if p.requires_grad}
    layers = set()
    for name, (group_lr, _) in got.items():
        layer = expected_layer(name)
        layers.add(layer)
        assert group_lr == pytest.approx(lr * decay ** (DEPTH + 1 - layer), rel=1e-12), name
    assert layers == set(range(DEPTH + 2))  # embeddings, every block, the rest
    assert got['backbone.trunk.vit.patch_embed.proj.weight'][0] == pytest.approx(lr * decay**5)
    assert got['backbone.trunk.vit.blocks.3.mlp.fc1.weight'][0] == pytest.approx(lr * decay)
    assert got['neck.lateral_convs.0.conv.weight'][0] == pytest.approx(lr)


def test_mmengine_paramwise_options_still_apply():
    model = detector()
    wd = 0.05
    got = lr_and_wd_by_name(
        model,
        build_wrapper(
            model,
            wd=wd,
            norm_decay_mult=0.0,
            custom_keys={'pos_embed': dict(decay_mult=0.0), 'bbox_head': dict(lr_mult=0.5)},
        ).optimizer,
    )
    assert got['backbone.trunk.vit.blocks.0.norm1.weight'][1] == 0.0  # norm_decay_mult
    assert got['backbone.trunk.vit.pos_embed'][1] == 0.0  # custom key
    assert got['backbone.trunk.vit.blocks.0.attn.qkv.weight'][1] == wd
    # custom lr_mult and layer decay multiply (the head is at the full-rate layer)
    assert got['bbox_head.retina_cls.weight'][0] == pytest.approx(2e-4 * 0.5)


def test_frozen_parameters_get_no_group():
    model = detector()
    model.backbone.vit.blocks[0].requires_grad_(False)
    got = lr_and_wd_by_name(model, build_wrapper(model).optimizer)
    assert not any(n.startswith('backbone.trunk.vit.blocks.0.') for n in got)


@pytest.mark.parametrize(
    'paramwise, match',
    [
        (dict(num_layers=2, decay_rate=0.7), 'num_layers=2'),  # fewer than the trunk's 4
        (dict(decay_rate=0.7), 'lacks num_layers'),
        (dict(num_layers=4, decay_rate=1.5), 'decay_rate=1.5'),
    ],
)
def test_bad_paramwise_cfg_is_named(paramwise, match):
    from mmengine.optim import build_optim_wrapper

    model = detector()
    with pytest.raises((ValueError, KeyError), match=match):
        build_optim_wrapper(
            model,
            dict(
                constructor='ViTLayerDecayOptimizerConstructor',
                optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
                paramwise_cfg=paramwise,
            ),
        )


def test_a_frozen_trunk_is_refused():
    model = detector()
    model.backbone.vit.requires_grad_(False)
    with pytest.raises(ValueError, match='nothing to decay'):
        build_wrapper(model)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_found_in_both_frameworks(scope):
    import importlib

    from mmengine.registry import init_default_scope

    import hst_mm  # noqa: F401

    init_default_scope(scope)
    registry = importlib.import_module(f'{scope}.registry').OPTIM_WRAPPER_CONSTRUCTORS
    assert registry.get('ViTLayerDecayOptimizerConstructor') is not None


@pytest.mark.parametrize(
    'config, decay, lr',
    [
        ('configs/baselines/mask-rcnn_vit-b-full_fpn_amp-1x_coco.py', 0.7, 1e-4),
        ('configs/baselines/upernet_vit-b-full_8xb2-amp-160k_ade20k-512x512.py', 0.95, 6e-5),
    ],
)
def test_baseline_configs_build_their_optimizer(config, decay, lr):
    """The shipped baselines' optim_wrapper builds (trunk made tiny) and decays its blocks."""
    import importlib

    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    import hst_mm  # noqa: F401
    from workshop.fixtures import shrink_to_tiny

    from conftest import ROOT

    cfg = shrink_to_tiny(Config.fromfile(str(ROOT / config)))
    init_default_scope(cfg.default_scope)
    model = importlib.import_module(f'{cfg.default_scope}.registry').MODELS.build(cfg.model)
    optim_cfg = cfg.optim_wrapper.copy()
    optim_cfg.type = 'OptimWrapper'  # AmpOptimWrapper needs a GPU
    optim_cfg.pop('dtype', None)
    optim_cfg.pop('loss_scale', None)
    optim_cfg.paramwise_cfg.num_layers = DEPTH  # the tiny trunk
    got = lr_and_wd_by_name(model, build_optim_wrapper(model, optim_cfg).optimizer)
    assert got['backbone.trunk.vit.blocks.0.attn.qkv.weight'][0] == pytest.approx(lr * decay**DEPTH)
    assert got['backbone.trunk.vit.pos_embed'] == (pytest.approx(lr * decay ** (DEPTH + 1)), 0.0)
    assert max(g[0] for g in got.values()) == pytest.approx(lr)
