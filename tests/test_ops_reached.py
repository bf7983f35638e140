"""Which mmcv operators each shipped config reaches in a training and a test step on the CPU.

Every provided function of ``mmcv._ext`` is wrapped by a recorder; each config's model (a
tiny trunk in place of ViT-B, its own necks and heads) runs one loss + backward and one
``test_step`` on a synthetic batch. What is recorded must be provided: README lists it.
(On CUDA, mmdet's FocalLoss also calls ``sigmoid_focal_loss``; no shipped config uses it.)
"""

import mmcv._ext as ext
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from hst_mm.registration import fit_heads_to_backbone

from conftest import ROOT

pytestmark = pytest.mark.slow  # a training and a test step of every shipped config

PROVIDED = (
    'nms',
    'roi_align_forward',
    'roi_align_backward',
    'sigmoid_focal_loss_forward',
    'sigmoid_focal_loss_backward',
)
TINY = dict(
    trunk='vit_tiny_patch16_224',
    pretrained=None,
    trunk_kwargs=dict(depth=4, embed_dim=32, num_heads=2),
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
    cfg = Config.fromfile(str(ROOT / config))
    init_default_scope(cfg.default_scope)
    backbone = cfg.model.backbone
    backbone.update(TINY)
    if backbone.type == 'HST':
        backbone.update(embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 3, 4))
    fit_heads_to_backbone(cfg.model)  # the neck (UperNet: the heads) reads the backbone
    if cfg.default_scope == 'mmseg':
        cfg.model.data_preprocessor.size = (SIZE, SIZE)
    from mmengine.registry import MODELS

    return MODELS.build(cfg.model), cfg.default_scope


def det_batch():
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    rng = np.random.default_rng(0)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.from_numpy(rng.integers(0, 256, (3, SIZE, SIZE), dtype=np.uint8)))
        boxes = np.array([[8, 8, 60, 70], [50, 40, 120, 100]], np.float32)
        masks = np.zeros((2, SIZE, SIZE), np.uint8)
        for m, (x0, y0, x1, y1) in zip(masks, boxes.astype(int)):
            m[y0:y1, x0:x1] = 1
        s = DetDataSample(
            metainfo=dict(
                img_shape=(SIZE, SIZE),
                ori_shape=(SIZE, SIZE),
                scale_factor=(1.0, 1.0),
                pad_shape=(SIZE, SIZE),
            )
        )
        s.gt_instances = InstanceData(
            bboxes=torch.from_numpy(boxes),
            labels=torch.tensor([1, 2]),
            masks=BitmapMasks(masks, SIZE, SIZE),
        )
        samples.append(s)
    return {'inputs': inputs, 'data_samples': samples}


def seg_batch(num_classes):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    rng = np.random.default_rng(0)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.from_numpy(rng.integers(0, 256, (3, SIZE, SIZE), dtype=np.uint8)))
        s = SegDataSample(
            metainfo=dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE))
        )
        s.gt_sem_seg = PixelData(
            data=torch.from_numpy(rng.integers(0, num_classes, (1, SIZE, SIZE)))
        )
        samples.append(s)
    return {'inputs': inputs, 'data_samples': samples}


RCNN = {'nms', 'roi_align_forward', 'roi_align_backward'}
CONFIGS = {
    'configs/hst/atss_hst-vit-b_fpn_ms-3x_coco.py': {'nms'},
    'configs/baselines/atss_vit-b-full_fpn_ms-3x_coco.py': {'nms'},
    'configs/hst/mask-rcnn_hst-vit-b-mae_fpn_1x_coco.py': RCNN,
    'configs/hst/mask-rcnn_hst-vit-l_fpn_1x_coco.py': RCNN,
    'configs/baselines/mask-rcnn_vit-l-full_fpn_1x_coco.py': RCNN,
    'configs/baselines/mask-rcnn_vit-l-frozen_fpn_1x_coco.py': RCNN,
    'configs/baselines/mask-rcnn_vit-b-full_fpn_ms-3x_coco.py': RCNN,
    'configs/baselines/cascade-mask-rcnn_vit-b-full_fpn_ms-3x_coco.py': RCNN,
    'configs/hst/upernet_hst-vit-b-mae_8xb2-160k_ade20k-512x512.py': set(),
    'configs/baselines/fpn_vit-b-full_8xb2-80k_ade20k-512x512.py': set(),
    'configs/hst/mask-rcnn_hst-vit-b_fpn_1x_coco.py': {
        'nms',
        'roi_align_forward',
        'roi_align_backward',
    },
    'configs/hst/mask-rcnn_hst-vit-b_fpn_ms-3x_coco.py': {
        'nms',
        'roi_align_forward',
        'roi_align_backward',
    },
    'configs/hst/cascade-mask-rcnn_hst-vit-b_fpn_ms-3x_coco.py': {
        'nms',
        'roi_align_forward',
        'roi_align_backward',
    },
    'configs/baselines/mask-rcnn_vit-b-full_fpn_1x_coco.py': {
        'nms',
        'roi_align_forward',
        'roi_align_backward',
    },
    'configs/baselines/mask-rcnn_vit-b-frozen_fpn_1x_coco.py': {
        'nms',
        'roi_align_forward',
        'roi_align_backward',
    },
    'configs/toy/mask-rcnn_hst-vit-ti_fpn_toy.py': {
        'nms',
        'roi_align_forward',
        'roi_align_backward',
    },
    'configs/hst/upernet_hst-vit-b_8xb2-160k_ade20k-512x512.py': set(),
    'configs/hst/fpn_hst-vit-b_8xb2-80k_ade20k-512x512.py': set(),
    'configs/baselines/upernet_vit-b-full_8xb2-160k_ade20k-512x512.py': set(),
    'configs/baselines/upernet_vit-b-frozen_8xb2-160k_ade20k-512x512.py': set(),
    'configs/toy/upernet_hst-vit-ti_toy.py': set(),
    'configs/toy/mask-rcnn_vit-ti-petl_fpn_toy.py': RCNN,
}
# The PETL rows change only the backbone of their family's config.
for method in ('lora', 'vpt', 'adaptformer', 'ssf'):
    CONFIGS.update(
        {
            f'configs/petl/mask-rcnn_vit-b-{method}_fpn_1x_coco.py': RCNN,
            f'configs/petl/mask-rcnn_vit-b-{method}_fpn_ms-3x_coco.py': RCNN,
            f'configs/petl/cascade-mask-rcnn_vit-b-{method}_fpn_ms-3x_coco.py': RCNN,
            f'configs/petl/upernet_vit-b-{method}_8xb2-160k_ade20k-512x512.py': set(),
        }
    )


def test_every_shipped_config_is_listed():
    shipped = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / 'configs').rglob('*.py')
        if '_base_' not in p.parts
    }
    assert shipped <= set(CONFIGS), sorted(shipped - set(CONFIGS))


@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_operators_reached(config, calls):
    model, scope = build(config)
    data = det_batch() if scope == 'mmdet' else seg_batch(model.decode_head.num_classes)
    model.train()
    batch = model.data_preprocessor(data, True)
    losses = model.loss(batch['inputs'], batch['data_samples'])
    sum(
        v.sum() if torch.is_tensor(v) else sum(x.sum() for x in v)
        for k, v in losses.items()
        if 'loss' in k
    ).backward()
    model.eval()
    with torch.no_grad():
        model.test_step(data)
    reached = set(calls)
    assert reached <= set(PROVIDED), f'{config} reaches operators not provided: {reached}'
    assert reached == CONFIGS[config]
