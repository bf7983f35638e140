"""hst_mm.engine.hooks.AtomicCheckpointHook: a kill or a full disk during a checkpoint save
leaves the previous checkpoint loadable and no partial file behind.

The save tests run mmengine's real Runner in-process on a two-parameter model (a second),
with ``LocalBackend.put`` replaced by one that writes half the file and raises: the files
on disk at that moment are what a SIGKILL at that moment would leave, since nothing
downstream of the failed write runs.
"""

import itertools

import pytest
import torch
import torch.nn as nn
from mmengine.fileio import LocalBackend
from mmengine.model import BaseModel
from mmengine.runner import Runner

import hst_mm.engine.hooks.atomic_checkpoint as atomic_checkpoint

_names = itertools.count()


class Killed(Exception):
    """Stands in for the process dying."""


class TinyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode == 'loss':
            return dict(loss=(out - torch.stack(data_samples)).square().mean())
        return out


class TinyData(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.tensor([i, 1.0]), data_samples=torch.tensor([2.0 * i]))


def make_runner(work_dir, hook_type, resume=False, max_iters=3):
    return Runner(
        model=TinyModel(),
        work_dir=str(work_dir),
        experiment_name=f'ckpt{next(_names)}',
        train_dataloader=dict(
            dataset=TinyData(),
            batch_size=2,
            num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=False),
        ),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type=hook_type, by_epoch=False, interval=1, max_keep_ckpts=1)
        ),
        custom_hooks=[dict(type='TorchRNGStateHook')],
        resume=resume,
    )


@pytest.fixture
def kill_during_save_of_iter_2(monkeypatch):
    """Make the iteration-2 save die after writing half of its bytes."""
    real_put = LocalBackend.put

    def put(self, obj, filepath):
        if 'iter_2.pth' in str(filepath):
            with open(filepath, 'wb') as f:
                f.write(obj[: len(obj) // 2])
            raise Killed(filepath)
        return real_put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', put)


def test_mmengine_checkpoint_hook_loses_the_checkpoint(tmp_path, kill_during_save_of_iter_2):
    """Why AtomicCheckpointHook exists: mmengine 0.10.7 deletes iter_1.pth before writing
    iter_2.pth in place, so the kill leaves a truncated file and nothing to resume from."""
    with pytest.raises(Killed):
        make_runner(tmp_path, 'CheckpointHook').train()
    assert not (tmp_path / 'iter_1.pth').exists()
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_1.pth')
    with pytest.raises(Exception):
        torch.load(tmp_path / 'iter_2.pth', weights_only=True)


def test_kill_during_save_keeps_previous_checkpoint(
    tmp_path, kill_during_save_of_iter_2, monkeypatch
):
    with pytest.raises(Killed):
        make_runner(tmp_path, 'AtomicCheckpointHook').train()
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_1.pth')
    assert torch.load(tmp_path / 'iter_1.pth', weights_only=True)['meta']['iter'] == 1
    assert not (tmp_path / 'iter_2.pth').exists()  # only the .tmp is truncated
    monkeypatch.undo()
    runner = make_runner(tmp_path, 'AtomicCheckpointHook', resume=True)
    runner.train()
    assert runner.iter == 3
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_3.pth']  # max_keep_ckpts=1
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_3.pth')


def test_kill_between_save_and_pointer_update(tmp_path, monkeypatch):
    """Killed after iter_2.pth is complete but before last_checkpoint names it: the pointer
    still names iter_1.pth, which is deleted only after the pointer moves on."""
    real = atomic_checkpoint.atomic_write_text

    def write(path, text):
        if text.endswith('iter_2.pth'):
            raise Killed(path)
        real(path, text)

    monkeypatch.setattr(atomic_checkpoint, 'atomic_write_text', write)
    with pytest.raises(Killed):
        make_runner(tmp_path, 'AtomicCheckpointHook').train()
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_1.pth')
    assert torch.load(tmp_path / 'iter_1.pth', weights_only=True)['meta']['iter'] == 1
    assert torch.load(tmp_path / 'iter_2.pth', weights_only=True)['meta']['iter'] == 2


def test_failed_save_removes_its_partial_file(tmp_path, monkeypatch):
    """A full disk during a save: the error goes up, the partial .tmp does not stay behind
    (it would keep the disk full), the previous checkpoint is intact."""
    real_put = LocalBackend.put

    def put(self, obj, filepath):
        if 'iter_2.pth' in str(filepath):
            with open(filepath, 'wb') as f:
                f.write(obj[: len(obj) // 2])
            raise OSError(28, 'No space left on device')
        return real_put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', put)
    with pytest.raises(OSError, match='No space'):
        make_runner(tmp_path, 'AtomicCheckpointHook').train()
    assert sorted(p.name for p in tmp_path.glob('*.pth*')) == ['iter_1.pth']
    assert torch.load(tmp_path / 'iter_1.pth', weights_only=True)['meta']['iter'] == 1


def test_finite_loss_with_overflowing_weights_stops_before_the_save(tmp_path):
    """The loss of iteration 1 is finite (1e20 * w), its gradient 1e20 times a learning rate
    of 1e20 sends the weights to inf in the step: the check looks at the weights too, so
    nothing broken is saved."""
    from hst_mm.engine.hooks import NonFiniteLossError

    class SteepModel(TinyModel):
        def forward(self, inputs, data_samples=None, mode='tensor'):
            return dict(loss=1e20 * self.linear.weight.sum())

    runner = Runner(
        model=SteepModel(),
        work_dir=str(tmp_path),
        experiment_name=f'inf{next(_names)}',
        train_dataloader=dict(
            dataset=TinyData(),
            batch_size=2,
            num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=False),
        ),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=1e20)),
        train_cfg=dict(by_epoch=False, max_iters=3),
        default_hooks=dict(
            checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=1)
        ),
        custom_hooks=[dict(type='CheckFiniteLossHook')],
    )
    with pytest.raises(NonFiniteLossError, match='not finite at iteration 1') as e:
        runner.train()
    assert 'linear.weight' in str(e.value) and 'load_from=' not in str(e.value)
    assert not list(tmp_path.glob('*.pth'))


def _steep_runner(work_dir, loss_scale, optimizer, hooks=('CheckFiniteLossHook',)):
    class SteepModel(TinyModel):
        def forward(self, inputs, data_samples=None, mode='tensor'):
            return dict(loss=loss_scale * self.linear.weight.sum())

    return Runner(
        model=SteepModel(),
        work_dir=str(work_dir),
        experiment_name=f'steep{next(_names)}',
        train_dataloader=dict(
            dataset=TinyData(),
            batch_size=2,
            num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=False),
        ),
        optim_wrapper=dict(optimizer=optimizer),
        train_cfg=dict(by_epoch=False, max_iters=3),
        default_hooks=dict(
            checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=1)
        ),
        custom_hooks=[dict(type=h) for h in hooks],
    )


def test_finite_loss_with_overflowing_optimizer_state_stops_before_the_save(tmp_path):
    """A loss of 1e38 * w is finite, the weights after Adam's step too (Adam normalises the
    step), but ``exp_avg_sq`` = grad**2 is inf: every later update would be 0."""
    from hst_mm.engine.hooks import NonFiniteLossError

    runner = _steep_runner(tmp_path, 1e38, dict(type='Adam', lr=1e-3))
    with pytest.raises(NonFiniteLossError, match='iteration 1'):
        runner.train()
    assert torch.isfinite(runner.model.linear.weight).all()  # only the state overflowed
    assert not list(tmp_path.glob('*.pth'))


def test_learning_rate_beyond_float_range_is_named(tmp_path):
    from hst_mm.engine.hooks import NonFiniteLossError

    runner = _steep_runner(tmp_path, 1.0, dict(type='SGD', lr=1e41))
    with pytest.raises(NonFiniteLossError, match=r'lr.*1e\+41'):
        runner.train()


def test_nan_advice_names_a_diverged_last_checkpoint(tmp_path):
    """The advice to start from the last checkpoint says it may hold the diverging run, with
    its largest weight."""
    from hst_mm.engine.hooks.finite_loss import restart_advice

    ckpt = tmp_path / 'iter_2.pth'
    torch.save({'state_dict': {'w': torch.tensor([1.0, -2.5e7])}, 'meta': {}}, ckpt)
    (tmp_path / 'last_checkpoint').write_text(str(ckpt))
    advice = restart_advice(str(tmp_path))
    assert str(ckpt) in advice and '2.5e+07' in advice


def test_a_malformed_rng_state_is_named_when_loaded():
    from types import SimpleNamespace

    from hst_mm.engine.hooks import CheckpointMismatchError, TorchRNGStateHook

    runner = SimpleNamespace(_load_from='ckpt.pth', _resume=True)
    hook = TorchRNGStateHook()
    hook.after_load_checkpoint(runner, {'torch_rng_state': {'cpu': torch.get_rng_state()}})
    for bad in ({'cpu': torch.zeros(3), 'iter': 1}, {'cpu': 'x'}, [1]):
        with pytest.raises(CheckpointMismatchError, match=r'ckpt\.pth.*torch_rng_state'):
            hook.after_load_checkpoint(runner, {'torch_rng_state': bad})
