"""Tests for hst_mm.toy_data and tools/make_toy_data.py (toy COCO + ADE20K-style sets)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hst_mm import toy_data as toy

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / 'tools' / 'make_toy_data.py'
N_TRAIN, N_VAL = 8, 4


def _make(out, seed=0, **kw):
    kw.setdefault('num_train', N_TRAIN)
    kw.setdefault('num_val', N_VAL)
    return toy.make_toy_data(out, seed=seed, **kw)


def _files(root):
    """{relative path: bytes} for every file under root."""
    root = Path(root)
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()
    }


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return _make(tmp_path_factory.mktemp('toy'))


def _tree(root):
    """{relative path: sha256 | 'dir' | 'symlink -> target'}; links not followed."""
    tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                tree[rel] = f'symlink -> {os.readlink(path)}'
            elif path.is_dir():
                tree[rel] = 'dir'
            else:
                tree[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return tree


def test_layout(data):
    root = data['root']
    meta = json.loads((root / 'meta.json').read_text())
    assert meta['seed'] == 0
    # The marker: who wrote the folder, and every file under coco/ and ade/ with its hash.
    assert meta['generator'] == 'hst_mm.toy_data' and meta['complete'] is True
    tree = _tree(root)
    assert meta['files'] == {rel: h for rel, h in tree.items() if h != 'dir' and rel != 'meta.json'}
    for split, n in (('train', N_TRAIN), ('val', N_VAL)):
        assert len(list(data[f'coco_{split}_img'].glob('*.png'))) == n
        assert data[f'coco_{split}_ann'].is_file()
    for split, n in (('train', N_TRAIN), ('val', N_VAL)):
        imgs = sorted(p.name for p in data[f'ade_{split}_img'].glob('*.png'))
        anns = sorted(p.name for p in data[f'ade_{split}_ann'].glob('*.png'))
        assert len(imgs) == n and imgs == anns
    assert data['ade_train_img'] == root / 'ade' / 'images' / 'training'
    assert data['ade_val_ann'] == root / 'ade' / 'annotations' / 'validation'


def test_determinism(tmp_path, data):
    a = _files(data['root'])
    b = _files(_make(tmp_path / 'b')['root'])
    assert a == b  # images, label PNGs, annotation JSON, meta: all identical
    c = _files(_make(tmp_path / 'c', seed=1)['root'])
    assert a.keys() == c.keys()
    for key in (
        'coco/annotations/instances_train.json',
        'ade/annotations/training/000001.png',
        'coco/train/000001.png',
    ):
        assert a[key] != c[key]


def test_coco_annotations(data):
    from pycocotools.coco import COCO

    for split, n in (('train', N_TRAIN), ('val', N_VAL)):
        coco = COCO(str(data[f'coco_{split}_ann']))
        cats = coco.loadCats(coco.getCatIds())
        assert [(c['id'], c['name']) for c in cats] == [
            (1, 'circle'),
            (2, 'square'),
            (3, 'triangle'),
        ]
        assert len(coco.getImgIds()) == n
        anns = coco.loadAnns(coco.getAnnIds())
        assert len({a['id'] for a in anns}) == len(anns) >= n
        for img_id in coco.getImgIds():
            img = coco.loadImgs(img_id)[0]
            assert (data[f'coco_{split}_img'] / img['file_name']).is_file()
            assert (img['width'], img['height']) == (128, 128)
            assert 1 <= len(coco.getAnnIds(imgIds=img_id)) <= 3
        for a in anns:
            assert a['iscrowd'] == 0 and a['category_id'] in (1, 2, 3)
            poly = a['segmentation']
            assert isinstance(poly, list) and len(poly[0]) >= 6
            assert len(poly[0]) % 2 == 0
            xy = np.array(poly[0]).reshape(-1, 2)
            x, y, w, h = a['bbox']
            # bbox is the polygon's extent
            assert np.allclose([x, y, x + w, y + h], [*xy.min(0), *xy.max(0)], atol=0.02)
            mask = coco.annToMask(a)
            area = mask.sum()
            assert abs(area - a['area']) <= 0.04 * a['area'] + 2
            assert 24 * 24 * 0.3 < a['area'] < 60 * 60
            ys, xs = np.nonzero(mask)
            # mask extent vs polygon extent (sharp tips may miss a pixel)
            extent = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert np.allclose(extent, [x, y, x + w, y + h], atol=1.5)
        # instances do not overlap
        for img_id in coco.getImgIds():
            masks = [coco.annToMask(a) for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id))]
            assert np.sum(masks, 0).max() <= 1


def test_seg_labels(data):
    import cv2

    counts = np.zeros(256, np.int64)
    for split in ('train', 'val'):
        for img_path in sorted(data[f'ade_{split}_img'].glob('*.png')):
            img = cv2.imread(str(img_path), cv2.IMREAD_UNCHANGED)
            lab = cv2.imread(str(data[f'ade_{split}_ann'] / img_path.name), cv2.IMREAD_UNCHANGED)
            assert img.shape == (128, 128, 3) and img.dtype == np.uint8
            assert lab.shape == img.shape[:2] and lab.dtype == np.uint8
            assert set(np.unique(lab)) <= {0, 1, 2, 3, 4}
            assert 1 in lab and (lab >= 2).any()
            counts += np.bincount(lab.ravel(), minlength=256)
    frac = counts / counts.sum()
    assert 0 < frac[0] < 0.15  # some ignore pixels, but a minority
    assert all(frac[k] > 0.01 for k in range(1, 5))


def test_toy_configs_name_the_generated_classes():
    """The toy configs train on what the generator draws: same classes, in the same order."""
    from mmengine.config import Config

    det = Config.fromfile(str(REPO / 'configs/toy/mask-rcnn_hst-vit-ti_fpn_toy.py'))
    seg = Config.fromfile(str(REPO / 'configs/toy/upernet_hst-vit-ti_toy.py'))
    assert tuple(det.train_dataloader.dataset.metainfo.classes) == toy.COCO_CLASSES
    assert tuple(seg.toy_classes) == toy.SEG_CLASSES
    assert seg.model.decode_head.num_classes == len(toy.SEG_CLASSES) == len(toy.SEG_PALETTE)


def _mtimes(root):
    return {p: p.stat().st_mtime_ns for p in Path(root).rglob('*') if p.is_file()}


def _age(root):
    """Push every file's mtime into the past (robust to coarse clocks)."""
    for p in Path(root).rglob('*'):
        if p.is_file():
            os.utime(p, ns=(10**18, 10**18))


def test_idempotent_and_force(tmp_path):
    out = tmp_path / 'toy'
    assert _make(out)['generated']
    _age(out)
    before = _mtimes(out)
    assert not _make(out)['generated']
    assert _mtimes(out) == before
    res = _make(out, force=True)
    assert res['generated']
    after = _mtimes(out)
    assert after.keys() == before.keys()
    assert all(after[p] != before[p] for p in after)


def test_changed_params_regenerate(tmp_path):
    out = tmp_path / 'toy'
    _make(out)
    (out / 'keep.txt').write_text('not ours')
    res = _make(out, num_train=3)  # different params -> rebuilt, no leftovers
    assert res['generated']
    assert len(list(res['coco_train_img'].glob('*.png'))) == 3
    assert len(list(res['ade_train_ann'].glob('*.png'))) == 3
    assert (out / 'keep.txt').read_text() == 'not ours'


def test_refuses_foreign_data(tmp_path):
    (tmp_path / 'coco').mkdir()
    (tmp_path / 'coco' / 'x.txt').write_text('foreign')
    with pytest.raises(RuntimeError, match='coco/x.txt'):
        _make(tmp_path, force=True)
    assert (tmp_path / 'coco' / 'x.txt').read_text() == 'foreign'


def test_refuses_foreign_meta_and_user_files(tmp_path, capsys):
    """Someone else's meta.json must not make their coco/ look generated."""
    out = tmp_path / 'mine'
    (out / 'coco' / 'annotations').mkdir(parents=True)
    (out / 'meta.json').write_text('{"project": "my own", "version": 1}\n')
    (out / 'coco' / 'annotations' / 'instances_train.json').write_text('{"images": []}')
    (out / 'coco' / 'notes.txt').write_text('hand-made notes')
    before = _tree(out)
    for force in (False, True):
        with pytest.raises(toy.ToyDataError) as err:
            _make(out, force=force)
        msg = str(err.value)
        assert str(out / 'meta.json') in msg and 'coco/notes.txt' in msg
        assert _tree(out) == before
    # the command line: exit status 1 and the refusal on stderr, not a traceback
    assert toy.main(['--out', str(out), '--force', '--no-trunk-weights']) == 1
    err = capsys.readouterr().err
    assert str(out / 'meta.json') in err and 'coco/notes.txt' in err
    assert _tree(out) == before


def test_refuses_user_file_in_generated_ade(tmp_path):
    out = tmp_path / 'toy'
    _make(out)
    mine = out / 'ade' / 'images' / 'training' / 'my_photo.png'
    mine.write_bytes(b'not generated')
    before = _tree(out)
    for kw in (dict(force=True), dict(num_train=3)):
        with pytest.raises(toy.ToyDataError) as err:
            _make(out, **kw)
        assert str(out / 'ade') in str(err.value)
        assert 'ade/images/training/my_photo.png' in str(err.value)
        assert _tree(out) == before
    assert not _make(out)['generated']  # same parameters: up to date, nothing touched
    assert _tree(out) == before
    mine.unlink()  # once the user's file is moved away, regeneration works again
    assert _make(out, force=True)['generated']


@pytest.mark.parametrize('change', ['edit', 'symlink', 'folder'])
def test_refuses_changed_or_extra_entries(tmp_path, change):
    """A generated file edited since, a symlink or an extra folder: all left alone."""
    out, elsewhere = tmp_path / 'toy', tmp_path / 'elsewhere'
    _make(out)
    elsewhere.mkdir()
    (elsewhere / 'precious.txt').write_text('keep me')
    if change == 'edit':
        entry = 'coco/annotations/instances_val.json'
        (out / entry).write_text('{"edited": "by hand"}')
    elif change == 'symlink':
        entry = 'coco/train/link'
        (out / entry).symlink_to(elsewhere)
    else:
        entry = 'ade/extra/'
        (out / entry).mkdir()
    before = _tree(out)
    with pytest.raises(toy.ToyDataError, match=entry):
        _make(out, force=True)
    assert _tree(out) == before
    assert (elsewhere / 'precious.txt').read_text() == 'keep me'


def test_unrelated_content_left_alone(tmp_path):
    """--out at a folder holding other things: only coco/, ade/, meta.json added."""
    out = tmp_path / 'project'
    (out / 'results').mkdir(parents=True)
    (out / 'results' / 'run1.json').write_text('{"map": 0.5}')
    (out / 'notes.txt').write_text('mine')
    (out / '.hidden').write_bytes(b'\x00\x01')
    before = _tree(out)
    for kw in (dict(), dict(force=True), dict(num_train=2)):
        assert _make(out, **kw)['generated']
        after = _tree(out)
        assert {k: after.get(k) for k in before} == before
        assert {k.split('/')[0] for k in after} - {k.split('/')[0] for k in before} == {
            'coco',
            'ade',
            'meta.json',
        }


def test_interrupted_run_is_cleaned_up(tmp_path, monkeypatch):
    """A run killed half-way leaves a marker the next run can regenerate from."""
    out = tmp_path / 'toy'

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(toy, '_ade_split', killed)
    with pytest.raises(KeyboardInterrupt):
        _make(out)
    assert json.loads((out / 'meta.json').read_text())['complete'] is False
    assert (out / 'coco' / 'annotations' / 'instances_val.json').is_file()
    monkeypatch.undo()
    assert _make(out)['generated']
    assert _files(out) == _files(_make(tmp_path / 'fresh')['root'])


def test_output_from_before_the_marker(tmp_path):
    """A meta.json without the marker, as written before it existed: adopted only if
    coco/ and ade/ are exactly what its parameters produce."""
    out = tmp_path / 'toy'
    _make(out)
    legacy = (
        json.dumps(
            dict(version=1, seed=0, num_train=N_TRAIN, num_val=N_VAL, image_size=128), indent=2
        )
        + '\n'
    )
    (out / 'meta.json').write_text(legacy)
    _age(out)
    data_before = {p: t for p, t in _mtimes(out).items() if p.name != 'meta.json'}
    assert not _make(out)['generated']  # same parameters: kept, marker recorded
    assert {p: t for p, t in _mtimes(out).items() if p.name != 'meta.json'} == data_before
    assert json.loads((out / 'meta.json').read_text())['generator'] == 'hst_mm.toy_data'

    (out / 'meta.json').write_text(legacy)
    edited = out / 'ade' / 'annotations' / 'validation' / '000001.png'
    edited.write_bytes(b'hand-made label map')
    before = _tree(out)
    with pytest.raises(toy.ToyDataError, match='ade/annotations/validation/000001.png'):
        _make(out, force=True)
    assert _tree(out) == before


def test_cli(tmp_path, capsys):
    """The command line's main (tools/make_toy_data.py runs it; the script itself:
    test_default_out_is_the_checkouts_data_folder)."""
    out = tmp_path / 'cli'
    argv = ['--out', str(out), '--seed', '3', '--num-train', '2', '--num-val', '1']
    assert toy.main(argv) == 0
    assert 'wrote' in capsys.readouterr().out
    meta = json.loads((out / 'meta.json').read_text())
    assert (meta['seed'], meta['num_train'], meta['num_val']) == (3, 2, 1)
    assert toy.main(argv) == 0 and 'up to date' in capsys.readouterr().out


@pytest.mark.slow
def test_default_out_is_the_checkouts_data_folder(tmp_path):
    """Run from any directory, the tool writes (here: finds up to date) <repo>/data/toy."""
    from tool_runner import ensure_toy_data

    ensure_toy_data()
    r = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'make_toy_data.py')],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert str(REPO / 'data' / 'toy') in r.stdout and not list(tmp_path.iterdir())


def test_mmdet_coco_dataset(data):
    from mmdet.datasets import CocoDataset

    for split, n in (('train', N_TRAIN), ('val', N_VAL)):
        ds = CocoDataset(
            data_root=str(data['coco_root']),
            ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img=f'{split}/'),
            metainfo=dict(classes=toy.COCO_CLASSES),
            filter_cfg=None,
            pipeline=[],
            test_mode=split == 'val',
        )
        assert len(ds) == n
        info = ds.get_data_info(0)
        assert os.path.isfile(info['img_path'])
        assert info['instances']
        for inst in info['instances']:
            assert inst['bbox_label'] in (0, 1, 2)
            assert inst['mask'] and inst['ignore_flag'] == 0


def test_mmseg_dataset(data):
    from mmseg.datasets import BaseSegDataset

    for split, n in (('training', N_TRAIN), ('validation', N_VAL)):
        ds = BaseSegDataset(
            data_root=str(data['ade_root']),
            data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}'),
            img_suffix='.png',
            seg_map_suffix='.png',
            reduce_zero_label=True,
            metainfo=dict(classes=toy.SEG_CLASSES),
            pipeline=[],
        )
        assert len(ds) == n
        info = ds.get_data_info(0)
        assert os.path.isfile(info['img_path'])
        assert os.path.isfile(info['seg_map_path'])
        assert info['reduce_zero_label'] is True
        assert Path(info['img_path']).stem == Path(info['seg_map_path']).stem
