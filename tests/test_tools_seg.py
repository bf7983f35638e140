"""Segmentation through the real tools on the toy ADE20K-layout set."""

import pytest
import torch

from conftest import TOY_SEG_CONFIG
from tool_runner import ensure_toy_data, logged_steps, run

pytestmark = pytest.mark.slow  # subprocess training through the tools

CONFIG = TOY_SEG_CONFIG
SHORT = [
    'default_hooks.logger.interval=1',
    'default_hooks.checkpoint.interval=2',
    'train_cfg.val_interval=1000',
]


@pytest.fixture(scope='module')
def trained(toy_seg_run):
    return toy_seg_run


def test_resume_continues_at_saved_iteration(trained):
    assert logged_steps(trained) == [3, 4]
    last = torch.load(trained / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert last['meta']['iter'] == 4
    assert [s['step'] for s in last['optimizer']['state'].values()][0] == 4


def test_test_tool_evaluates_miou(trained, tmp_path):
    # the session's run is shared: read it, write elsewhere
    proc = run(['tools/test.py', CONFIG, trained / 'iter_4.pth', '--work-dir', tmp_path])
    assert 'mIoU' in proc.stdout + proc.stderr


def test_mim_train_mmseg(tmp_path):
    ensure_toy_data()
    run(
        [
            'mim',
            'train',
            'mmseg',
            CONFIG,
            '--work-dir',
            tmp_path,
            '--cfg-options',
            'train_cfg.max_iters=1',
            *SHORT,
        ]
    )
    assert logged_steps(tmp_path) == [1]
