"""Which mmcv operators each shipped config reaches in a training and a test step on the CPU.

Every provided function of ``mmcv._ext`` is wrapped by a recorder; each config's model (a
tiny trunk in place of ViT-B, its own necks and heads) runs one loss + backward and one
``test_step`` on a synthetic batch. What is recorded must be provided: README lists it.
(On CUDA, mmdet's FocalLoss also calls ``sigmoid_focal_loss``; no shipped config uses it.)
"""

import mmcv._ext as ext
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from hst_mm.engine.hooks.run_config import renamed_to
from workshop.fixtures import (
    det_batch,
    few_proposals,
    loss_sum,
    narrow_heads,
    seg_batch,
    shrink_to_tiny,
)

from conftest import ROOT

pytestmark = pytest.mark.slow  # a training and a test step of every shipped config

PROVIDED = (
    'nms',
    'roi_align_forward',
    'roi_align_backward',
    'sigmoid_focal_loss_forward',
    'sigmoid_focal_loss_backward',
)
SIZE = 128


@pytest.fixture
def calls(monkeypatch):
    seen = []
    for name in PROVIDED:
        real = getattr(ext, name)
        monkeypatch.setattr(
            ext, name, lambda *a, _n=name, _f=real, **k: (seen.append(_n), _f(*a, **k))[1]
        )
    for name in ext.NOT_PROVIDED:
        monkeypatch.setattr(ext, name, lambda *a, _n=name, **k: seen.append(_n))
    return seen


def build(config):
    """The config's model on the tiny trunk, narrow heads, few proposals: the same
    operators."""
    from mmengine.registry import MODELS

    import hst_mm  # noqa: F401

    cfg = narrow_heads(shrink_to_tiny(Config.fromfile(str(ROOT / config)), side=SIZE))
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        few_proposals(cfg)
    return MODELS.build(cfg.model), cfg.default_scope


RCNN = {'nms', 'roi_align_forward', 'roi_align_backward'}
CONFIGS = {
    'configs/hst/atss_hst-vit-b_fpn_amp-ms-crop-3x_coco.py': {'nms'},
    'configs/baselines/atss_vit-b-full_fpn_amp-ms-crop-3x_coco.py': {'nms'},
    'configs/hst/mask-rcnn_hst-vit-b-mae_fpn_amp-1x_coco.py': RCNN,
    'configs/hst/mask-rcnn_hst-vit-l_fpn_amp-1x_coco.py': RCNN,
    'configs/baselines/mask-rcnn_vit-l-full_fpn_amp-1x_coco.py': RCNN,
    'configs/baselines/mask-rcnn_vit-l-frozen_fpn_amp-1x_coco.py': RCNN,
    'configs/baselines/mask-rcnn_vit-b-full_fpn_amp-ms-crop-3x_coco.py': RCNN,
    'configs/baselines/cascade-mask-rcnn_vit-b-full_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py': RCNN,
    'configs/hst/upernet_hst-vit-b-mae_8xb2-amp-160k_ade20k-512x512.py': set(),
    'configs/baselines/fpn_vit-b-full_8xb2-amp-80k_ade20k-512x512.py': set(),
    'configs/hst/mask-rcnn_hst-vit-b_fpn_amp-1x_coco.py': {
        'nms',
        'roi_align_forward',
        'roi_align_backward',
    },
    'configs/hst/mask-rcnn_hst-vit-b_fpn_amp-ms-crop-3x_coco.py': {
        'nms',
        'roi_align_forward',
        'roi_align_backward',
    },
    'configs/hst/cascade-mask-rcnn_hst-vit-b_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py': {
        'nms',
        'roi_align_forward',
        'roi_align_backward',
    },
    'configs/baselines/mask-rcnn_vit-b-full_fpn_amp-1x_coco.py': {
        'nms',
        'roi_align_forward',
        'roi_align_backward',
    },
    'configs/baselines/mask-rcnn_vit-b-frozen_fpn_amp-1x_coco.py': {
        'nms',
        'roi_align_forward',
        'roi_align_backward',
    },
    'configs/toy/mask-rcnn_hst-vit-ti_fpn_toy.py': {
        'nms',
        'roi_align_forward',
        'roi_align_backward',
    },
    'configs/hst/upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512.py': set(),
    'configs/hst/fpn_hst-vit-b_8xb2-amp-80k_ade20k-512x512.py': set(),
    'configs/baselines/upernet_vit-b-full_8xb2-amp-160k_ade20k-512x512.py': set(),
    'configs/baselines/upernet_vit-b-frozen_8xb2-amp-160k_ade20k-512x512.py': set(),
    'configs/toy/upernet_hst-vit-ti_toy.py': set(),
    'configs/toy/mask-rcnn_vit-ti-petl_fpn_toy.py': RCNN,
}
# The PETL rows change only the backbone of their family's config.
for method in ('lora', 'vpt', 'adaptformer', 'ssf'):
    CONFIGS.update(
        {
            f'configs/petl/mask-rcnn_vit-b-{method}_fpn_amp-1x_coco.py': RCNN,
            f'configs/petl/mask-rcnn_vit-b-{method}_fpn_amp-ms-crop-3x_coco.py': RCNN,
            f'configs/petl/cascade-mask-rcnn_vit-b-{method}'
            '_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py': RCNN,
            f'configs/petl/upernet_vit-b-{method}_8xb2-amp-160k_ade20k-512x512.py': set(),
        }
    )


# Configs that differ from a listed one only in the trunk, which shrink_to_tiny replaces with
# the tiny ViT: the same operators as that one, not run again. {variant: parent}
FOUNDATION = ('dinov2-b-reg4', 'dinov3-b', 'dinov3-l', 'eva02-b')
TRUNK_VARIANTS = {}
for t in FOUNDATION:
    for pattern in (
        'hst/mask-rcnn_hst-{}_fpn_amp-1x_coco.py',
        'hst/upernet_hst-{}_8xb2-amp-160k_ade20k-512x512.py',
    ):
        TRUNK_VARIANTS[f'configs/{pattern.format(t)}'] = f'configs/{pattern.format("vit-b")}'
    # the 3x schedule changes the data pipeline and schedule, not the model
    TRUNK_VARIANTS[f'configs/hst/mask-rcnn_hst-{t}_fpn_amp-ms-crop-3x_coco.py'] = (
        f'configs/hst/mask-rcnn_hst-{t}_fpn_amp-1x_coco.py'
    )
for pattern in (
    'baselines/mask-rcnn_{}-frozen_fpn_amp-1x_coco.py',
    'baselines/upernet_{}-frozen_8xb2-amp-160k_ade20k-512x512.py',
    'toy/upernet_hst-{}_toy.py',
):
    trunk, parent = ('eva02-ti', 'vit-ti') if 'toy' in pattern else ('dinov3-b', 'vit-b')
    TRUNK_VARIANTS[f'configs/{pattern.format(trunk)}'] = f'configs/{pattern.format(parent)}'


def test_every_shipped_config_is_listed():
    shipped = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / 'configs').rglob('*.py')
        if '_base_' not in p.parts and renamed_to(str(p)) is None
    }
    listed = set(CONFIGS) | set(TRUNK_VARIANTS)
    assert shipped <= listed, sorted(shipped - listed)


@pytest.mark.parametrize('config', sorted(TRUNK_VARIANTS))
def test_trunk_variants_differ_only_in_the_trunk(config):
    """Shrunk to the tiny trunk, a trunk variant's model config is its parent's (up to the
    input normalisation), so the operator check of the parent (or of the parent's own parent)
    covers it."""
    ours, parent = (
        shrink_to_tiny(Config.fromfile(str(ROOT / c))).model
        for c in (config, TRUNK_VARIANTS[config])
    )
    for model in (ours, parent):
        model.pop('data_preprocessor')
    assert ours.to_dict() == parent.to_dict()


@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_operators_reached(config, calls):
    model, scope = build(config)
    if scope == 'mmdet':
        data = det_batch(size=SIZE, num_classes=3)  # every shipped detector has >= 3 classes
    else:
        data = seg_batch(size=SIZE, num_classes=model.decode_head.num_classes)
    model.train()
    batch = model.data_preprocessor(data, True)
    loss_sum(model.loss(batch['inputs'], batch['data_samples'])).backward()
    model.eval()
    with torch.no_grad():
        model.test_step(data)
    reached = set(calls)
    assert reached <= set(PROVIDED), f'{config} reaches operators not provided: {reached}'
    assert reached == CONFIGS[config]
