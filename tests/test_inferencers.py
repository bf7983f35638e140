"""mmdet's DetInferencer and mmseg's MMSegInferencer, what users call from Python, with the
HST toy configs and checkpoints, in a fresh process (custom_imports must do all the
registering: nothing of hst_mm is imported by hand)."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, TOY_DET_CONFIG, TOY_SEG_CONFIG

pytestmark = pytest.mark.slow

# Both in one fresh process: a process start is most of the cost.
CODE = """
import json, sys
from mmdet.apis import DetInferencer
from mmseg.apis import MMSegInferencer
det_config, det_weights, det_image, seg_config, seg_weights, seg_image, out_dir = sys.argv[1:]
det = DetInferencer(model=det_config, weights=det_weights, device='cpu')
pred = det(det_image, out_dir=out_dir + '/det', no_save_pred=False)['predictions'][0]
seg = MMSegInferencer(model=seg_config, weights=seg_weights, device='cpu')
out = seg(seg_image, out_dir=out_dir + '/seg', return_datasamples=True)
print(json.dumps({'keys': sorted(pred), 'shape': list(out.pred_sem_seg.data.shape)}))
"""


def test_det_and_seg_inferencers(toy_det_run, toy_seg_run, tmp_path):
    args = [
        TOY_DET_CONFIG,
        toy_det_run / 'iter_4.pth',
        ROOT / 'data/toy/coco/val/000002.png',
        TOY_SEG_CONFIG,
        toy_seg_run / 'iter_4.pth',
        ROOT / 'data/toy/ade/images/validation/000001.png',
        tmp_path,
    ]
    proc = subprocess.run(
        [sys.executable, '-c', CODE, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {'bboxes', 'labels', 'scores'} <= set(result['keys'])
    assert list(tmp_path.glob('det/vis/*.png'))  # the drawn prediction
    assert result['shape'] == [1, 128, 128]
