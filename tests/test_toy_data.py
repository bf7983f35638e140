"""Tests for workshop.toy_data and tools/make_toy_data.py (toy COCO + ADE20K-style sets)."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from workshop import toy_data as toy

REPO = Path(__file__).resolve().parent.parent
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
    assert meta['generator'] == toy.GENERATOR and meta['complete'] is True
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
    assert tuple(seg.train_dataloader.dataset.metainfo.classes) == toy.SEG_CLASSES
    assert seg.model.decode_head.num_classes == len(toy.SEG_CLASSES) == len(toy.SEG_PALETTE)


def _mtimes(root):
    return {p: p.stat().st_mtime_ns for p in Path(root).rglob('*') if p.is_file()}


def _age(root):
    """Push every file's mtime into the past (robust to coarse clocks)."""
    for p in Path(root).rglob('*'):
        if p.is_file():
            os.utime(p, ns=(10**18, 10**18))


def _refused(out, match, **kw):
    """make_toy_data refuses ``out``, naming it, and changes nothing there or beside it."""
    before, beside = _tree(out.parent), sorted(os.listdir(out.parent))
    with pytest.raises(toy.ToyDataError, match=match) as err:
        _make(out, **kw)
    assert str(out) in str(err.value)
    assert _tree(out.parent) == before and sorted(os.listdir(out.parent)) == beside
    return str(err.value)


def test_reused_when_identical(tmp_path):
    """The same parameters again: the folder is reused as it is, files of its own included."""
    out = tmp_path / 'toy'
    assert _make(out)['generated']
    (out / 'notes.txt').write_text('mine')
    _age(out)
    before = _mtimes(out)
    res = _make(out)
    assert not res['generated'] and res['kept'] is None
    assert _mtimes(out) == before
    assert os.listdir(tmp_path) == ['toy']  # no temporary folder left behind


def test_force_keeps_the_previous_toy_data(tmp_path):
    """--force regenerates; the folder that was there is renamed, never deleted."""
    out = tmp_path / 'toy'
    _make(out)
    (out / 'notes.txt').write_text('mine')
    before = _tree(out)
    res = _make(out, force=True)
    assert res['generated'] and res['kept'] == tmp_path / 'toy.old-1'
    assert _tree(res['kept']) == before
    assert _files(out) == {k: v for k, v in _files(res['kept']).items() if k != 'notes.txt'}
    assert _make(out, force=True)['kept'] == tmp_path / 'toy.old-2'


def test_changed_params_refused_by_name(tmp_path):
    """Other parameters: the existing toy data is named with what differs, and kept."""
    out = tmp_path / 'toy'
    _make(out)
    msg = _refused(out, 'num_train 8 \\(asked for 3\\)', num_train=3)
    assert '--force' in msg
    res = _make(out, num_train=3, force=True)
    assert res['generated'] and len(list(res['coco_train_img'].glob('*.png'))) == 3
    assert len(list((res['kept'] / 'coco' / 'train').glob('*.png'))) == N_TRAIN


@pytest.mark.parametrize('change', ['edit', 'delete'])
def test_changed_toy_data_refused_by_name(tmp_path, change):
    """A generated file edited or deleted since: refused, naming the file."""
    out = tmp_path / 'toy'
    _make(out)
    entry = out / 'coco' / 'annotations' / 'instances_val.json'
    if change == 'edit':
        entry.write_text('{"edited": "by hand"}')
    else:
        entry.unlink()
    _refused(out, 'coco/annotations/instances_val.json: missing or changed')
    assert _make(out, force=True)['generated']  # kept as toy.old-1, then regenerated


@pytest.mark.parametrize('force', [False, True])
def test_a_users_folder_is_never_touched(tmp_path, force):
    """A folder that is not toy data (no meta.json of the generator, or someone else's):
    refused by name, even with --force, nothing changed."""
    out = tmp_path / 'project'
    (out / 'coco' / 'annotations').mkdir(parents=True)
    (out / 'coco' / 'annotations' / 'instances_train.json').write_text('{"images": []}')
    (out / 'notes.txt').write_text('hand-made notes')
    _refused(out, 'meta.json is missing or was not written by', force=force)
    (out / 'meta.json').write_text('{"project": "my own", "version": 1}\n')
    _refused(out, 'meta.json is missing or was not written by', force=force)


def test_cli_refusal_is_an_error_line(tmp_path, capsys):
    """The command line's main: exit status 1 and the refusal on stderr, not a traceback."""
    out = tmp_path / 'mine'
    out.mkdir()
    (out / 'notes.txt').write_text('hand-made notes')
    before = _tree(tmp_path)
    assert toy.main(['--out', str(out), '--force', '--no-trunk-weights']) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'error: refusing to write the toy data to {out}')
    assert _tree(tmp_path) == before


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    """A run stopped half-way leaves no output folder and no temporary folder."""
    out = tmp_path / 'toy'

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(toy, '_ade_split', killed)
    with pytest.raises(KeyboardInterrupt):
        _make(out)
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    assert _make(out)['generated']
    assert _files(out) == _files(_make(tmp_path / 'fresh')['root'])


def test_a_folder_made_meanwhile_is_not_overwritten(tmp_path, monkeypatch):
    """The target appears while the data are generated: the rename into place fails and
    what appeared is left as it is."""
    out = tmp_path / 'toy'
    ade_split = toy._ade_split

    def user_arrives(*args):
        if not out.exists():
            out.mkdir()
            (out / 'mine.txt').write_text('keep me')
        return ade_split(*args)

    monkeypatch.setattr(toy, '_ade_split', user_arrives)
    with pytest.raises(toy.ToyDataError, match='is missing or was not written by'):
        _make(out)
    assert _tree(out) == {'mine.txt': hashlib.sha256(b'keep me').hexdigest()}
    assert os.listdir(tmp_path) == ['toy']


def test_a_concurrent_run_that_finished_first_is_reused(tmp_path, monkeypatch):
    out = tmp_path / 'toy'
    ade_split = toy._ade_split

    def other_run_finishes(*args):
        if not out.exists():
            monkeypatch.setattr(toy, '_ade_split', ade_split)
            assert _make(out)['generated']
            monkeypatch.setattr(toy, '_ade_split', other_run_finishes)
        return ade_split(*args)

    monkeypatch.setattr(toy, '_ade_split', other_run_finishes)
    assert not _make(out)['generated']
    assert _files(out) == _files(_make(tmp_path / 'fresh')['root'])
    assert sorted(os.listdir(tmp_path)) == ['fresh', 'toy']


def test_toy_data_of_the_earlier_module_name_is_reused(tmp_path):
    """Checkouts hold data/toy written while the module was hst_mm.toy_data: same files."""
    out = tmp_path / 'toy'
    _make(out)
    meta = json.loads((out / 'meta.json').read_text())
    (out / 'meta.json').write_text(json.dumps(dict(meta, generator='hst_mm.toy_data')))
    assert not _make(out)['generated']


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


@pytest.mark.slow  # the toy data set
def test_default_out_is_the_checkouts_data_folder(tmp_path, monkeypatch, capsys):
    """Run from any directory, the tool's main writes (here: finds up to date)
    <repo>/data/toy."""
    import tools.make_toy_data as make_toy_data_py
    from tool_runner import ensure_toy_data

    ensure_toy_data()
    monkeypatch.chdir(tmp_path)
    assert make_toy_data_py.main([]) == 0
    assert str(REPO / 'data' / 'toy') in capsys.readouterr().out
    assert not list(tmp_path.iterdir())


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


@pytest.mark.parametrize('option', ['--num-train', '--num-val'])
@pytest.mark.parametrize('count', ['-1', '0'])
def test_tool_refuses_image_counts_under_one(tmp_path, capsys, option, count):
    """An empty split trains or validates nothing (and the next run refused its own output):
    the tool stops at its arguments, naming the option, and writes nothing."""
    import tools.make_toy_data as make_toy_data_py

    counts = {'--num-train': '1', '--num-val': '1', option: count}
    argv = ['--out', str(tmp_path / 'toy'), '--no-trunk-weights']
    with pytest.raises(SystemExit) as e:
        make_toy_data_py.main(argv + [a for kv in counts.items() for a in kv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option in err[0] and 'error:' in err[0]
    assert not (tmp_path / 'toy').exists()
