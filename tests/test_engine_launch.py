"""What tools/train.py adds to a config (hst_mm.engine.launch) and how the tools start a run
(hst_mm.engine.cli): the work-dir guard, the reliability hooks, gloo without CUDA, the
resumed run's seed, runner_type."""

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from hst_mm.engine import cli, launch

import tools.train as train_py
from tool_runner import ROOT

SEG_CONFIG = str(ROOT / 'configs/toy/upernet_hst-vit-ti_toy.py')


@pytest.fixture
def config(monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '0')  # parse_args sets it when missing

    def build(*argv):
        args = train_py.parse_args([SEG_CONFIG, *argv])
        return args, train_py.build_config(args)

    return build


def test_refuses_work_dir_with_checkpoints(config, tmp_path):
    (tmp_path / 'iter_200.pth').write_bytes(b'')
    args, cfg = config('--work-dir', str(tmp_path))
    with pytest.raises(SystemExit) as e:
        launch.check_work_dir(cfg, args.overwrite)
    msg = str(e.value)
    assert str(tmp_path) in msg and '--resume' in msg and '--overwrite' in msg
    assert 'iter_200.pth' in msg
    args, cfg = config('--work-dir', str(tmp_path), '--overwrite')
    launch.check_work_dir(cfg, args.overwrite)  # allowed
    # --resume without last_checkpoint: mmengine would silently start from scratch
    args, cfg = config('--work-dir', str(tmp_path), '--resume')
    with pytest.raises(SystemExit, match='no last_checkpoint'):
        launch.check_work_dir(cfg, args.overwrite)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_200.pth'))
    launch.check_work_dir(cfg, args.overwrite)  # resumable
    args, cfg = config('--work-dir', str(tmp_path / 'new'))
    launch.check_work_dir(cfg, args.overwrite)  # empty / new dir


def test_main_exits_before_training(monkeypatch, tmp_path, capsys):
    """The refusal comes from main(), before any model is built."""
    monkeypatch.setenv('LOCAL_RANK', '0')
    (tmp_path / 'epoch_1.pth').write_bytes(b'')
    monkeypatch.setattr(cli, 'build_runner', lambda cfg: pytest.fail('Runner built'))
    with pytest.raises(SystemExit, match='checkpoints of an earlier run'):
        train_py.main([SEG_CONFIG, '--work-dir', str(tmp_path)])


PROJECT_HOOKS = ['TorchRNGStateHook', 'CheckpointFitHook', 'WorkDirLockHook', 'CheckFiniteLossHook']


def test_reliability_hooks_added(config):
    """The shipped config lists the hooks itself; --no-nan-check takes the finite-loss check
    out of its list; a config without them (not the project's) gets them added."""
    _, cfg = config()
    assert set(PROJECT_HOOKS) <= {h['type'] for h in cfg.custom_hooks}
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert cfg.default_hooks.checkpoint.max_keep_ckpts == 2  # other settings kept
    _, cfg = config('--no-nan-check')
    types = [h['type'] for h in cfg.custom_hooks]
    assert 'CheckFiniteLossHook' not in types
    assert {'TorchRNGStateHook', 'CheckpointFitHook', 'WorkDirLockHook'} <= set(types)
    cfg = Config(dict(default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3))))
    launch.add_reliability_hooks(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == PROJECT_HOOKS
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert cfg.default_hooks.checkpoint.interval == 3
    cfg.custom_hooks = [dict(type='CheckFiniteLossHook', interval=5)]
    launch.add_reliability_hooks(cfg)
    assert [(h['type'], h.get('interval')) for h in cfg.custom_hooks] == [
        ('CheckFiniteLossHook', 5),
        ('TorchRNGStateHook', None),
        ('CheckpointFitHook', None),
        ('WorkDirLockHook', None),
    ]  # not added twice


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU-only behaviour')
def test_gloo_without_cuda(config):
    _, cfg = config('--launcher', 'pytorch')
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
    assert cfg.model_wrapper_cfg.device_ids is None  # DDP of a CPU module
    _, cfg = config('--launcher', 'slurm')
    with pytest.raises(SystemExit, match='dist_train.sh'):
        launch.init_cpu_distributed(cfg)


def test_carry_resume_seed_only_fills_an_unset_seed(tmp_path):
    ckpt = tmp_path / 'iter_8.pth'
    torch.save({'meta': {'seed': 1234}, 'state_dict': {}}, ckpt)
    (tmp_path / 'last_checkpoint').write_text(str(ckpt))
    for cfg_dict, expected in [
        (dict(resume=True, load_from=None), 1234),  # via last_checkpoint
        (dict(resume=True, load_from=str(ckpt)), 1234),  # --resume CKPT
        (dict(resume=True, load_from=None, randomness=dict(seed=7)), 7),  # user's seed
        (dict(resume=False, load_from=None), None),
    ]:  # not resuming
        cfg = Config(dict(work_dir=str(tmp_path), **cfg_dict))
        launch.carry_resume_seed(cfg)
        assert cfg.get('randomness', {}).get('seed') == expected, cfg_dict


def test_refuses_checkpoints_in_the_checkpoint_out_dir(config, tmp_path):
    """mmengine writes to out_dir/<work dir name> when default_hooks.checkpoint.out_dir is
    set: another run's checkpoints (and its save_best files) there are guarded too."""
    kept = tmp_path / 'kept' / 'run'
    kept.mkdir(parents=True)
    for name in ('iter_2.pth', 'best_mIoU_iter_2.pth'):
        (kept / name).write_bytes(b'earlier run')
        args, cfg = config(
            '--work-dir',
            str(tmp_path / 'run'),
            '--cfg-options',
            f'default_hooks.checkpoint.out_dir={tmp_path / "kept"}',
        )
        assert launch.checkpoint_dirs(cfg) == [str(tmp_path / 'run'), str(kept)]
        with pytest.raises(SystemExit, match=name):
            launch.check_work_dir(cfg, args.overwrite)
        (kept / name).unlink()
    launch.check_work_dir(cfg, args.overwrite)  # nothing there any more


def test_runner_type_is_honoured():
    """Runner.from_cfg ignores runner_type; the tools build it through the registry."""
    built = []

    @RUNNERS.register_module(name='RecordingRunnerForTest', force=True)
    class RecordingRunner(Runner):
        @classmethod
        def from_cfg(cls, cfg):
            built.append(cls)
            return 'runner'

    assert cli.build_runner(Config(dict(runner_type='RecordingRunnerForTest'))) == 'runner'
    assert built == [RecordingRunner]


@pytest.mark.parametrize(
    'config',
    [
        'configs/hst/upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512.py',
        'configs/hst/fpn_hst-vit-b_8xb2-amp-80k_ade20k-512x512.py',
        'configs/baselines/upernet_vit-b-full_8xb2-amp-160k_ade20k-512x512.py',
        'configs/hst/mask-rcnn_hst-vit-b_fpn_amp-1x_coco.py',
    ],
)
def test_auto_scale_lr_works_on_every_paper_config(config, monkeypatch):
    """mmseg's bases define no auto_scale_lr: --auto-scale-lr failed on the ADE20K configs."""
    monkeypatch.setenv('LOCAL_RANK', '0')
    cfg = train_py.build_config(train_py.parse_args([str(ROOT / config), '--auto-scale-lr']))
    assert cfg.auto_scale_lr.enable and cfg.auto_scale_lr.base_batch_size == 16


def test_glob_characters_in_the_work_dir_are_guarded(config, tmp_path):
    work_dir = tmp_path / 'r[1]'
    work_dir.mkdir()
    (work_dir / 'iter_2.pth').write_bytes(b'')
    args, cfg = config('--work-dir', str(work_dir))
    with pytest.raises(SystemExit, match=r'iter_2\.pth'):
        launch.check_work_dir(cfg, args.overwrite)


HOLD_LOCK = """
import sys, time
from hst_mm.engine.hooks.work_dir_lock import lock_work_dir
lock_work_dir(sys.argv[1])
print('locked', flush=True)
time.sleep(120)
"""


@pytest.fixture
def locked_by_another_run(tmp_path):
    """A work dir whose run lock another live process holds; yields (work dir, process)."""
    import subprocess
    import sys

    work_dir = tmp_path / 'wd'
    proc = subprocess.Popen(
        [sys.executable, '-c', HOLD_LOCK, str(work_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == 'locked'
        yield work_dir, proc
    finally:
        proc.kill()
        proc.wait()


def test_a_second_run_into_a_work_dir_is_refused_by_name(
    locked_by_another_run, monkeypatch, capsys
):
    """tools/train.py and the hook (what ``mim train`` runs) both refuse, naming the holder;
    once the holder has died, its lock file is taken over and named."""
    import logging
    from types import SimpleNamespace

    from mmengine.runner import BaseLoop

    from hst_mm.engine.hooks.work_dir_lock import (
        WorkDirLockedError,
        WorkDirLockHook,
        lock_work_dir,
        unlock_work_dir,
    )

    work_dir, holder = locked_by_another_run
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setattr(cli, 'build_runner', lambda cfg: pytest.fail('Runner built'))
    with pytest.raises(SystemExit) as e:
        train_py.main([SEG_CONFIG, '--work-dir', str(work_dir)])
    assert str(e.value).startswith('error: ') and f'pid {holder.pid}' in str(e.value)
    assert '\n' not in str(e.value)

    class Loop(BaseLoop):
        def run(self):
            pass

    # what the hook reads of mmengine's Runner while it trains
    runner = SimpleNamespace(
        _train_loop=object.__new__(Loop), work_dir=str(work_dir), logger=logging.getLogger()
    )
    with pytest.raises(WorkDirLockedError, match=f'pid {holder.pid}'):
        WorkDirLockHook().before_run(runner)

    holder.kill()
    holder.wait()
    note = lock_work_dir(str(work_dir), log=None)  # the dead run's lock file is named
    try:
        assert note is not None and f'pid {holder.pid}' in note
    finally:
        unlock_work_dir(str(work_dir))
