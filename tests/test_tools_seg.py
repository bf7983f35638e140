"""Segmentation through the real tools on the toy ADE20K-layout set (the session's run,
conftest.toy_seg_run / toy_seg_test)."""

import json

import pytest
import torch

from tool_runner import logged_steps

pytestmark = pytest.mark.slow  # training through the tools


@pytest.fixture(scope='module')
def trained(toy_seg_run):
    return toy_seg_run


def test_resume_continues_at_saved_iteration(trained):
    assert logged_steps(trained) == [3, 4]
    last = torch.load(trained / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert last['meta']['iter'] == 4
    assert [s['step'] for s in last['optimizer']['state'].values()][0] == 4


def test_test_tool_evaluates_miou(toy_seg_test):
    """tools/test.py on the session's checkpoint (conftest.toy_seg_test); ``mim train mmseg``
    runs in test_config_hooks.py."""
    work_dir, metrics = toy_seg_test
    assert 'mIoU' in metrics, metrics
    (logged,) = [json.loads(p.read_text()) for p in work_dir.glob('2*/2*.json')]
    assert logged['mIoU'] == metrics['mIoU']
