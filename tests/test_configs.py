"""Every shipped config loads and builds its model (trunk weights disabled), the model sizes
match the paper's (within 1%) and the project's own counts, and the paper configs carry the
training policies (SyncBN, checkpoints kept, ADE20K sliding-window testing, layer decay of the
fully fine-tuned baselines).

Models are built on PyTorch's meta device (``count_params.build_model(cfg, meta=True)``):
the same modules and parameter shapes without memory or initialisation, so the ViT-L configs
build in seconds on a 2-core CPU; ``test_meta_build_counts_like_a_real_one`` checks that the
two builds count the same.
"""

import re
from pathlib import Path

import pytest

from hst_mm.analysis import count_params
from hst_mm.engine import hooks
from hst_mm.engine.hooks.run_config import renamed_to
from hst_mm.models.pretrained import trunk_pixel_stats

ROOT = Path(__file__).resolve().parents[1]
# The configs, without the former names kept for one release (tests/test_config_names.py).
CONFIGS = sorted(
    p.relative_to(ROOT).as_posix()
    for p in (ROOT / 'configs').rglob('*.py')
    if '_base_' not in p.parts and renamed_to(str(p)) is None
)
PAPER_CONFIGS = [c for c in CONFIGS if c.startswith(('configs/hst/', 'configs/baselines/'))]
# The PETL rows (counts pinned in tests/test_petl_configs.py) follow the same policies.
POLICY_CONFIGS = PAPER_CONFIGS + [c for c in CONFIGS if c.startswith('configs/petl/')]

# The paper's parameter counts: (config, count, 'trainable' or 'total'), checked within 1%.
PAPER = {
    'configs/hst/mask-rcnn_hst-vit-b_fpn_amp-1x_coco.py': (30.6e6, 'trainable'),
    'configs/hst/mask-rcnn_hst-vit-b_fpn_amp-ms-crop-3x_coco.py': (30.6e6, 'trainable'),
    'configs/hst/cascade-mask-rcnn_hst-vit-b_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py': (
        68.4e6,
        'trainable',
    ),
    'configs/hst/upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512.py': (39.9e6, 'trainable'),
    'configs/baselines/mask-rcnn_vit-b-full_fpn_amp-1x_coco.py': (113.6e6, 'total'),
    'configs/baselines/mask-rcnn_vit-b-full_fpn_amp-ms-crop-3x_coco.py': (113.6e6, 'total'),
    'configs/baselines/cascade-mask-rcnn_vit-b-full_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py': (
        151.4e6,
        'total',
    ),
}
# The project's own counts (hst_mm.analysis.count_params) for every paper config:
# (trainable, total), exact.
OWN = {
    'configs/hst/atss_hst-vit-b_fpn_amp-ms-crop-3x_coco.py': (18_470_490, 104_230_746),
    'configs/hst/cascade-mask-rcnn_hst-vit-b_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py': (
        68_357_554,
        154_117_810,
    ),
    'configs/hst/fpn_hst-vit-b_8xb2-amp-80k_ade20k-512x512.py': (14_621_590, 100_381_846),
    'configs/hst/mask-rcnn_hst-vit-b-mae_fpn_amp-1x_coco.py': (30_522_352, 116_282_608),
    'configs/hst/mask-rcnn_hst-vit-b_fpn_amp-1x_coco.py': (30_522_352, 116_282_608),
    'configs/hst/mask-rcnn_hst-vit-b_fpn_amp-ms-crop-3x_coco.py': (30_522_352, 116_282_608),
    'configs/hst/mask-rcnn_hst-vit-l_fpn_amp-1x_coco.py': (39_254_576, 342_455_856),
    'configs/hst/upernet_hst-vit-b-mae_8xb2-amp-160k_ade20k-512x512.py': (39_859_756, 125_620_012),
    'configs/hst/upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512.py': (39_859_756, 125_620_012),
    'configs/baselines/atss_vit-b-full_fpn_amp-ms-crop-3x_coco.py': (101_344_602, 101_344_602),
    'configs/baselines/cascade-mask-rcnn_vit-b-full_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py': (
        151_411_890,
        151_411_890,
    ),
    'configs/baselines/fpn_vit-b-full_8xb2-amp-80k_ade20k-512x512.py': (97_675_926, 97_675_926),
    'configs/baselines/mask-rcnn_vit-b-frozen_fpn_amp-1x_coco.py': (27_779_568, 113_576_688),
    'configs/baselines/mask-rcnn_vit-b-full_fpn_amp-1x_coco.py': (113_576_688, 113_576_688),
    'configs/baselines/mask-rcnn_vit-b-full_fpn_amp-ms-crop-3x_coco.py': (113_576_688, 113_576_688),
    'configs/baselines/mask-rcnn_vit-l-frozen_fpn_amp-1x_coco.py': (33_550_064, 336_849_648),
    'configs/baselines/mask-rcnn_vit-l-full_fpn_amp-1x_coco.py': (336_849_648, 336_849_648),
    'configs/baselines/upernet_vit-b-frozen_8xb2-amp-160k_ade20k-512x512.py': (
        41_229_356,
        127_026_476,
    ),
    'configs/baselines/upernet_vit-b-full_8xb2-amp-160k_ade20k-512x512.py': (
        127_026_476,
        127_026_476,
    ),
    # Foundation trunks (DINOv2, DINOv3, EVA-02): HST trains as many parameters as on a
    # ViT of the same width and depth; the frozen trunks differ.
    'configs/baselines/mask-rcnn_dinov3-b-frozen_fpn_amp-1x_coco.py': (27_779_568, 113_419_248),
    'configs/baselines/upernet_dinov3-b-frozen_8xb2-amp-160k_ade20k-512x512.py': (
        41_229_356,
        126_869_036,
    ),
    'configs/hst/mask-rcnn_hst-dinov2-b-reg4_fpn_amp-1x_coco.py': (30_522_352, 117_065_968),
    'configs/hst/mask-rcnn_hst-dinov2-b-reg4_fpn_amp-ms-crop-3x_coco.py': (30_522_352, 117_065_968),
    'configs/hst/mask-rcnn_hst-dinov3-b_fpn_amp-1x_coco.py': (30_522_352, 116_125_168),
    'configs/hst/mask-rcnn_hst-dinov3-b_fpn_amp-ms-crop-3x_coco.py': (30_522_352, 116_125_168),
    'configs/hst/mask-rcnn_hst-dinov3-l_fpn_amp-1x_coco.py': (39_254_576, 342_233_648),
    'configs/hst/mask-rcnn_hst-dinov3-l_fpn_amp-ms-crop-3x_coco.py': (39_254_576, 342_233_648),
    'configs/hst/mask-rcnn_hst-eva02-b_fpn_amp-1x_coco.py': (30_522_352, 116_242_672),
    'configs/hst/mask-rcnn_hst-eva02-b_fpn_amp-ms-crop-3x_coco.py': (30_522_352, 116_242_672),
    'configs/hst/upernet_hst-dinov2-b-reg4_8xb2-amp-160k_ade20k-512x512.py': (
        39_859_756,
        126_403_372,
    ),
    'configs/hst/upernet_hst-dinov3-b_8xb2-amp-160k_ade20k-512x512.py': (39_859_756, 125_462_572),
    'configs/hst/upernet_hst-dinov3-l_8xb2-amp-160k_ade20k-512x512.py': (48_591_980, 351_571_052),
    'configs/hst/upernet_hst-eva02-b_8xb2-amp-160k_ade20k-512x512.py': (39_859_756, 125_580_076),
}
# Every hook hst_mm registers; each shipped config lists them all.
PROJECT_HOOKS = {name for name in hooks.__all__ if name.endswith('Hook')}
ADE20K_SLIDE = dict(mode='slide', crop_size=(512, 512), stride=(341, 341))


def load(config):
    from mmengine.config import Config

    return Config.fromfile(str(ROOT / config))


def build(config, meta=True):
    model = count_params.build_model(load(config), meta=meta)
    return model, count_params.count(model)


def test_configs_found():
    assert len(CONFIGS) >= 35, CONFIGS
    assert set(OWN) == set(PAPER_CONFIGS), 'every paper config needs its count in OWN'


def assert_name_says_what_it_trains(config, cfg):
    """mmdet's / mmseg's naming: ``amp`` for mixed-precision training, ``ms-crop-3x`` for the
    36-epoch resize-or-crop (DETR-style) recipe, ``4conv1fc-giou`` for Cascade heads with 4
    shared convs, 1 FC and the GIoU loss."""
    parts = set(re.split(r'[_-]', Path(config).stem))
    assert ('amp' in parts) == (cfg.optim_wrapper.get('type') == 'AmpOptimWrapper'), config
    if cfg.default_scope != 'mmdet':
        return
    pipeline = str(cfg.train_dataloader.dataset.pipeline)
    crop_3x = 'RandomCrop' in pipeline and cfg.train_cfg.get('max_epochs') == 36
    assert ('ms-crop-3x' in config) == crop_3x, config
    heads = cfg.model.get('roi_head', {}).get('bbox_head')
    giou = isinstance(heads, list) and all(
        (h.num_shared_convs, h.num_shared_fcs, h.loss_bbox.type) == (4, 1, 'GIoULoss')
        for h in heads
    )
    assert ('4conv1fc-giou' in config) == giou, config


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds(config):
    cfg = load(config)
    assert 'hst_mm' in cfg.custom_imports['imports'], f'{config}: custom_imports lacks hst_mm'
    # the project's hooks come with the config (configs/_base_/hst_runtime.py), so mim runs them
    listed = {h['type'] for h in cfg.custom_hooks} | {cfg.default_hooks.checkpoint.type}
    assert PROJECT_HOOKS <= listed, f'{config}: lacks {PROJECT_HOOKS - listed}'
    assert_name_says_what_it_trains(config, cfg)
    # the input normalisation is the one the trunk's weights were trained with (timm's
    # pretrained config of the trunk and its tag)
    backbone, preprocessor = cfg.model.backbone, cfg.model.data_preprocessor
    stats = trunk_pixel_stats(backbone.trunk, backbone.get('pretrained'))
    assert [list(preprocessor.mean), list(preprocessor.std)] == [stats['mean'], stats['std']]
    model, rows = build(config)
    # the neck (UperNet: the decode and auxiliary heads) takes what the backbone returns
    widths = list(model.backbone.out_channels)
    neck = getattr(model, 'neck', None)
    assert list((neck or model.decode_head).in_channels) == widths, config
    aux = getattr(model, 'auxiliary_head', None)
    assert aux is None or aux.in_channels == widths[aux.in_index], config
    n = rows['all']
    assert 0 < n['trainable'] <= n['total']
    if config in PAPER:
        expected, which = PAPER[config]
        assert abs(n[which] - expected) / expected < 0.01, (config, n, expected)
    if config in OWN:
        trainable, total = OWN[config]
        assert (n['trainable'], n['total']) == (trainable, total), (config, n)
    if '/hst/' in config or '_hst-' in config:
        # HST: the trunk is frozen but for its LayerNorms
        assert rows['trunk frozen']['trainable'] == 0 and rows['trunk tuned']['trainable'] > 0
    if 'frozen' in config:
        assert rows['trunk frozen']['trainable'] == 0 and 'trunk tuned' not in rows
    if 'petl' in config:
        # PETL rows: the trunk is frozen, only the method's parameters train inside it
        assert rows['trunk frozen']['trainable'] == 0 and 'trunk tuned' not in rows
        assert rows['petl']['trainable'] == rows['petl']['total'] > 0


@pytest.mark.parametrize(
    'config',
    [
        'configs/hst/upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512.py',
        'configs/baselines/mask-rcnn_vit-b-frozen_fpn_amp-1x_coco.py',
    ],
)
def test_meta_build_counts_like_a_real_one(config):
    import torch

    real_model, real = build(config, meta=False)
    meta_model, meta = build(config, meta=True)
    assert real == meta
    assert all(p.device.type == 'cpu' for p in real_model.parameters())
    assert all(p.device.type == 'meta' for p in meta_model.parameters())
    assert [n for n, _ in real_model.named_parameters()] == [
        n for n, _ in meta_model.named_parameters()
    ]
    assert torch.isfinite(next(real_model.parameters())).all()


@pytest.mark.parametrize('config', POLICY_CONFIGS)
def test_paper_config_policies(config):
    """SyncBN across GPUs, 3 checkpoints + the best kept, ADE20K tested in sliding windows."""
    cfg = load(config)
    assert cfg.sync_bn == 'torch', config
    checkpoint = cfg.default_hooks.checkpoint
    assert checkpoint.max_keep_ckpts == 3, config
    ade20k = 'ade20k' in config
    assert checkpoint.save_best == ('mIoU' if ade20k else 'coco/bbox_mAP'), config
    if ade20k:
        assert cfg.model.test_cfg == ADE20K_SLIDE, config


@pytest.mark.parametrize('config', [c for c in CONFIGS if c.startswith('configs/toy/')])
def test_toy_configs_stay_cpu_friendly(config):
    """The toy configs inherit the paper configs but train on CPUs, also as two processes
    (torch's SyncBatchNorm refuses CPU tensors), and keep no extra 'best' checkpoint."""
    cfg = load(config)
    assert cfg.get('sync_bn') is None
    assert cfg.default_hooks.checkpoint.get('save_best') is None
    if cfg.default_scope == 'mmseg':
        assert cfg.model.test_cfg.mode == 'whole'


@pytest.mark.parametrize('config', [c for c in PAPER_CONFIGS if '/baselines/' in c])
def test_baselines_layer_decay_matches_the_trunk(config):
    """Fully fine-tuned baselines decay the lr over exactly the trunk's blocks; the frozen
    probes keep the HST recipe."""
    cfg = load(config)
    model, _ = build(config)
    optim = cfg.optim_wrapper
    if 'frozen' in config:
        assert 'constructor' not in optim and 'num_layers' not in optim.paramwise_cfg
        return
    assert optim.constructor == 'ViTLayerDecayOptimizerConstructor'
    assert optim.paramwise_cfg.num_layers == len(model.backbone.vit.blocks), config
    assert 0 < optim.paramwise_cfg.decay_rate < 1
