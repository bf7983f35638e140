"""tools/check_coco.py names every problem in a COCO annotation file; mmdet skips them silently."""
import json
import subprocess
import sys

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from tool_runner import ROOT, ensure_toy_data

pytestmark = pytest.mark.slow       # the tool in a subprocess, on generated data

DET_CONFIG = ROOT / 'configs/toy/mask-rcnn_hst-vit-ti_fpn_toy.py'


def _broken_coco(tmp_path):
    """The toy train set's first 5 images, with one problem each (image ids 1-5)."""
    ensure_toy_data()
    data = json.loads((ROOT / 'data/toy/coco/annotations/instances_train.json').read_text())
    data['images'] = data['images'][:5]
    anns = [a for a in data['annotations'] if a['image_id'] in (2, 3, 4, 5)]  # 1: no instances
    first = {}
    for a in anns:
        first.setdefault(a['image_id'], a)
    first[2]['segmentation'] = [[1.0, 2.0, 3.0, 4.0]]            # 2 points
    first[3]['segmentation'] = [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]  # odd count
    first[4]['segmentation'] = [[float('nan')] * 8]
    first[5]['bbox'] = [float('nan'), 1.0, 10.0, 10.0]
    data['annotations'] = anns
    path = tmp_path / 'broken.json'
    path.write_text(json.dumps(data))                            # json writes NaN as NaN
    return path, {i: a['id'] for i, a in first.items()}


def test_check_coco_names_every_problem(tmp_path):
    path, ann_id = _broken_coco(tmp_path)
    proc = subprocess.run([sys.executable, 'tools/check_coco.py', str(path)], cwd=ROOT,
                          capture_output=True, text=True)
    out = proc.stdout
    assert proc.returncode == 1, out
    for image, problem in [(2, 'polygon 0 has 2 points (needs >= 3)'),
                           (2, 'no usable polygon: mmdet ignores the whole instance'),
                           (3, 'polygon 0 has an odd number of coordinates (7)'),
                           (4, 'polygon 0 has non-finite or non-numeric coordinates'),
                           (5, 'bbox [nan, 1.0, 10.0, 10.0] is not 4 finite numbers')]:
        assert f'ERROR {path}: image {image}, annotation {ann_id[image]}: {problem}' in out, out
    assert '1 of 5 images have no annotation and are left out of training (filter_empty_gt): ' \
           'image ids 1\n' in out
    assert '2 images have annotations but no usable instance (broken, crowd or ignored): ' \
           'mmdet trains on them as background only: image ids 3, 5\n' in out
    ok = subprocess.run([sys.executable, 'tools/check_coco.py',
                         'data/toy/coco/annotations/instances_train.json',
                         '--img-dir', 'data/toy/coco/train'], cwd=ROOT, capture_output=True,
                        text=True)
    assert ok.returncode == 0 and '0 errors, 0 warnings' in ok.stdout, ok.stdout + ok.stderr


def test_mmdet_skips_these_problems_silently(tmp_path):
    """What the checker guards against (mmdet 3.3): no error, the data is just lost."""
    from mmdet.registry import DATASETS
    init_default_scope('mmdet')
    path, _ = _broken_coco(tmp_path)
    cfg = Config.fromfile(DET_CONFIG).train_dataloader.dataset
    cfg.update(ann_file=str(path), data_root=str(ROOT / 'data/toy/coco'))
    ds = DATASETS.build(cfg)
    ids = [ds.get_data_info(i)['img_id'] for i in range(len(ds))]
    assert 1 not in ids                                          # empty image: filtered out
    samples = {i: ds[ids.index(i)]['data_samples'] for i in (2, 3, 5)}
    # the image's other instances are kept, the broken one becomes an ignored box
    assert len(samples[2].ignored_instances) == 1 and len(samples[3].ignored_instances) == 1
    assert len(samples[5].ignored_instances) == 0                # NaN box: instance dropped
