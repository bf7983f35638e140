"""The demo pipeline end to end (a few iterations): data, training, evaluation, pictures."""

import json
import re

import matplotlib.image as iio
import pytest

from hst_mm.engine.quiet import UPSTREAM_WARNINGS

from tool_runner import ROOT, run

pytestmark = pytest.mark.slow  # subprocess training through the tools


def test_run_demo_writes_metrics_and_pictures(tmp_path):
    out = tmp_path / 'demo'
    proc = run(
        [
            'tools/run_demo.py',
            '--out',
            out,
            '--det-iters',
            '2',
            '--seg-iters',
            '2',
            '--num-pictures',
            '1',
        ]
    )
    assert 'results on the held-out toy validation split' in proc.stdout
    summary = json.loads((out / 'summary.json').read_text())
    assert 'coco/bbox_mAP' in summary['det_metrics'] and 'mIoU' in summary['seg_metrics']
    for name in ('det_loss.png', 'seg_loss.png'):
        assert (out / name).stat().st_size > 1000, name
    # One overview per task: 1 image, 4x upscaled (512 px), ground truth | prediction.
    for name in ('det_overview.png', 'seg_overview.png'):
        h, w = iio.imread(out / name).shape[:2]
        assert w >= 2 * 512 and h >= 512, (name, h, w)
    # The console: stage lines and mmengine's progress, none of the known upstream notices
    # (the tools' own logs and mmengine's log in the work dir keep everything).
    assert 'Iter(train)' in proc.stdout and '==> evaluating det' in proc.stdout
    console = proc.stdout + proc.stderr
    for notice in UPSTREAM_WARNINGS:
        assert not re.search(notice.message, console), notice.message
    assert 'requires_grad=False' not in console
    logs = list((out / 'det').glob('*/*.log'))
    assert logs and 'is skipped since its requires_grad=False' in logs[0].read_text()


def test_rerun_keeps_previous_results(tmp_path):
    from tools.run_demo import prepare_out_dir

    out = tmp_path / 'demo'
    prepare_out_dir(str(out))
    (out / 'summary.json').write_text('first')
    prepare_out_dir(str(out))
    assert (tmp_path / 'demo.prev' / 'summary.json').read_text() == 'first'
    assert list(out.iterdir()) == []


def test_demo_draws_one_image(tmp_path, toy_det_run):
    """tools/demo.py on one image (the segmentor path is covered by the run_demo test)."""
    image = ROOT / 'data/toy/coco/val/000002.png'
    run(
        [
            'tools/demo.py',
            image,
            'configs/toy/mask-rcnn_hst-vit-ti_fpn_toy.py',
            toy_det_run / 'iter_4.pth',
            '--out',
            tmp_path / 'det.png',
        ]
    )
    assert (tmp_path / 'det.png').stat().st_size > 1000
    proc = run(
        [
            'tools/demo.py',
            tmp_path / 'missing.png',
            'configs/toy/mask-rcnn_hst-vit-ti_fpn_toy.py',
            toy_det_run / 'iter_4.pth',
            '--out',
            tmp_path / 'x.png',
        ],
        check=False,
    )
    assert proc.returncode != 0 and 'image not found' in proc.stderr
