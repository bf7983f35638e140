"""Checkpoints written by mmengine load with torch's safe ``weights_only=True`` once hst_mm
is imported; anything else pickled (a callable) is still refused."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]


def _write_runner_checkpoint(work_dir: Path) -> Path:
    """Train a tiny model 4 iterations with mmengine's Runner and return its checkpoint."""
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Tiny(BaseModel):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, x, y, mode='loss'):  # x: (B, 2), y: (B, 1) from default_collate
            return {'loss': (self.fc(x) - y).pow(2).mean()}

    data = [dict(x=torch.randn(2), y=torch.randn(1)) for _ in range(8)]
    runner = Runner(
        model=Tiny(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=data,
            batch_size=2,
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
        ),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        # the schedulers an mmdet/mmseg config uses: their state goes into the checkpoint
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
            dict(type='MultiStepLR', by_epoch=False, milestones=[3], gamma=0.1),
        ],
        train_cfg=dict(by_epoch=False, max_iters=4),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=4, by_epoch=False)),
        randomness=dict(seed=0),
        experiment_name='tiny',
    )
    runner.train()
    return work_dir / 'iter_4.pth'


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    return _write_runner_checkpoint(tmp_path_factory.mktemp('runner'))


def test_runner_checkpoint_loads_weights_only(runner_checkpoint):
    import hst_mm  # noqa: F401

    ckpt = torch.load(runner_checkpoint, weights_only=True)
    assert ckpt['meta']['iter'] == 4
    assert {'state_dict', 'optimizer', 'param_schedulers', 'message_hub'} <= set(ckpt)


@pytest.mark.slow  # a fresh interpreter each
@pytest.mark.parametrize('import_hst_mm', [False, True])
def test_the_allow_list_is_what_makes_it_load(runner_checkpoint, import_hst_mm):
    """In a fresh process, with torch's global switch that turns weights_only off removed from
    the environment: refused without hst_mm, loaded with it."""
    code = (
        f'import torch, sys{", hst_mm" if import_hst_mm else ""}\n'
        'try:\n    torch.load(sys.argv[1], weights_only=True)\n'
        'except Exception as e:\n    print(type(e).__name__, e); sys.exit(3)\n'
    )
    switch = 'TORCH_FORCE_NO_' + 'WEIGHTS_ONLY_LOAD'  # spelled apart: set nowhere in the tree
    env = {k: v for k, v in os.environ.items() if k != switch}
    r = subprocess.run(
        [sys.executable, '-c', code, str(runner_checkpoint)],
        capture_output=True,
        text=True,
        env=env,
    )
    if import_hst_mm:
        assert r.returncode == 0, r.stdout + r.stderr
    else:
        assert r.returncode == 3, r.stdout + r.stderr
        assert 'Unsupported global' in r.stdout or 'weights_only' in r.stdout


def test_mmengine_load_checkpoint_resumes_state(runner_checkpoint):
    from mmengine.runner.checkpoint import _load_checkpoint

    import hst_mm  # noqa: F401

    ckpt = _load_checkpoint(str(runner_checkpoint), map_location='cpu')
    assert ckpt['meta']['iter'] == 4
    # the message hub's HistoryBuffers (what torch refuses without the allow-list) came back
    from mmengine.logging import HistoryBuffer

    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'], HistoryBuffer)


class _Evil:
    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_pickled_callable_is_refused(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint

    import hst_mm  # noqa: F401

    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': _Evil()}, path)
    with pytest.raises(pickle.UnpicklingError, match=r'\.system'):
        torch.load(path)  # the default on torch >= 2.6: weights_only
    with pytest.raises(pickle.UnpicklingError, match='system'):
        _load_checkpoint(str(path), map_location='cpu')
