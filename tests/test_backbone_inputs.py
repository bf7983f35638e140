"""The registered backbones on bad input (pretrained files, arguments, images): a clear,
named error; unusual input that is valid works.

Everything goes through the toy configs and mmdet's / mmseg's registries, as training does.
"""

import math

import cv2
import numpy as np
import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import hst_mm  # noqa: F401  what custom_imports does
from hst_mm.models import PretrainedMismatchError

from tool_runner import ROOT, ensure_toy_data

SEG_CONFIG = ROOT / 'configs/toy/upernet_hst-vit-ti_toy.py'
DET_CONFIG = ROOT / 'configs/toy/mask-rcnn_hst-vit-ti_fpn_toy.py'


@pytest.fixture(scope='module')
def seg_cfg():
    init_default_scope('mmseg')
    return Config.fromfile(SEG_CONFIG)


def build_backbone(cfg, **overrides):
    """The toy config's backbone (type='HST', ViT-Ti trunk) through mmseg's registry; 4 trunk
    blocks instead of 12 for speed."""
    from mmseg.registry import MODELS

    return MODELS.build({**cfg.model.backbone, 'trunk_kwargs': dict(depth=4), **overrides})


# ---- pretrained trunk weights: each problem names the file ------------------------------
def _write(kind, tmp_path):
    path = tmp_path / f'{kind}.pth'
    if kind == 'junk':
        path.write_text('this is not a checkpoint')
    elif kind == 'resnet':  # another architecture
        torch.save(timm.create_model('resnet10t').state_dict(), path)
    elif kind == 'wide':  # a ViT of another width (96, not 192)
        torch.save(
            timm.create_model(
                'vit_tiny_patch16_224', depth=4, embed_dim=96, num_heads=3
            ).state_dict(),
            path,
        )
    return path


@pytest.mark.parametrize(
    'kind, error, match',
    [
        ('missing', FileNotFoundError, r'pretrained trunk checkpoint not found: .*missing\.pth'),
        ('junk', PretrainedMismatchError, r'junk\.pth: could not be read as a checkpoint'),
        ('resnet', PretrainedMismatchError, r'resnet\.pth: .*(not a ViT|missing keys)'),
        (
            'wide',
            PretrainedMismatchError,
            r'wide\.pth: does not fit trunk .*embed_dim=192.*shape mismatches: .*\(1, 1, 96\) vs '
            r'trunk \(1, 1, 192\)',
        ),
    ],
)
def test_bad_pretrained_file_through_config(seg_cfg, tmp_path, kind, error, match):
    backbone = build_backbone(seg_cfg, pretrained=str(_write(kind, tmp_path)))
    with pytest.raises(error, match=match):
        backbone.init_weights()  # what the Runner calls before training


# ---- architecture arguments --------------------------------------------------------------
@pytest.mark.parametrize(
    'overrides, match',
    [
        (dict(embed_dims=(64, 130, 256, 384)), r'width 130 is not divisible by its num_heads 4'),
        (
            dict(num_heads=(2, 4, 8)),
            r'embed_dims \(64, 128, 256, 384\) and num_heads \(2, 4, 8\) '
            r'must have one entry per stage',
        ),
        (
            dict(trunk_kwargs=dict(depth=10)),
            r'a trunk of 10 blocks cannot be split evenly into 4 '
            r'side stages',
        ),
        (dict(out_indices=(0, 4)), r'out_indices \(0, 4\): \[4\] outside the 4 stages'),
        (
            dict(num_heads=(0, 4, 8, 12)),
            r'embed_dims \(64, 128, 256, 384\) and num_heads '
            r'\(0, 4, 8, 12\) must be positive integers',
        ),
        (dict(trunk='vit_tiny_patch_16'), r"trunk 'vit_tiny_patch_16' is not a timm model name"),
    ],
)
def test_bad_architecture_through_config(seg_cfg, overrides, match):
    with pytest.raises(ValueError, match=match):
        build_backbone(seg_cfg, pretrained=None, **overrides)


@pytest.mark.parametrize('backbone', ['HST', 'ViTPyramid'])
def test_trunk_that_is_not_a_vit_is_named(seg_cfg, backbone):
    """A timm model of another family (a CNN: no tokens, no blocks) is refused when built, on
    a parameter-free probe, not in the first forward."""
    from mmseg.registry import MODELS

    with pytest.raises(
        TypeError,
        match=r"trunk 'resnet18' is not a timm VisionTransformer or Eva \(it builds ResNet\)",
    ):
        MODELS.build(dict(type=backbone, trunk='resnet18'))


# ---- image tensors -------------------------------------------------------------------------
@pytest.fixture(scope='module')
def backbone(seg_cfg):
    return build_backbone(seg_cfg, pretrained=None).eval()


@pytest.fixture(scope='module')
def pyramid():
    """The baselines' ``type='ViTPyramid'`` through mmseg's registry (ViT-Ti/16, 4 blocks)."""
    from mmseg.registry import MODELS

    return MODELS.build(
        dict(type='ViTPyramid', trunk='vit_tiny_patch16_224', trunk_kwargs=dict(depth=4))
    ).eval()


def _reference(model, x):
    """The backbone's computation without any padding or cropping: the trunk and the side
    network (HST) or timm's intermediates and the pyramid (ViTPyramid) called directly."""
    if hasattr(model, 'side'):
        outs = model.side(x, zip(*model.trunk(x)), model.bridge)
    else:
        feats = model.vit.forward_intermediates(
            x,
            indices=list(model.feature_blocks),
            norm=False,
            output_fmt='NCHW',
            intermediates_only=True,
        )
        outs = [model.pyramid[i](model.normalize_tap(i, f)) for i, f in enumerate(feats)]
    return [outs[i] for i in model.out_indices]


@pytest.mark.parametrize('size', [(32, 32), (64, 96), (17, 40), (70, 100)])
@pytest.mark.parametrize('which', ['backbone', 'pyramid'])
def test_inputs_of_a_patch_or_more_are_computed_as_before(request, which, size):
    """No padding and no crop above one patch (two for ViTPyramid): bit-identical outputs."""
    model = request.getfixturevalue(which)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        outs, ref = model(x), _reference(model, x)
    assert len(outs) == len(ref)
    for out, r in zip(outs, ref):
        assert torch.equal(out, r)
    if which == 'backbone':  # exactly one patch: no padding for HST
        x = torch.randn(1, 3, 16, 16)
        with torch.no_grad():
            assert all(torch.equal(o, r) for o, r in zip(model(x), _reference(model, x)))


@pytest.mark.parametrize('size', [(2, 256), (1, 1), (15, 40), (16, 48)])
@pytest.mark.parametrize('which', ['backbone', 'pyramid'])
def test_image_smaller_than_a_patch_is_padded_and_cropped(request, which, size):
    """A dimension below one trunk patch (for ViTPyramid: one patch or less, whose grid its
    stride-32 max-pool cannot halve) is zero-padded; each stride-s map is cropped back to
    max(1, ceil(H / s)) along it. A dimension that is large enough keeps the size the
    backbone gives it for any other height (here: the size for a 64-row input)."""
    model = request.getfixturevalue(which)
    H, W = size
    padded = lambda n: n < 16 or (which == 'pyramid' and n == 16)  # noqa: E731  (16: HST not)
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        outs = model(x)
        wide = model(torch.randn(1, 3, 64, W if not padded(W) else 64))  # unpadded sizes
        tall = model(torch.randn(1, 3, H if not padded(H) else 64, 64))
    for out, s, w_ref, t_ref in zip(outs, (4, 8, 16, 32), wide, tall):
        expect_h = max(1, math.ceil(H / s)) if padded(H) else t_ref.shape[-2]
        expect_w = max(1, math.ceil(W / s)) if padded(W) else w_ref.shape[-1]
        assert tuple(out.shape[-2:]) == (expect_h, expect_w), (s, tuple(out.shape))
        assert out.is_contiguous() and torch.isfinite(out).all()
    if size == (2, 256):
        assert [tuple(o.shape[-2:]) for o in outs] == [(1, 64), (1, 32), (1, 16), (1, 8)]


def test_trunk_alone_still_names_a_too_small_input(backbone):
    """Direct use of the trunk (no backbone around it to pad) keeps its named error."""
    with pytest.raises(
        ValueError,
        match=r'input of 8x64 is smaller than one trunk patch '
        r'\(16x16\)',
    ):
        backbone.trunk(torch.randn(1, 3, 8, 64))


def test_grayscale_tensor(backbone):
    with pytest.raises(ValueError, match=r'3-channel images, got shape \(1, 1, 64, 64\)'):
        backbone(torch.randn(1, 1, 64, 64))


@pytest.mark.parametrize('size', [(70, 100), (128, 183), (96, 128)])
def test_sizes_not_multiple_of_32_follow_conv_arithmetic(backbone, size):
    """Stride 4: the stem's 3x3/s2/p1 conv rounds up, its 2x2/s2 conv rounds down; every
    later stage halves rounding up. A multiple of 32 gives exactly H/4 ... H/32."""

    def stages(n):
        n = (n + 1) // 2 // 2
        out = [n]
        for _ in range(3):
            n = (n + 1) // 2
            out.append(n)
        return out

    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, *size))
    assert [tuple(o.shape[-2:]) for o in outs] == list(zip(stages(size[0]), stages(size[1])))
    if size == (96, 128):
        assert [tuple(o.shape[-2:]) for o in outs] == [(24, 32), (12, 16), (6, 8), (3, 4)]


@pytest.mark.slow
def test_grayscale_png_end_to_end(seg_cfg, tmp_path):
    """A 1-channel PNG of 100x70 pixels: mmcv's LoadImageFromFile (color_type='color') reads
    it as 3 identical channels; the test pipeline resizes it to 183x128, which the data
    preprocessor does not pad at test time; UperNet + HST predicts a 70x100 map."""
    from mmseg.registry import DATASETS, MODELS

    ensure_toy_data()
    img = cv2.imread(str(ROOT / 'data/toy/ade/images/validation/000001.png'))
    gray = cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), (100, 70))
    for sub in ('img', 'ann'):
        (tmp_path / sub).mkdir()
    cv2.imwrite(str(tmp_path / 'img' / 'gray.png'), gray)
    cv2.imwrite(str(tmp_path / 'ann' / 'gray.png'), (gray > 128).astype(np.uint8))
    assert cv2.imread(str(tmp_path / 'img' / 'gray.png'), cv2.IMREAD_UNCHANGED).ndim == 2
    ds_cfg = seg_cfg.test_dataloader.dataset.copy()
    ds_cfg.update(data_root=str(tmp_path), data_prefix=dict(img_path='img', seg_map_path='ann'))
    sample = DATASETS.build(ds_cfg)[0]
    assert tuple(sample['inputs'].shape) == (3, 128, 183)
    assert torch.equal(sample['inputs'][0], sample['inputs'][1])
    model = MODELS.build(seg_cfg.model).eval()
    seen = []
    model.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    with torch.no_grad():
        pred = model.test_step(
            dict(inputs=[sample['inputs']], data_samples=[sample['data_samples']])
        )[0]
    assert tuple(seen[0]) == (1, 3, 128, 183)  # not padded to a multiple of 32
    assert tuple(pred.pred_sem_seg.data.shape) == (1, 70, 100)


@pytest.mark.slow
def test_thin_image_end_to_end(seg_cfg, tmp_path):
    """A 16x2000 image, which the toy test pipeline resizes to 2x256 (fewer rows than one
    trunk patch; mmseg does not pad at test time): UperNet + HST predicts a 16x2000 map."""
    from mmseg.registry import DATASETS, MODELS

    ensure_toy_data()
    img = cv2.imread(str(ROOT / 'data/toy/ade/images/validation/000001.png'))
    thin = cv2.resize(img, (2000, 16))
    for sub in ('img', 'ann'):
        (tmp_path / sub).mkdir()
    cv2.imwrite(str(tmp_path / 'img' / 'thin.png'), thin)
    cv2.imwrite(str(tmp_path / 'ann' / 'thin.png'), np.ones((16, 2000), np.uint8))
    ds_cfg = seg_cfg.test_dataloader.dataset.copy()
    ds_cfg.update(data_root=str(tmp_path), data_prefix=dict(img_path='img', seg_map_path='ann'))
    sample = DATASETS.build(ds_cfg)[0]
    assert tuple(sample['inputs'].shape) == (3, 2, 256)
    model = MODELS.build(seg_cfg.model).eval()
    with torch.no_grad():
        pred = model.test_step(
            dict(inputs=[sample['inputs']], data_samples=[sample['data_samples']])
        )[0]
    assert tuple(pred.pred_sem_seg.data.shape) == (1, 16, 2000)
    assert tuple(pred.seg_logits.data.shape) == (4, 16, 2000)
