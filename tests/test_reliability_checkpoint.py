"""Nothing lost: a kill during a checkpoint save leaves the previous checkpoint loadable, and a
new run does not train into a work dir holding another run's checkpoints; tools/train.py
adds the reliability hooks and picks gloo without CUDA.

The save tests run mmengine's real Runner in-process on a two-parameter model (a second),
with ``LocalBackend.put`` replaced by one that writes half the file and raises: the files
on disk at that moment are what a SIGKILL at that moment would leave, since nothing
downstream of the failed write runs.
"""
import importlib.util
import itertools

import pytest
import torch
import torch.nn as nn
from mmengine.fileio import LocalBackend
from mmengine.model import BaseModel
from mmengine.runner import Runner

import hst_mm.hooks
from tool_runner import ROOT

SEG_CONFIG = str(ROOT / 'configs/toy/upernet_hst-vit-ti_toy.py')
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
        model=TinyModel(), work_dir=str(work_dir), experiment_name=f'ckpt{next(_names)}',
        train_dataloader=dict(dataset=TinyData(), batch_size=2, num_workers=0,
                              sampler=dict(type='InfiniteSampler', shuffle=False)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type=hook_type, by_epoch=False, interval=1,
                                           max_keep_ckpts=1)),
        custom_hooks=[dict(type='TorchRNGStateHook')], resume=resume)


@pytest.fixture
def kill_during_save_of_iter_2(monkeypatch):
    """Make the iteration-2 save die after writing half of its bytes."""
    real_put = LocalBackend.put

    def put(self, obj, filepath):
        if 'iter_2.pth' in str(filepath):
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
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


def test_kill_during_save_keeps_previous_checkpoint(tmp_path, kill_during_save_of_iter_2,
                                                    monkeypatch):
    with pytest.raises(Killed):
        make_runner(tmp_path, 'AtomicCheckpointHook').train()
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_1.pth')
    assert torch.load(tmp_path / 'iter_1.pth', weights_only=True)['meta']['iter'] == 1
    assert not (tmp_path / 'iter_2.pth').exists()           # only the .tmp is truncated
    monkeypatch.undo()
    runner = make_runner(tmp_path, 'AtomicCheckpointHook', resume=True)
    runner.train()
    assert runner.iter == 3
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_3.pth']  # max_keep_ckpts=1
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_3.pth')


def test_kill_between_save_and_pointer_update(tmp_path, monkeypatch):
    """Killed after iter_2.pth is complete but before last_checkpoint names it: the pointer
    still names iter_1.pth, which is deleted only after the pointer moves on."""
    real = hst_mm.hooks.atomic_write_text

    def write(path, text):
        if text.endswith('iter_2.pth'):
            raise Killed(path)
        real(path, text)

    monkeypatch.setattr(hst_mm.hooks, 'atomic_write_text', write)
    with pytest.raises(Killed):
        make_runner(tmp_path, 'AtomicCheckpointHook').train()
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_1.pth')
    assert torch.load(tmp_path / 'iter_1.pth', weights_only=True)['meta']['iter'] == 1
    assert torch.load(tmp_path / 'iter_2.pth', weights_only=True)['meta']['iter'] == 2


# ---- tools/train.py --------------------------------------------------------------------
@pytest.fixture(scope='module')
def train_py():
    spec = importlib.util.spec_from_file_location('hst_train_tool', ROOT / 'tools' / 'train.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def config(train_py, monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '0')           # parse_args sets it when missing

    def build(*argv):
        args = train_py.parse_args([SEG_CONFIG, *argv])
        return args, train_py.build_config(args)
    return build


def test_refuses_work_dir_with_checkpoints(train_py, config, tmp_path):
    (tmp_path / 'iter_200.pth').write_bytes(b'')
    args, cfg = config('--work-dir', str(tmp_path))
    with pytest.raises(SystemExit) as e:
        train_py.check_work_dir(cfg, args.overwrite)
    msg = str(e.value)
    assert str(tmp_path) in msg and '--resume' in msg and '--overwrite' in msg
    assert 'iter_200.pth' in msg
    args, cfg = config('--work-dir', str(tmp_path), '--overwrite')
    train_py.check_work_dir(cfg, args.overwrite)                # allowed
    # --resume without last_checkpoint: mmengine would silently start from scratch
    args, cfg = config('--work-dir', str(tmp_path), '--resume')
    with pytest.raises(SystemExit, match='no last_checkpoint'):
        train_py.check_work_dir(cfg, args.overwrite)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_200.pth'))
    train_py.check_work_dir(cfg, args.overwrite)                # resumable
    args, cfg = config('--work-dir', str(tmp_path / 'new'))
    train_py.check_work_dir(cfg, args.overwrite)                # empty / new dir


def test_main_exits_before_training(train_py, monkeypatch, tmp_path, capsys):
    """The refusal comes from main(), before any model is built."""
    monkeypatch.setenv('LOCAL_RANK', '0')
    (tmp_path / 'epoch_1.pth').write_bytes(b'')
    monkeypatch.setattr(train_py.Runner, 'from_cfg', lambda cfg: pytest.fail('Runner built'))
    with pytest.raises(SystemExit, match='already holds checkpoints'):
        train_py.main([SEG_CONFIG, '--work-dir', str(tmp_path)])


def test_reliability_hooks_added(train_py, config):
    _, cfg = config()
    assert [h['type'] for h in cfg.custom_hooks] == ['TorchRNGStateHook', 'CheckFiniteLossHook']
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert cfg.default_hooks.checkpoint.max_keep_ckpts == 2          # other settings kept
    _, cfg = config('--no-nan-check')
    assert [h['type'] for h in cfg.custom_hooks] == ['TorchRNGStateHook']
    cfg.custom_hooks = [dict(type='CheckFiniteLossHook', interval=5)]
    train_py.add_reliability_hooks(cfg)
    assert [(h['type'], h.get('interval')) for h in cfg.custom_hooks] == [
        ('CheckFiniteLossHook', 5), ('TorchRNGStateHook', None)]      # not added twice


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU-only behaviour')
def test_gloo_without_cuda(train_py, config):
    _, cfg = config('--launcher', 'pytorch')
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
    assert cfg.model_wrapper_cfg.device_ids is None                  # DDP of a CPU module
    _, cfg = config('--launcher', 'slurm')
    with pytest.raises(SystemExit, match='dist_train.sh'):
        train_py.init_cpu_distributed(cfg)
