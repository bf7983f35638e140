"""CheckSegLabels: a label map with values outside the classes stops with the file's name and
the values, through the shipped configs' pipelines as mmseg builds them (without it mmseg
loads such a map silently and training fails inside the loss: ``IndexError: Target 8 is out
of bounds``)."""

import copy
import glob

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import TRANSFORMS, init_default_scope

import hst_mm  # noqa: F401  what custom_imports does
from hst_mm.datasets.seg_labels import CheckSegLabels, SegLabelError
from hst_mm.engine.hooks.run_config import renamed_to

from tool_runner import ROOT

TOY_SEG = ROOT / 'configs/toy/upernet_hst-vit-ti_toy.py'
SEG_CONFIGS = sorted(
    [
        p
        for d in ('hst', 'baselines')
        for p in glob.glob(str(ROOT / 'configs' / d / '*.py'))
        if ('/upernet_' in p or '/fpn_' in p) and renamed_to(p) is None
    ]
    + [str(TOY_SEG)]
)


@pytest.fixture(scope='module')
def toy_cfg():
    init_default_scope('mmseg')
    return Config.fromfile(TOY_SEG)


def _ade_layout(root, label, img_shape=(64, 64)):
    """One image (64x64) and its label map in the ADE20K layout (images/ and annotations/,
    training and validation) under ``root``."""
    img = np.random.default_rng(0).integers(0, 255, (*img_shape, 3), dtype=np.uint8)
    for split in ('training', 'validation'):
        for sub, arr in (('images', img), ('annotations', label)):
            (root / sub / split).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / sub / split / 'bad.png'), arr)
    return root / 'annotations'


def _toy_label(value=None):
    """A toy map (file values: 0 = unlabelled, 1..4 = the 4 classes), with ``value`` in a
    corner if given."""
    label = np.zeros((64, 64), np.uint8)
    label[8:24, 8:24], label[30:50, 30:50], label[40:60, 4:20] = 1, 2, 4
    if value is not None:
        label[:4, :4] = value
    return label


def _dataset(cfg, split, root):
    from mmseg.registry import DATASETS

    ds_cfg = cfg[f'{split}_dataloader'].dataset.copy()
    ds_cfg.update(data_root=str(root))
    return DATASETS.build(ds_cfg)


@pytest.mark.parametrize('split', ['train', 'test'])
def test_out_of_range_label_names_the_file(toy_cfg, tmp_path, split):
    """File value 9 -> 8 after reduce_zero_label: outside the toy's 4 classes (0-3)."""
    ann = _ade_layout(tmp_path, _toy_label(9))
    ds = _dataset(toy_cfg, split, tmp_path)
    path = ann / ('training' if split == 'train' else 'validation') / 'bad.png'
    with pytest.raises(ValueError) as e:
        ds[0]
    msg = str(e.value)
    assert msg.startswith(
        f'{path}: label values 8 (16 pixels) are outside the 4 classes '
        f'(valid: 0-3, and 255 for ignored pixels)'
    ), msg
    assert 'reduce_zero_label, so the file holds 9' in msg


def test_valid_labels_pass_unchanged(toy_cfg, tmp_path):
    """Classes 0-3 and the ignored 255 (file value 0, and 255 itself) pass."""
    label = _toy_label()
    label[60:, 60:] = 255
    _ade_layout(tmp_path, label)
    sample = _dataset(toy_cfg, 'train', tmp_path)[0]
    values = set(np.unique(sample['data_samples'].gt_sem_seg.data.numpy()).tolist())
    assert values <= {0, 1, 3, 255}


def test_without_the_check_mmseg_loads_the_map_silently(toy_cfg, tmp_path):
    """What the check guards against: mmseg 1.2 passes the value on to the loss."""
    _ade_layout(tmp_path, _toy_label(9))
    cfg = copy.deepcopy(toy_cfg)
    cfg.test_dataloader.dataset.pipeline = [
        t for t in cfg.test_dataloader.dataset.pipeline if t.type != 'CheckSegLabels'
    ]
    sample = _dataset(cfg, 'test', tmp_path)[0]
    assert 8 in sample['data_samples'].gt_sem_seg.data


def _sample(cfg, split, root):
    return _dataset(cfg, split, root)[0]['data_samples'].gt_sem_seg.data.numpy()


@pytest.mark.parametrize('split', ['train', 'test'])
def test_16bit_label_map_over_255_names_the_file_and_value(toy_cfg, tmp_path, split):
    """mmseg casts the decoded map to uint8: file value 258 would train as 2 (class 1 after
    reduce_zero_label), a valid class. A 16-bit map within 0-255 passes."""
    label = _toy_label().astype(np.uint16)
    ann = _ade_layout(tmp_path, label)
    assert 1 in _sample(toy_cfg, 'test', tmp_path)  # the file's 2s: 16-bit, within 8 bits
    label[:4, :4] = 258
    _ade_layout(tmp_path, label)
    path = ann / ('training' if split == 'train' else 'validation') / 'bad.png'
    with pytest.raises(SegLabelError) as e:
        _dataset(toy_cfg, split, tmp_path)[0]
    assert str(e.value).startswith(f'{path}: ') and '258' in str(e.value), str(e.value)
    cfg = copy.deepcopy(toy_cfg)  # what the check guards against
    cfg.test_dataloader.dataset.pipeline = [
        t for t in cfg.test_dataloader.dataset.pipeline if t.type != 'CheckSegLabels'
    ]
    assert (_sample(cfg, 'test', tmp_path)[0, :4, :4] == 1).all()


@pytest.mark.parametrize(
    'values',
    [
        np.array([[70000, 3]], np.int32),
        np.array([[-1, 3]], np.int32),
        np.array([[2.5, 3]], np.float32),
    ],
    ids=['int32 70000', 'int32 -1', 'float32 2.5'],
)
def test_label_values_that_do_not_fit_in_8_bits_are_named(tmp_path, values):
    """32-bit and float maps (TIFF): whatever the cast to uint8 makes of them is refused."""
    from PIL import Image

    path = tmp_path / 'label.tif'
    Image.fromarray(values).save(path)
    results = dict(gt_seg_map=values.astype(np.uint8), seg_map_path=str(path))
    with pytest.raises(SegLabelError) as e:
        CheckSegLabels(num_classes=4)(results)
    assert str(e.value).startswith(f'{path}: ') and f'{values[0, 0]:g}' in str(e.value)


@pytest.mark.parametrize('split', ['train', 'test'])
def test_label_map_of_another_size_than_its_image_is_refused(toy_cfg, tmp_path, split):
    """The test pipeline resizes the image before loading the map: the map is compared with
    the image as decoded (64 wide, 48 high here; the map 64x64)."""
    ann = _ade_layout(tmp_path, _toy_label(), img_shape=(48, 64))
    path = ann / ('training' if split == 'train' else 'validation') / 'bad.png'
    with pytest.raises(SegLabelError) as e:
        _dataset(toy_cfg, split, tmp_path)[0]
    msg = str(e.value)
    assert msg.startswith(f'{path}: ') and '64x64' in msg and '64x48' in msg, msg
    _ade_layout(tmp_path, _toy_label()[:48], img_shape=(48, 64))
    assert _sample(toy_cfg, 'test', tmp_path).shape[-2:] == (48, 64)  # sizes that fit pass


@pytest.mark.parametrize('config', SEG_CONFIGS, ids=lambda p: p.split('/')[-1])
def test_shipped_configs_check_right_after_loading(config):
    """Train, val, test and TTA pipelines: CheckSegLabels right after LoadAnnotations, with
    the decode head's number of classes; otherwise mmseg's own ADE20K pipelines."""
    cfg = Config.fromfile(config)
    num_classes = cfg.model.decode_head.num_classes
    for split in ('train', 'val', 'test'):
        pipeline = cfg[f'{split}_dataloader'].dataset.pipeline
        types = [t.type for t in pipeline]
        after = types[types.index('LoadAnnotations') + 1]
        assert after == 'CheckSegLabels', (split, types)
        assert pipeline[types.index('CheckSegLabels')].num_classes == num_classes
    groups = cfg.tta_pipeline[1].transforms
    at = [g[0].type for g in groups].index('LoadAnnotations')
    assert groups[at + 1] == [dict(type='CheckSegLabels', num_classes=150)]
    if 'toy' not in config:  # the toy config has its own pipelines
        import mmseg

        ade = Config.fromfile(f'{mmseg.__path__[0]}/.mim/configs/_base_/datasets/ade20k.py')
        unchecked = lambda p: [t for t in p if t.type != 'CheckSegLabels']  # noqa: E731
        assert unchecked(cfg.train_dataloader.dataset.pipeline) == ade.train_pipeline
        assert unchecked(cfg.test_dataloader.dataset.pipeline) == ade.test_pipeline
        assert [g for g in groups if g[0].type != 'CheckSegLabels'] == ade.tta_pipeline[
            1
        ].transforms


def test_registered_for_mmseg_without_importing_it():
    from mmseg.registry import TRANSFORMS as MMSEG_TRANSFORMS

    assert TRANSFORMS.get('CheckSegLabels') is CheckSegLabels
    init_default_scope('mmseg')
    step = MMSEG_TRANSFORMS.build(dict(type='CheckSegLabels', num_classes=3))
    assert repr(step) == 'CheckSegLabels(num_classes=3, ignore_index=255)'


@pytest.mark.parametrize(
    'seg, ok',
    [
        (np.array([[0, 2], [255, 1]], np.uint8), True),
        (np.array([[0, 3]], np.uint8), False),
        (np.array([[-1, 0]], np.int64), False),
        (np.array([[254, 0]], np.uint8), False),
    ],
)
def test_values_checked(seg, ok):
    check = CheckSegLabels(num_classes=3)
    results = dict(gt_seg_map=seg, seg_map_path='x.png', reduce_zero_label=False)
    if ok:
        assert check(results) is results
    else:
        with pytest.raises(ValueError, match=r'^x\.png: label values .* outside the 3 classes'):
            check(results)


def test_without_labels_nothing_to_check_or_misconfigured():
    # inference: mmseg drops LoadAnnotations from the test pipeline, this step stays
    results = dict(img_path='a.png')
    assert CheckSegLabels(4)(results) is results
    with pytest.raises(ValueError, match='num_classes must be a positive integer'):
        CheckSegLabels(0)


def test_tools_report_one_line_also_from_a_loader_worker():
    """user_error_message gives the transform's own message, also after a DataLoader worker's
    exception has been re-raised in the main process (torch wraps the traceback in)."""
    from torch._utils import ExceptionWrapper

    from hst_mm.engine.errors import user_error_message

    check = CheckSegLabels(num_classes=3)
    bad = dict(gt_seg_map=np.array([[7]], np.uint8), seg_map_path='ann/x.png')
    with pytest.raises(ValueError) as direct:
        check(bad)
    try:
        check(bad)
    except ValueError:
        wrapped = ExceptionWrapper(where='in DataLoader worker process 0')
    with pytest.raises(ValueError) as from_worker:
        wrapped.reraise()
    assert str(from_worker.value).startswith('Caught SegLabelError')
    expected = 'ann/x.png: label values 7 (1 pixels) are outside the 3 classes'
    for exc in (direct.value, from_worker.value):
        assert user_error_message(exc).startswith(expected), user_error_message(exc)
        assert '\n' not in user_error_message(exc)


@pytest.mark.slow  # builds the toy model and reads its data
def test_train_stops_with_one_error_line(tmp_path, capsys):
    """tools/train.py's main on a data set with a bad label map: one ``error:`` line naming
    the file (what the process prints last before exit 1), no traceback."""
    from tool_runner import ensure_toy_data, run_main

    ensure_toy_data()
    ann = _ade_layout(tmp_path / 'data', _toy_label(9))
    message = run_main(
        [
            'tools/train.py',
            TOY_SEG,
            '--work-dir',
            tmp_path / 'work',
            '--cfg-options',
            f'train_dataloader.dataset.data_root={tmp_path / "data"}',
            'train_cfg.max_iters=1',
        ]
    )
    out = capsys.readouterr()
    assert isinstance(message, str) and '\n' not in message, (message, out)
    assert message.startswith(f'error: {ann / "training" / "bad.png"}: label values 8 '), message
    assert 'Traceback' not in out.out + out.err
