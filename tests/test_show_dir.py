"""tools/test.py --show-dir DIR draws into <work_dir>/<timestamp>/DIR, as mmdet's and mmseg's
tools do, never into the directory the tool runs from.

The fast tests run mmdet's and mmseg's own visualization hooks and visualizers on one picture,
set up by :func:`hst_mm.engine.show_dir.show_dir` and built as the Runner builds them; the slow
ones run tools/test.py on the session's toy models."""

import uuid
from types import SimpleNamespace

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import HOOKS, VISUALIZERS, init_default_scope
from mmengine.structures import InstanceData, PixelData

from hst_mm.engine.show_dir import show_dir

from conftest import ROOT, TOY_DET_CONFIG, TOY_SEG_CONFIG
from tool_runner import run_main

# mmdet's and mmseg's default_runtime.py entries (what the shipped configs inherit)
RUNTIME = {
    'mmdet': ('DetVisualizationHook', 'DetLocalVisualizer'),
    'mmseg': ('SegVisualizationHook', 'SegLocalVisualizer'),
}


def draw_one(scope, directory, work_dir):
    """One test iteration's pictures through the hook and visualizer a Runner would build."""
    hook_type, vis_type = RUNTIME[scope]
    cfg = Config(
        dict(
            default_scope=scope,
            default_hooks=dict(visualization=dict(type=hook_type)),
            visualizer=dict(
                type=vis_type, vis_backends=[dict(type='LocalVisBackend')], name=uuid.uuid4().hex
            ),
        )
    )
    show_dir(cfg, directory)
    init_default_scope(scope)
    runner = SimpleNamespace(work_dir=str(work_dir), timestamp='20260101_000000', iter=0)
    log_dir = work_dir / runner.timestamp
    vis_cfg = dict(cfg.visualizer)
    vis_cfg.setdefault('save_dir', str(log_dir))  # as Runner.build_visualizer
    visualizer = VISUALIZERS.build(vis_cfg)
    visualizer.dataset_meta = dict(classes=('a', 'b'), palette=[(255, 0, 0), (0, 0, 255)])
    hook = HOOKS.build(cfg.default_hooks.visualization)
    image = work_dir / 'in' / 'image.png'
    image.parent.mkdir(parents=True)
    mmcv.imwrite(np.full((32, 48, 3), 128, np.uint8), str(image))
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample

        sample = DetDataSample(metainfo=dict(img_path=str(image)))
        sample.pred_instances = InstanceData(
            bboxes=torch.tensor([[2.0, 2.0, 20.0, 20.0]]),
            labels=torch.tensor([0]),
            scores=torch.tensor([0.9]),
        )
    else:
        from mmseg.structures import SegDataSample

        sample = SegDataSample(metainfo=dict(img_path=str(image)))
        sample.pred_sem_seg = PixelData(data=torch.ones(1, 32, 48, dtype=torch.long))
    hook.after_test_iter(runner, 0, {}, [sample])
    return log_dir


@pytest.mark.parametrize('scope', sorted(RUNTIME))
def test_pictures_go_under_the_runs_timestamp(scope, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the tool runs: nothing may land here
    work_dir = tmp_path / 'work'
    log_dir = draw_one(scope, 'vis', work_dir)
    assert len(list((log_dir / 'vis').glob('*.*'))) == 1
    assert not (tmp_path / 'vis').exists()
    absolute = tmp_path / 'elsewhere'  # an absolute directory is taken as it is
    draw_one(scope, str(absolute), tmp_path / 'work2')
    assert len(list(absolute.glob('*.*'))) == 1


def assert_pictures_in_the_work_dir(config, run_dir, tmp_path):
    show = f'vis-{uuid.uuid4().hex[:8]}'
    # run_main: a visualizer of this run's own, not an earlier in-process run's
    returned = run_main(
        [
            'tools/test.py',
            str(ROOT / config),
            str(run_dir / 'iter_4.pth'),
            '--work-dir',
            str(tmp_path),
            '--show-dir',
            show,
            '--cfg-options',
            'test_dataloader.dataset.indices=2',
        ]
    )
    assert isinstance(returned, dict), returned  # the test metrics
    pictures = sorted(tmp_path.glob(f'*/{show}/*.*'))  # <work_dir>/<timestamp>/<show>/
    assert len(pictures) == 2, sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*'))
    assert not (ROOT / show).exists() and not list(ROOT.glob(f'*/{show}'))


@pytest.mark.slow  # a whole test run of the toy model, ~10 s in process
def test_detector_pictures_land_in_the_runs_work_dir(toy_det_run, tmp_path):
    assert_pictures_in_the_work_dir(TOY_DET_CONFIG, toy_det_run, tmp_path)


@pytest.mark.slow  # a whole test run of the toy model, ~10 s in process
def test_segmentor_pictures_land_in_the_runs_work_dir(toy_seg_run, tmp_path):
    assert_pictures_in_the_work_dir(TOY_SEG_CONFIG, toy_seg_run, tmp_path)
