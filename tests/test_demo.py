"""The demo pipeline end to end (a few iterations): data, training, evaluation, pictures."""

import json
import re

import matplotlib.image as iio
import pytest

from hst_mm.engine.quiet import UPSTREAM_WARNINGS

from conftest import TOY_SEG_CONFIG
from tool_runner import ROOT, ensure_toy_data, run, run_main

pytestmark = pytest.mark.slow  # the toy models and data through the tools


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
    assert 'checkpoint is None' not in console  # the demo's own check-only model build
    assert 'loading annotations into memory' not in console  # pycocotools' prints
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
    """tools/demo.py's main on one image (the segmentor path is covered by the run_demo
    test)."""
    config, ckpt = 'configs/toy/mask-rcnn_hst-vit-ti_fpn_toy.py', toy_det_run / 'iter_4.pth'
    image = ROOT / 'data/toy/coco/val/000002.png'
    assert run_main(['tools/demo.py', image, config, ckpt, '--out', tmp_path / 'det.png']) is None
    assert (tmp_path / 'det.png').stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match='image not found'):
        run_main(
            ['tools/demo.py', tmp_path / 'missing.png', config, ckpt, '--out', tmp_path / 'x.png']
        )
    assert not (tmp_path / 'x.png').exists()


def test_overview_of_a_segmentor(tmp_path, toy_seg_run):
    """Ground truth | prediction, both drawn over the 3x upscaled test image."""
    import mmcv

    from workshop.overview import draw_overview

    out = tmp_path / 'seg.png'
    rows = draw_overview(TOY_SEG_CONFIG, str(toy_seg_run / 'iter_4.pth'), str(out), num=2, scale=3)
    assert [name for name, _, _ in rows] == ['000001.png', '000002.png']
    image = mmcv.imread(ROOT / 'data/toy/ade/images/validation/000001.png', channel_order='rgb')
    _, truth, pred = rows[0]
    assert truth.shape == pred.shape == (384, 384, 3)
    big = mmcv.imrescale(image, 3, interpolation='bilinear')
    assert (truth != big).any(axis=-1).mean() > 0.1  # the class map is drawn over the image
    assert (pred != big).any(axis=-1).mean() > 0.1
    h, w = iio.imread(out).shape[:2]
    assert w >= 2 * 384 and h >= 2 * 384


def test_ground_truth_alone_without_a_checkpoint(tmp_path, capsys):
    """The data-set view (where mmseg's browse_dataset fails): training split, no model;
    tools/draw_overview.py's main."""
    ensure_toy_data()
    out = tmp_path / 'train_gt.png'
    argv = [TOY_SEG_CONFIG, '--split', 'train', '--num', '3', '--scale', '2', '--out', out]
    assert run_main(['tools/draw_overview.py', *argv]) is None
    assert '3 train images, ground truth' in capsys.readouterr().out
    h, w = iio.imread(out).shape[:2]
    assert w >= 2 * 256 and h >= 2 * 256  # 3 panels, two to a row
