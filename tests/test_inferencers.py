"""mmdet's DetInferencer and mmseg's MMSegInferencer, what users call from Python, with the
HST toy configs and checkpoints, each in a fresh process (custom_imports must do all the
registering: nothing of hst_mm is imported by hand)."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, TOY_DET_CONFIG, TOY_SEG_CONFIG

pytestmark = pytest.mark.slow

DET = """
import json, sys
from mmdet.apis import DetInferencer
inferencer = DetInferencer(model=sys.argv[1], weights=sys.argv[2], device='cpu')
out = inferencer(sys.argv[3], out_dir=sys.argv[4], no_save_pred=False)
pred = out['predictions'][0]
print(json.dumps({'n': len(pred['scores']), 'keys': sorted(pred)}))
"""

SEG = """
import json, sys
from mmseg.apis import MMSegInferencer
inferencer = MMSegInferencer(model=sys.argv[1], weights=sys.argv[2], device='cpu')
out = inferencer(sys.argv[3], out_dir=sys.argv[4], return_datasamples=True)
print(json.dumps({'shape': list(out.pred_sem_seg.data.shape)}))
"""


def _run(code, *args):
    proc = subprocess.run(
        [sys.executable, '-c', code, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_det_inferencer(toy_det_run, tmp_path):
    image = ROOT / 'data/toy/coco/val/000002.png'
    result = _run(DET, TOY_DET_CONFIG, toy_det_run / 'iter_4.pth', image, tmp_path)
    assert {'bboxes', 'labels', 'scores'} <= set(result['keys'])
    assert list(tmp_path.glob('vis/*.png'))  # the drawn prediction


def test_seg_inferencer(toy_seg_run, tmp_path):
    image = ROOT / 'data/toy/ade/images/validation/000001.png'
    result = _run(SEG, TOY_SEG_CONFIG, toy_seg_run / 'iter_4.pth', image, tmp_path)
    assert result['shape'] == [1, 128, 128]
