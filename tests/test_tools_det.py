"""Detection through the real tools on the toy COCO set: train, checkpoint, resume, test, mim."""

import json

import pytest
import torch

from conftest import TOY_DET_CONFIG
from tool_runner import logged_steps

pytestmark = pytest.mark.slow  # training through the tools

CONFIG = TOY_DET_CONFIG
SHORT = [
    'default_hooks.logger.interval=1',
    'default_hooks.checkpoint.interval=2',
    'train_cfg.val_interval=1000',
]


@pytest.fixture(scope='module')
def trained(toy_det_run):
    """The session's toy detector run and its iteration-2 checkpoint as first saved."""
    return toy_det_run, torch.load(
        toy_det_run / 'iter_2.pth', map_location='cpu', weights_only=False
    )


def test_checkpoint_and_resume_continue_at_saved_iteration(trained):
    work_dir, first = trained
    assert logged_steps(work_dir) == [3, 4]  # resumed run starts after iteration 2
    last = torch.load(work_dir / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert first['meta']['iter'] == 2 and last['meta']['iter'] == 4
    # optimizer state carried over: AdamW step counts continue from 2
    steps = [s['step'] for s in last['optimizer']['state'].values()]
    assert steps and all(float(s) == 4 for s in steps)
    # the frozen trunk did not move, the trainable parts did
    a, b = first['state_dict'], last['state_dict']
    assert torch.equal(
        a['backbone.trunk.vit.blocks.0.attn.qkv.weight'],
        b['backbone.trunk.vit.blocks.0.attn.qkv.weight'],
    )
    assert not torch.equal(
        a['backbone.side.blocks.0.attn.q.weight'], b['backbone.side.blocks.0.attn.q.weight']
    )
    # no optimizer state for frozen trunk weights
    assert len(last['optimizer']['state']) == sum(1 for p in _trainable_names(b))


def _trainable_names(state_dict):
    frozen = ('backbone.trunk.vit.',)
    for k in state_dict:
        if k.startswith(frozen) and '.norm1.' not in k and '.norm2.' not in k:
            continue
        if k.endswith(('running_mean', 'running_var', 'num_batches_tracked')):
            continue
        yield k


def test_test_tool_evaluates_bbox_and_segm(toy_det_test):
    """tools/test.py --out on the session's checkpoint (conftest.toy_det_test)."""
    work_dir, metrics = toy_det_test
    assert {'coco/bbox_mAP', 'coco/segm_mAP'} <= set(metrics), metrics
    (logged,) = [json.loads(p.read_text()) for p in work_dir.glob('2*/2*.json')]
    assert logged['coco/bbox_mAP'] == metrics['coco/bbox_mAP']
    assert (work_dir.parent / 'preds.pkl').is_file()


def test_mim_train_mmdet(mim_train_runs):
    """``mim train mmdet`` (conftest.mim_train_runs) trains the toy Mask R-CNN."""
    _, work_dir = mim_train_runs['mmdet']
    assert logged_steps(work_dir) == [1]
