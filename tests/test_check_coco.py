"""The COCO checks (hst_mm.datasets.coco_check, tools/check_coco.py, and tools/train.py before
training) name every problem in an annotation file and say what mmdet 3.3 does with it; each
such claim is checked here against mmdet itself, by building the toy config's dataset."""

import json
import os

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from hst_mm.datasets.coco_check import check_coco
from hst_mm.engine import cli, launch

import tools.check_coco as check_coco_py
import tools.train as train_py
from tool_runner import ROOT, ensure_toy_data

DET_CONFIG = ROOT / 'configs/toy/mask-rcnn_hst-vit-ti_fpn_toy.py'
CLASSES = ['circle', 'square', 'triangle']
CATS = [dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)]


# ---- a small COCO file written from scratch (no toy data needed) ---------------------------
def _image(i, w=64, h=48):
    return dict(id=i, file_name=f'{i:03d}.png', width=w, height=h)


def _ann(aid, iid, cat=1, box=(4.0, 4.0, 20.0, 16.0)):
    x, y, w, h = box
    return dict(
        id=aid,
        image_id=iid,
        category_id=cat,
        bbox=list(box),
        area=w * h,
        iscrowd=0,
        segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]],
    )


def _coco(n_images=3):
    """Images 1..n, each with one good annotation (ids 1..n) of class (i - 1) % 3 + 1."""
    return dict(
        images=[_image(i) for i in range(1, n_images + 1)],
        annotations=[_ann(i, i, cat=(i - 1) % 3 + 1) for i in range(1, n_images + 1)],
        categories=[dict(c) for c in CATS],
    )


def _write(tmp_path, data, name='ann.json', images=True):
    """The file (and, with ``images``, a 64x48 PNG per valid image entry under img/)."""
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    if images and isinstance(data, dict):
        (tmp_path / 'img').mkdir(exist_ok=True)
        for img in data.get('images', []):
            if isinstance(img, dict) and isinstance(img.get('file_name'), str):
                cv2.imwrite(
                    str(tmp_path / 'img' / img['file_name']), np.full((48, 64, 3), 127, np.uint8)
                )
    return path


def _text(report):
    return '\n'.join(report.errors + report.warnings)


def _mmdet(path, tmp_path):
    """The toy config's training dataset on ``path``, as mmdet builds it."""
    from mmdet.registry import DATASETS

    init_default_scope('mmdet')
    cfg = Config.fromfile(DET_CONFIG).train_dataloader.dataset
    cfg.update(ann_file=str(path), data_root=str(tmp_path), data_prefix=dict(img='img/'))
    return DATASETS.build(cfg)


def _instances(ds):
    """{image id: [(label, bbox), ...]} of what mmdet trains on."""
    return {
        info['img_id']: [
            (x['bbox_label'], x['bbox']) for x in info['instances'] if not x['ignore_flag']
        ]
        for info in (ds.get_data_info(i) for i in range(len(ds)))
    }


def test_good_file_passes(tmp_path):
    report = check_coco(str(_write(tmp_path, _coco())), classes=CLASSES)
    assert report.errors == [] and report.warnings == [] and report.summary() is None
    assert sorted(_instances(_mmdet(tmp_path / 'ann.json', tmp_path))) == [1, 2, 3]


# ---- each claim of the checker, and what mmdet 3.3 really does ----------------------------
def test_unknown_categories_only_image_is_dropped(tmp_path):
    data = _coco()
    data['annotations'][1]['category_id'] = 99  # image 2's only annotation
    path = _write(tmp_path, data)
    text = _text(check_coco(str(path), classes=CLASSES))
    assert (
        f'{path}: image 2, annotation 2: category_id 99 is not in "categories" (mmdet '
        f'drops the annotation)'
    ) in text
    assert (
        '1 of 3 images have annotations of unknown or other categories only and are left '
        'out of training (filter_empty_gt): image ids 2'
    ) in text
    assert sorted(_instances(_mmdet(path, tmp_path))) == [1, 3]  # dropped, not background


def test_negative_width_box_is_dropped_and_its_image_trained_as_background(tmp_path):
    data = _coco()
    data['annotations'][1]['bbox'] = [30.0, 4.0, -5.0, 16.0]
    path = _write(tmp_path, data)
    text = _text(check_coco(str(path), classes=CLASSES))
    assert (
        f'{path}: image 2, annotation 2: bbox [30.0, 4.0, -5.0, 16.0] has a negative width '
        f'or height, so it is not [x, y, width, height] (mmdet drops the annotation)'
    ) in text
    assert 'mmdet trains on them as background only: image ids 2' in text
    assert _instances(_mmdet(path, tmp_path))[2] == []


def test_degenerate_box_is_a_warning(tmp_path, capsys):
    """A box of height 0 and area 0 beside a good one, as COCO train2017 holds two (image
    200365, annotation 918): mmdet drops it, nothing is lost, training goes on."""
    data = _coco()
    data['annotations'].append(dict(_ann(918, 1, box=(29.6, 38.8, 1.03, 0.0)), area=0.0))
    path = _write(tmp_path, data)
    report = check_coco(str(path), classes=CLASSES)
    assert report.errors == []
    assert report.warnings == [
        f'{path}: image 1, annotation 918: bbox [29.6, 38.8, 1.03, 0.0] '
        f'is under 1 pixel wide or high (mmdet drops the annotation)'
    ]
    launch.check_training_data(_toy_cfg_on(path))  # no exit
    assert capsys.readouterr().out == (
        f'warning: {path}: 1 x degenerate bbox (under 1 pixel wide or high), dropped by mmdet '
        f'(annotation 918)\n'
    )
    assert len(_instances(_mmdet(path, tmp_path))[1]) == 1


def test_polygon_fragment_beside_a_usable_polygon_is_a_warning(tmp_path):
    data = _coco()
    data['annotations'][0]['segmentation'].append([1.0, 2.0, 3.0, 4.0])
    path = _write(tmp_path, data)
    report = check_coco(str(path), classes=CLASSES)
    assert report.errors == [] and report.warnings == [
        f'{path}: image 1, annotation 1: polygon 1 has 2 points (needs >= 3)'
    ]
    ds = _mmdet(path, tmp_path)
    sample = ds[[ds.get_data_info(i)['img_id'] for i in range(len(ds))].index(1)]
    assert len(sample['data_samples'].gt_instances) == 1  # kept, not ignored
    assert len(sample['data_samples'].ignored_instances) == 0


def test_infinite_width_is_kept(tmp_path):
    data = _coco()
    data['annotations'][0]['bbox'][2] = float('inf')
    path = _write(tmp_path, data)
    assert 'is infinite (mmdet keeps it' in _text(check_coco(str(path), classes=CLASSES))
    assert _instances(_mmdet(path, tmp_path))[1][0][1][2] == float('inf')


def test_labels_follow_the_files_category_order(tmp_path):
    data = _coco()
    data['categories'] = data['categories'][::-1]  # triangle, square, circle
    path = _write(tmp_path, data)
    report = check_coco(str(path), classes=CLASSES)
    assert (
        'lists the categories in another order (triangle, square, circle) than the '
        "config's classes (circle, square, triangle)"
    ) in report.summary()
    labels = {cat: label for cat, label in _mmdet(path, tmp_path).cat2label.items()}
    assert labels[1] == 2  # 'circle' annotations get label 2, named 'triangle'


def test_a_class_missing_from_the_file_shifts_the_labels(tmp_path):
    data = _coco()
    data['categories'] = [c for c in data['categories'] if c['name'] != 'square']
    data['annotations'] = [a for a in data['annotations'] if a['category_id'] != 2]
    path = _write(tmp_path, data)
    assert (
        "the config's classes square are not among the file's categories"
        in check_coco(str(path), classes=CLASSES).summary()
    )
    assert _mmdet(path, tmp_path).cat2label[3] == 1  # triangles named 'square'


def test_empty_file_is_named(tmp_path):
    data = _coco()
    data['annotations'] = []
    path = _write(tmp_path, data)
    summary = check_coco(str(path), classes=CLASSES).summary()
    assert summary == (
        f'{path}: none of its 3 images has an annotation: nothing to train on '
        f'(mmdet leaves out every image, and mmengine then fails with "need at '
        f'least one array to concatenate")'
    )
    with pytest.raises(ValueError, match='need at least one array to concatenate'):
        _mmdet(path, tmp_path)


@pytest.mark.parametrize(
    'case, expected, mmdet_error',
    [
        (
            'string bbox',
            "image 1, annotation 1: bbox 'abcd' is not 4 numbers (mmdet fails with TypeError)",
            TypeError,
        ),
        (
            'three numbers',
            'image 1, annotation 1: bbox [1, 2, 3] is not 4 numbers (mmdet fails with ValueError)',
            ValueError,
        ),
        (
            'no area',
            'image 1, annotation 1: area None is missing or not a number (mmdet fails with '
            "KeyError: 'area' or TypeError)",
            KeyError,
        ),
        (
            'annotation not an object',
            'annotations[3]: a str, not an object (mmdet fails with TypeError)',
            TypeError,
        ),
        (
            'image not an object',
            'images[1]: a list, not an object (mmdet fails with TypeError)',
            TypeError,
        ),
        (
            'image id a list',
            'images[0]: id [1] is not an integer (mmdet fails with TypeError: unhashable)',
            TypeError,
        ),
        (
            'no file_name',
            'image 1: file_name None is not a string (mmdet fails with KeyError or TypeError)',
            KeyError,
        ),
        (
            'width a string',
            "image 1: width/height '64'x48 are not numbers (mmdet fails with TypeError)",
            TypeError,
        ),
        (
            'category without a name',
            'categories[0]: name None is not a string (mmdet fails with KeyError or TypeError)',
            KeyError,
        ),
    ],
)
def test_wrongly_typed_entries_are_named_errors(tmp_path, case, expected, mmdet_error):
    """No traceback from the checker: a named error line, and the bare error mmdet gives."""
    data = _coco()
    if case == 'string bbox':
        data['annotations'][0]['bbox'] = 'abcd'
    elif case == 'three numbers':
        data['annotations'][0]['bbox'] = [1, 2, 3]
    elif case == 'no area':
        del data['annotations'][0]['area']
    elif case == 'annotation not an object':
        data['annotations'].append('x')
    elif case == 'image not an object':
        data['images'].insert(1, [2])
    elif case == 'image id a list':
        data['images'][0]['id'] = [1]
    elif case == 'no file_name':
        del data['images'][0]['file_name']
    elif case == 'width a string':
        data['images'][0]['width'] = '64'
    elif case == 'category without a name':
        del data['categories'][0]['name']
    path = _write(tmp_path, data)
    report = check_coco(str(path), classes=CLASSES)
    assert f'{path}: {expected}' in report.errors, report.errors
    with pytest.raises(mmdet_error):
        _mmdet(path, tmp_path)


@pytest.mark.parametrize(
    'content, expected',
    [
        ('{"annotations": [], "categories": []}', 'no list of "images": not a COCO instances file'),
        ('{"images": 3, "annotations": [], "categories": []}', 'no list of "images" (found: int)'),
        ('[1, 2]', 'holds a JSON list, not an object'),
        ('not json at all', 'cannot be read as JSON (JSONDecodeError'),
        (b'\x89PNG\r\n', 'cannot be read as JSON (UnicodeDecodeError'),
    ],
)
def test_not_a_coco_file_is_one_named_error(tmp_path, capsys, content, expected):
    path = tmp_path / 'ann.json'
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert check_coco_py.main([str(path)]) == 1
    out = capsys.readouterr().out
    assert f'ERROR {path}: {expected}' in out and out.endswith('1 errors, 0 warnings\n'), out


def test_instance_without_segmentation_fails_mask_training(tmp_path):
    data = _coco()
    del data['annotations'][0]['segmentation']
    path = _write(tmp_path, data)
    assert (
        'image 1, annotation 1: segmentation None is empty or missing (a config that '
        "loads masks fails with KeyError: 'mask'"
    ) in _text(check_coco(str(path)))
    assert check_coco(str(path), with_mask=False).errors == []  # boxes only: fine
    ds = _mmdet(path, tmp_path)
    with pytest.raises(KeyError, match='mask'):
        ds[[ds.get_data_info(i)['img_id'] for i in range(len(ds))].index(1)]


def test_duplicate_image_id_keeps_one(tmp_path):
    data = _coco()
    data['images'].append(dict(data['images'][0], file_name='other.png'))
    path = _write(tmp_path, data)
    assert (
        f'{path}: image 1: duplicate image id (mmdet keeps the later entry only)'
        in check_coco(str(path)).errors
    )
    ds = _mmdet(path, tmp_path)
    assert [ds.get_data_info(i)['img_path'] for i in range(len(ds))].count(
        str(tmp_path / 'img' / 'other.png')
    ) == 1 and len(ds) == 3


# ---- masks that train wrong or fail late: RLE runs, polygons outside the image ---------------
def _compressed(counts, size=(48, 64)):
    """The counts list as pycocotools compresses it (it does not check the runs)."""
    from pycocotools import mask as mask_utils

    h, w = size
    return mask_utils.frPyObjects(dict(counts=counts, size=[h, w]), h, w)['counts'].decode()


def _with_rle(counts, aid=2):
    """The 3-image file, annotation ``aid``'s mask an RLE of the 64x48 image."""
    data = _coco()
    data['annotations'][aid - 1]['segmentation'] = dict(counts=counts, size=[48, 64])
    return data


def _errors_of(report, aid):
    """The error lines that name annotation ``aid``."""
    return [e for e in report.errors if f', annotation {aid}: ' in e]


@pytest.mark.parametrize('compress', [False, True], ids=['counts list', 'counts string'])
def test_rle_runs_covering_the_mask_pass(tmp_path, compress):
    runs = [100, 200, 48 * 64 - 300]
    data = _with_rle(_compressed(runs) if compress else runs)
    assert check_coco(str(_write(tmp_path, data)), classes=CLASSES).errors == []


@pytest.mark.parametrize(
    'counts',
    [
        pytest.param([100, 200, 2000], id='list short of H*W'),
        pytest.param(_compressed([100, 200, 2000]), id='string short of H*W'),
        pytest.param([100, 200, 48 * 64], id='list longer than H*W'),
        pytest.param([0, 4_000_000_000], id='list with a run of 4e9'),
        pytest.param(_compressed([0, 4_000_000_000]), id='string with a run of 4e9'),
        pytest.param([10, -5, 48 * 64 - 5], id='negative run'),
        pytest.param([10, 2.5, 48 * 64 - 12.5], id='fractional run'),
        pytest.param([0, 5_000_000_000], id='run over 2**32'),
        pytest.param(_compressed([100, 200, 2772])[:-1] + 'o', id='string cut inside a run'),
        pytest.param('0\x7f4', id='string with a foreign character'),
        pytest.param(7, id='counts a number'),
    ],
)
def test_rle_whose_runs_do_not_cover_the_mask_is_an_error(tmp_path, capsys, counts):
    """pycocotools leaves a short mask's remaining pixels uninitialised (mmdet trains on
    them) and fails on a long one only when training reaches it: the checker names the
    annotation, without decoding the mask."""
    path = _write(tmp_path, _with_rle(counts))
    report = check_coco(str(path), classes=CLASSES)
    assert len(_errors_of(report, 2)) == 1 and len(report.errors) == 1, report.errors
    assert 'annotation 2' in report.summary()
    assert check_coco_py.main([str(path)]) == 1
    assert f'ERROR {path}: image 2, annotation 2: RLE' in capsys.readouterr().out


def test_what_mmdet_does_with_a_huge_rle_run(tmp_path):
    """Training dies when it reaches the image, naming neither file nor annotation."""
    path = _write(tmp_path, _with_rle(_compressed([0, 4_000_000_000])))
    ds = _mmdet(path, tmp_path)
    with pytest.raises(ValueError, match='Invalid RLE mask representation') as e:
        ds[[ds.get_data_info(i)['img_id'] for i in range(len(ds))].index(2)]
    assert str(path) not in str(e.value)


def _shift_polygon(ann, dx):
    ann['segmentation'] = [
        [v + dx if k % 2 == 0 else v for k, v in enumerate(p)] for p in ann['segmentation']
    ]


def test_polygon_outside_the_image_is_an_error(tmp_path):
    """Its box is inside: mmdet keeps the instance and trains it on an empty mask."""
    data = _coco()
    _shift_polygon(data['annotations'][1], 100)  # x 104-124 in a 64-pixel-wide image
    path = _write(tmp_path, data)
    report = check_coco(str(path), classes=CLASSES)
    assert len(_errors_of(report, 2)) == 1 and len(report.errors) == 1, report.errors
    assert 'annotation 2' in report.summary()
    ds = _mmdet(path, tmp_path)
    sample = ds[[ds.get_data_info(i)['img_id'] for i in range(len(ds))].index(2)]
    masks = sample['data_samples'].gt_instances.masks
    assert len(masks) == 1 and masks.masks.sum() == 0  # trained on, with no pixel


def test_polygon_part_outside_beside_one_inside_is_a_warning(tmp_path):
    data = _coco()
    ann = data['annotations'][1]
    ann['segmentation'].append([v - 200 for v in ann['segmentation'][0]])
    report = check_coco(str(_write(tmp_path, data)), classes=CLASSES)
    assert report.errors == [] and len(report.warnings) == 1
    assert ', annotation 2: polygon 1 ' in report.warnings[0]


@pytest.mark.parametrize('where', ['file', 'bbox'])
def test_deeply_nested_json_is_one_named_error(tmp_path, capsys, where):
    """Nesting beyond Python's recursion limit (json.load), or just under it (a value the
    checks print): one error line naming the file, not a RecursionError traceback."""
    if where == 'file':
        path = tmp_path / 'ann.json'
        path.write_text('{"images": ' + '[' * 100_000 + ']' * 100_000 + '}')
    else:
        data = json.dumps(_coco()).replace('"bbox": [4.0, 4.0, 20.0, 16.0]', '"bbox": "X"', 1)
        path = tmp_path / 'ann.json'
        path.write_text(data.replace('"X"', '[' * 980 + ']' * 980))
    assert check_coco_py.main([str(path)]) == 1
    out = capsys.readouterr().out
    errors = [line for line in out.splitlines() if line.startswith('ERROR')]
    assert len(errors) == 1 and errors[0].startswith(f'ERROR {path}: ') and 'JSON' in errors[0]
    cfg = _toy_cfg_on(path)
    with pytest.raises(SystemExit) as e:
        launch.check_training_data(cfg)
    assert str(e.value).startswith(f'error: {path}: ') and '\n' not in str(e.value)


# ---- --img-dir: every image decoded -------------------------------------------------------
def test_img_dir_decodes_every_image(tmp_path, capsys):
    data = _coco(4)
    path = _write(tmp_path, data)
    img = tmp_path / 'img'
    png = (img / '001.png').read_bytes()
    (img / '002.png').write_bytes(png[: len(png) // 2])  # truncated
    (img / '003.png').write_bytes(b'not an image')  # corrupt
    cv2.imwrite(str(img / '004.png'), np.zeros((40, 64, 3), np.uint8))  # 64x40, says 64x48
    assert check_coco_py.main([str(path), '--img-dir', str(img)]) == 1
    out = capsys.readouterr().out
    assert f'ERROR {path}: image 1' not in out
    assert (
        f'ERROR {path}: image 2: {img / "002.png"} cannot be decoded (PIL: image file is truncated'
    ) in out
    assert (
        f'ERROR {path}: image 3: {img / "003.png"} cannot be decoded (PIL: cannot '
        f'identify image file'
    ) in out
    assert 'training stops with "failed to load image" when it reaches it' in out
    assert (
        f'ERROR {path}: image 4: {img / "004.png"} decodes as 64x40, the annotation says '
        f'64x48: mmdet places the boxes and masks on the image as it decodes, i.e. '
        f'misplaced'
    ) in out
    (img / '001.png').unlink()
    assert 'image 1: file 001.png is not in' in _text(check_coco(str(path), str(img)))


def test_what_mmcv_does_with_an_undecodable_image(tmp_path):
    from mmcv.transforms import LoadImageFromFile

    png = cv2.imencode('.png', np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    (tmp_path / 'cut.png').write_bytes(png[: len(png) // 2])
    with pytest.raises(AssertionError, match='failed to load image'):
        LoadImageFromFile()(dict(img_path=str(tmp_path / 'cut.png')))


# ---- tools/train.py runs the checks before building anything -----------------------------
@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test its own verdict cache (hst_mm.datasets.coco_check_cache), none in ~/.cache."""
    monkeypatch.setenv('HST_MM_CACHE', str(tmp_path / 'cache'))


def _toy_cfg_on(path):
    """The toy config training on ``path`` and the images ``_write`` put beside it."""
    (path.parent / 'img').mkdir(exist_ok=True)
    cfg = Config.fromfile(DET_CONFIG)
    cfg.train_dataloader.dataset.update(
        ann_file=str(path), data_root=None, data_prefix=dict(img=str(path.parent / 'img'))
    )
    return cfg


def test_training_files_of_the_shipped_configs():
    """Every COCO config's training file is checked, with its classes, filter and masks;
    segmentation configs have none (and do not import mmdet for it)."""
    files = launch.coco_training_files(Config.fromfile(DET_CONFIG))
    assert files == [
        (
            'data/toy/coco/annotations/instances_train.json',
            dict(
                classes=CLASSES, filter_cfg=dict(filter_empty_gt=True, min_size=32), with_mask=True
            ),
        )
    ]
    cascade = Config.fromfile(
        ROOT / 'configs/hst/cascade-mask-rcnn_hst-vit-b_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
    )
    ((ann, kwargs),) = launch.coco_training_files(cascade)
    assert ann == 'data/coco/annotations/instances_train2017.json' and len(kwargs['classes']) == 80
    seg = Config.fromfile(ROOT / 'configs/toy/upernet_hst-vit-ti_toy.py')
    assert launch.coco_training_files(seg) == []


def test_wrapped_datasets_are_found(tmp_path):
    cfg = _toy_cfg_on(tmp_path / 'a.json')
    inner = cfg.train_dataloader.dataset
    cfg.train_dataloader.dataset = dict(
        type='RepeatDataset',
        times=2,
        dataset=dict(
            type='ConcatDataset', datasets=[inner, dict(inner, ann_file=str(tmp_path / 'b.json'))]
        ),
    )
    assert [f for f, _ in launch.coco_training_files(cfg)] == [
        str(tmp_path / 'a.json'),
        str(tmp_path / 'b.json'),
    ]


def test_train_stops_on_errors_with_one_line(tmp_path, capsys):
    data = _coco(5)
    data['annotations'][0]['bbox'][2] = -3.0
    data['annotations'][1]['bbox'][3] = -1.0
    data['annotations'][2]['category_id'] = 7
    path = _write(tmp_path, data)
    with pytest.raises(SystemExit) as e:
        launch.check_training_data(_toy_cfg_on(path))
    msg = str(e.value)
    assert msg.startswith(
        f'error: {path}: 3 entries that mmdet would lose, mis-train or fail '
        f'on: 2 x bbox with a negative width or height (annotations 1, 2), 1 x '
        f'category_id not in "categories" (annotation 3)'
    ), msg
    assert '\n' not in msg and f'python tools/check_coco.py {path}' in msg
    out = capsys.readouterr().out  # warnings come first, on stdout
    assert out.startswith(f'warning: {path}: 1 of 5 images have annotations of unknown')


def test_train_stops_on_an_empty_file(tmp_path):
    data = _coco()
    data['annotations'] = []
    path = _write(tmp_path, data)
    with pytest.raises(
        SystemExit,
        match=rf'^error: {path}: none of its 3 images has an '
        r'annotation: nothing to train on',
    ):
        launch.check_training_data(_toy_cfg_on(path))


def test_train_goes_on_after_warnings(tmp_path, capsys):
    data = _coco(4)
    data['annotations'] = data['annotations'][:3]  # image 4: none
    path = _write(tmp_path, data)
    launch.check_training_data(_toy_cfg_on(path))  # no exit
    assert capsys.readouterr().out == (
        f'warning: {path}: 1 of 4 images have no annotation and are left out of training '
        f'(filter_empty_gt): image ids 4\n'
    )


def test_train_main_checks_before_building_the_runner(tmp_path, monkeypatch):
    data = _coco()
    data['annotations'] = []
    path = _write(tmp_path, data)
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setattr(cli, 'build_runner', lambda cfg: pytest.fail('Runner built'))
    argv = [
        str(DET_CONFIG),
        '--work-dir',
        str(tmp_path / 'work'),
        '--cfg-options',
        f'train_dataloader.dataset.ann_file={path}',
        'train_dataloader.dataset.data_root=',
        f'train_dataloader.dataset.data_prefix.img={tmp_path}/img/',
    ]
    with pytest.raises(SystemExit) as e:
        train_py.main(argv)
    # one line naming the file: what the process prints as its last line before exit 1
    assert e.value.code.startswith(
        f'error: {path}: none of its 3 images has an annotation: nothing to train on'
    ), e.value.code
    assert '\n' not in e.value.code
    with pytest.raises(pytest.fail.Exception, match='Runner built'):  # skipped on request
        train_py.main(argv + ['--no-data-check'])


# ---- rank 0 checks once; the verdict is cached per unchanged file --------------------------
@pytest.fixture
def counted_checks(monkeypatch):
    """The calls of check_coco that the training launch makes."""
    calls = []

    def counting(ann_file, **kwargs):
        calls.append(ann_file)
        return check_coco(ann_file, **kwargs)

    monkeypatch.setattr(launch, 'check_coco', counting)
    return calls


def _warned_coco(tmp_path):
    data = _coco(4)
    data['annotations'] = data['annotations'][:3]  # image 4: none (a warning)
    return _write(tmp_path, data)


def test_an_unchanged_file_is_checked_once(tmp_path, counted_checks, capsys):
    path = _warned_coco(tmp_path)
    cfg = _toy_cfg_on(path)
    launch.check_training_data(cfg)
    first = capsys.readouterr().out
    launch.check_training_data(cfg)
    assert len(counted_checks) == 1
    assert capsys.readouterr().out == first and 'image ids 4' in first  # the same verdict
    # an edit (same size, another mtime) and a file of another content: checked again
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    launch.check_training_data(cfg)
    assert len(counted_checks) == 2
    data = json.loads(path.read_text())
    data['annotations'] = []
    path.write_text(json.dumps(data))
    with pytest.raises(SystemExit, match='none of its 4 images has an annotation'):
        launch.check_training_data(cfg)
    assert len(counted_checks) == 3


@pytest.mark.parametrize('damage', ['garbage', 'verdict', 'other key'])
def test_a_damaged_cache_entry_is_checked_again(tmp_path, counted_checks, damage):
    path = _warned_coco(tmp_path)
    cfg = _toy_cfg_on(path)
    launch.check_training_data(cfg)
    (entry,) = (tmp_path / 'cache' / 'coco_check').iterdir()
    stored = json.loads(entry.read_text())
    if damage == 'garbage':
        entry.write_bytes(b'\x00{"key": ')
    elif damage == 'verdict':  # an entry that would let a broken file through
        entry.write_text(json.dumps(dict(stored, verdict=dict(warnings='x', error=0))))
    else:
        entry.write_text(json.dumps(dict(stored, key=dict(stored['key'], size=1))))
    launch.check_training_data(cfg)
    assert len(counted_checks) == 2
    assert json.loads(entry.read_text()) == stored  # rewritten


def test_other_ranks_take_rank_0s_verdict(tmp_path, counted_checks, monkeypatch, capsys):
    """Rank 1 reads no annotation file: it stops (or trains) on what rank 0 broadcast."""
    import mmengine.dist

    data = _coco()
    data['annotations'] = []
    cfg = _toy_cfg_on(_write(tmp_path, data))
    sent = []

    def broadcast(objects, src=0):  # rank 0's side: keep what it sends
        sent.append(list(objects))

    monkeypatch.setattr(mmengine.dist, 'broadcast_object_list', broadcast)
    with pytest.raises(SystemExit) as e:
        launch.check_training_data(cfg)
    assert len(counted_checks) == 1 and str(e.value).startswith('error: ')
    assert 'left out of training' in capsys.readouterr().out  # rank 0 prints the warnings
    ((verdicts,),) = sent

    def received(objects, src=0):  # rank 1's side: rank 0's verdicts arrive
        objects[0] = verdicts

    monkeypatch.setattr(mmengine.dist, 'broadcast_object_list', received)
    monkeypatch.setenv('HST_MM_CACHE', str(tmp_path / 'rank1_cache'))  # nothing cached there
    monkeypatch.setattr(mmengine.dist, 'get_rank', lambda group=None: 1)
    with pytest.raises(SystemExit) as e:
        launch.check_training_data(cfg)
    assert e.value.code == 1 and len(counted_checks) == 1  # stopped, without checking
    assert capsys.readouterr().out == ''
    verdicts[0] = dict(warnings=['warning: x'], error=None)
    launch.check_training_data(cfg)  # a good verdict: rank 1 goes on, silently
    assert len(counted_checks) == 1 and capsys.readouterr().out == ''


@pytest.mark.parametrize('missing', ['ann_file', 'images'])
def test_missing_data_names_data_root_and_the_key(tmp_path, counted_checks, monkeypatch, missing):
    """COCO not in place: one line naming the missing path, the config's data_root and the
    --cfg-options key that moves it; no advice to check or skip the check of a missing file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'coco').mkdir()
    _write(tmp_path / 'coco', _coco())
    cfg = Config.fromfile(DET_CONFIG)
    ds = cfg.train_dataloader.dataset
    ds.update(data_root='coco/', ann_file='ann.json', data_prefix=dict(img='img/'))
    if missing == 'ann_file':
        ds.ann_file = 'annotations/instances_train2017.json'
    else:
        ds.data_prefix.img = 'train2017/'
    with pytest.raises(SystemExit) as e:
        launch.check_training_data(cfg)
    msg = str(e.value)
    gone = (
        'coco/annotations/instances_train2017.json' if missing == 'ann_file' else 'coco/train2017/'
    )
    assert '\n' not in msg and gone in msg and str(tmp_path) in msg
    assert "train_dataloader.dataset.data_root is 'coco/'" in msg
    assert '--cfg-options train_dataloader.dataset.data_root=' in msg and 'README.md' in msg
    assert 'check_coco.py' not in msg and '--no-data-check' not in msg
    assert counted_checks == []
    # where the data is found there, training would go on
    ds.update(ann_file='ann.json', data_prefix=dict(img='img/'))
    launch.check_training_data(cfg)


def test_a_wrapped_set_without_data_root_names_its_own_keys(tmp_path, counted_checks):
    cfg = _toy_cfg_on(tmp_path / 'gone.json')  # the image folder is there
    cfg.train_dataloader.dataset = dict(
        type='RepeatDataset', times=2, dataset=cfg.train_dataloader.dataset
    )
    with pytest.raises(SystemExit) as e:
        launch.check_training_data(cfg)
    assert f'no annotation file {tmp_path / "gone.json"}' in str(e.value)
    assert '--cfg-options train_dataloader.dataset.dataset.ann_file=' in str(e.value)


# ---- the tool end to end, on the toy set ---------------------------------------------------
def _broken_coco(tmp_path):
    """The toy train set's first 5 images, with one problem each (image ids 1-5)."""
    ensure_toy_data()
    data = json.loads((ROOT / 'data/toy/coco/annotations/instances_train.json').read_text())
    data['images'] = data['images'][:5]
    anns = [a for a in data['annotations'] if a['image_id'] in (2, 3, 4, 5)]  # 1: no instances
    first = {}
    for a in anns:
        first.setdefault(a['image_id'], a)
    first[2]['segmentation'] = [[1.0, 2.0, 3.0, 4.0]]  # 2 points
    first[3]['segmentation'] = [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]  # odd count
    first[4]['segmentation'] = [[float('nan')] * 8]
    first[5]['bbox'] = [float('nan'), 1.0, 10.0, 10.0]
    data['annotations'] = anns
    path = tmp_path / 'broken.json'
    path.write_text(json.dumps(data))  # json writes NaN as NaN
    return path, {i: a['id'] for i, a in first.items()}


@pytest.mark.slow  # the toy data set
def test_check_coco_names_every_problem(tmp_path, capsys):
    """tools/check_coco.py's main (its exit status) on the toy set, broken and as shipped."""
    path, ann_id = _broken_coco(tmp_path)
    status = check_coco_py.main([str(path)])
    out, err = capsys.readouterr()
    assert status == 1 and err == '', out + err
    for image, problem in [
        (2, 'polygon 0 has 2 points (needs >= 3)'),
        (2, 'no usable polygon: mmdet ignores the whole instance'),
        (3, 'polygon 0 has an odd number of coordinates (7)'),
        (4, 'polygon 0 has non-finite or non-numeric coordinates'),
        (5, 'bbox [nan, 1.0, 10.0, 10.0] has NaN (mmdet drops the annotation)'),
    ]:
        assert f'ERROR {path}: image {image}, annotation {ann_id[image]}: {problem}' in out, out
    assert (
        '1 of 5 images have no annotation and are left out of training (filter_empty_gt): '
        'image ids 1\n' in out
    )
    assert (
        '2 of 5 images have annotations but no usable instance (dropped, crowd or '
        'ignored): mmdet trains on them as background only: image ids 3, 5\n' in out
    )
    toy = ROOT / 'data/toy/coco'
    argv = [str(toy / 'annotations/instances_train.json'), '--img-dir', str(toy / 'train')]
    status = check_coco_py.main(argv)
    out, err = capsys.readouterr()
    assert status == 0 and '0 errors, 0 warnings' in out, out + err


@pytest.mark.slow
def test_mmdet_skips_these_problems_silently(tmp_path):
    """What the checker guards against (mmdet 3.3): no error, the data is just lost."""
    from mmdet.registry import DATASETS

    init_default_scope('mmdet')
    path, _ = _broken_coco(tmp_path)
    cfg = Config.fromfile(DET_CONFIG).train_dataloader.dataset
    cfg.update(ann_file=str(path), data_root=str(ROOT / 'data/toy/coco'))
    ds = DATASETS.build(cfg)
    ids = [ds.get_data_info(i)['img_id'] for i in range(len(ds))]
    assert 1 not in ids  # empty image: filtered out
    samples = {i: ds[ids.index(i)]['data_samples'] for i in (2, 3, 5)}
    # the image's other instances are kept, the broken one becomes an ignored box
    assert len(samples[2].ignored_instances) == 1 and len(samples[3].ignored_instances) == 1
    assert len(samples[5].ignored_instances) == 0  # NaN box: instance dropped
