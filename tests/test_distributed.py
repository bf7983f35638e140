"""Training scales out: tools/dist_train.sh runs the toy detector and segmentor with two
processes on the CPU (gloo), and tools/slurm_train.sh launches tools/train.py through srun.

Two processes on two cores: batch 2 per process (BatchNorm needs more than one sample),
2 iterations, a checkpoint after each.
"""

import os
import socket
import stat
import subprocess

import pytest
import torch

import hst_mm  # noqa: F401  allow-lists mmengine checkpoints for weights_only loading

from tool_runner import ROOT, ensure_toy_data, logged_steps, run

pytestmark = pytest.mark.slow  # subprocess training through the tools


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    'config',
    ['configs/toy/upernet_hst-vit-ti_toy.py', 'configs/toy/mask-rcnn_hst-vit-ti_fpn_toy.py'],
)
def test_dist_train_two_cpu_processes(config, tmp_path):
    ensure_toy_data()
    proc = run(
        [
            'tools/dist_train.sh',
            config,
            2,
            '--work-dir',
            tmp_path,
            '--cfg-options',
            'train_cfg.max_iters=2',
            'train_dataloader.batch_size=2',
            'default_hooks.logger.interval=1',
            'default_hooks.checkpoint.interval=1',
            'train_cfg.val_begin=1000',
        ],
        env=dict(PORT=str(free_port())),
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    # mmengine's environment report: launcher, world size ("GPU number") and backend
    assert 'Distributed training: True' in out and 'GPU number: 2' in out, out[-3000:]
    assert "'backend': 'gloo'" in out
    # Both ranks ran every step: DDP all-reduces the gradients of every iteration, which
    # blocks until the other rank joins, and torchrun exits 0 only if both exited 0.
    assert logged_steps(tmp_path) == [1, 2]
    # one file per save, written by rank 0 only, no temporary files left; rank 0's run lock
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(
        ['iter_1.pth', 'iter_2.pth', 'last_checkpoint', 'train.lock', config.split('/')[-1]]
    )
    ckpt = torch.load(tmp_path / 'iter_2.pth', map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 2


def test_slurm_script_starts_train_py_through_srun(tmp_path):
    """A stand-in `srun` records its arguments: the script asks for one task per GPU and
    starts tools/train.py with the slurm launcher and the caller's arguments."""
    srun = tmp_path / 'bin' / 'srun'
    srun.parent.mkdir()
    srun.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$SRUN_LOG"\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / 'srun.log'
    env = dict(
        os.environ,
        PATH=f'{srun.parent}{os.pathsep}{os.environ["PATH"]}',
        SRUN_LOG=str(log),
        GPUS='16',
    )
    subprocess.run(
        [
            'bash',
            'tools/slurm_train.sh',
            'gpu-part',
            'hst',
            'configs/toy/upernet_hst-vit-ti_toy.py',
            str(tmp_path / 'work'),
            '--resume',
            '--cfg-options',
            'train_cfg.max_iters=8',
        ],
        cwd=ROOT,
        env=env,
        check=True,
    )
    args = log.read_text().splitlines()
    for expected in [
        '-p',
        'gpu-part',
        '--job-name=hst',
        '--gres=gpu:8',
        '--ntasks=16',
        '--ntasks-per-node=8',
        '--kill-on-bad-exit=1',
        '-u',
        str(ROOT / 'tools' / 'train.py'),
        'configs/toy/upernet_hst-vit-ti_toy.py',
        str(tmp_path / 'work'),
        '--resume',
        'train_cfg.max_iters=8',
    ]:
        assert expected in args, (expected, args)
    assert args[args.index('--launcher') + 1] == 'slurm'
    assert args[args.index('--work-dir') + 1] == str(tmp_path / 'work')
    proc = run(['bash', 'tools/slurm_train.sh', 'gpu-part'], check=False)
    assert proc.returncode == 2 and 'usage' in proc.stderr
