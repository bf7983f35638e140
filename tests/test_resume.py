"""A crash loses nothing: kill training with SIGKILL, resume, end with the same weights as an
uninterrupted run; a NaN loss stops training and leaves the last good checkpoint in place.

Toy UperNet (IterBasedTrainLoop, InfiniteSampler), 3 iterations, checkpoints every 2. The
runs are subprocesses of tools/train.py, two at a time to save wall time, each with one
thread: two cores are not oversubscribed, and every run sums in the same order.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config

import hst_mm  # noqa: F401  allow-lists mmengine checkpoints for weights_only loading

from conftest import TOY_SEG_CONFIG
from tool_runner import ROOT, VENV_BIN, ensure_toy_data, logged_steps

pytestmark = pytest.mark.slow  # subprocess training through the tools

CONFIG = TOY_SEG_CONFIG
OPTS = [
    'train_cfg.max_iters=3',
    'default_hooks.logger.interval=1',
    'default_hooks.checkpoint.interval=2',
    'train_cfg.val_begin=1000',
    'randomness.seed=0',
    'randomness.deterministic=True',
]


def start(work_dir, *args, opts=()):
    """Start tools/train.py in the background; its output goes to work_dir.log."""
    env = dict(
        os.environ,
        PYTHONUNBUFFERED='1',
        OMP_NUM_THREADS='1',
        MKL_NUM_THREADS='1',
        PATH=f'{VENV_BIN}{os.pathsep}{os.environ.get("PATH", "")}',
    )
    log = open(f'{work_dir}.log', 'w')
    return subprocess.Popen(
        [
            sys.executable,
            'tools/train.py',
            CONFIG,
            '--work-dir',
            str(work_dir),
            *args,
            '--cfg-options',
            *OPTS,
            *opts,
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def finish(proc, work_dir, timeout=600):
    proc.wait(timeout=timeout)
    with open(f'{work_dir}.log') as f:
        return proc.returncode, f.read()


def load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    ensure_toy_data()
    tmp = tmp_path_factory.mktemp('resume')
    whole, crashed, nan = tmp / 'whole', tmp / 'crashed', tmp / 'nan'
    p_whole = start(whole)
    # max_iters only ends the loop (the schedules have explicit ends): this run cannot
    # finish before it is killed, however late the kill comes.
    p_crash = start(crashed, opts=['train_cfg.max_iters=1000'])
    # SIGKILL as soon as the iteration-2 checkpoint is complete (last_checkpoint names it).
    pointer, deadline = crashed / 'last_checkpoint', time.time() + 600
    while not pointer.is_file():
        assert p_crash.poll() is None, finish(p_crash, crashed)[1][-3000:]
        assert time.time() < deadline, 'no checkpoint within 10 minutes'
        time.sleep(0.1)
    p_crash.send_signal(signal.SIGKILL)
    killed_rc, _ = finish(p_crash, crashed)
    assert pointer.read_text() == str(crashed / 'iter_2.pth')  # killed in iteration 3 or 4
    # The NaN run continues the crashed run's checkpoint in a work dir of its own.
    nan.mkdir()
    shutil.copy(crashed / 'iter_2.pth', nan / 'iter_2.pth')
    (nan / 'last_checkpoint').write_text(str(nan / 'iter_2.pth'))
    p_resume = start(crashed, '--resume')
    p_nan = start(
        nan,
        '--resume',
        opts=[
            'default_hooks.checkpoint.interval=1',
            'model.decode_head.loss_decode.loss_weight=nan',
        ],
    )
    results = dict(
        killed_rc=killed_rc,
        whole=finish(p_whole, whole),
        resumed=finish(p_resume, crashed),
        nan=finish(p_nan, nan),
    )
    return tmp, results


def test_sigkilled_run_resumes_to_the_same_weights(runs):
    tmp, res = runs
    assert res['killed_rc'] == -signal.SIGKILL
    for name in ('whole', 'resumed'):
        assert res[name][0] == 0, res[name][1][-3000:]
    assert 'Advance dataloader 2 steps' in res['resumed'][1]
    assert logged_steps(tmp / 'crashed') == [3]  # continued after iteration 2
    a, b = load(tmp / 'whole' / 'iter_3.pth'), load(tmp / 'crashed' / 'iter_3.pth')
    assert a['meta']['iter'] == b['meta']['iter'] == 3
    # bit-identical weights, optimizer state (AdamW moments and step counts) and schedulers
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for k, v in a['state_dict'].items():
        assert torch.equal(v, b['state_dict'][k]), f'{k} differs after resuming'
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert sa.keys() == sb.keys() and all(float(s['step']) == 3 for s in sa.values())
    for i in sa:
        for n in sa[i]:
            assert torch.equal(sa[i][n], sb[i][n]), f'optimizer state {i}.{n} differs'
    assert a['param_schedulers'] == b['param_schedulers']
    assert torch.equal(a['torch_rng_state']['cpu'], b['torch_rng_state']['cpu'])


def test_nan_loss_stops_training_and_keeps_the_last_checkpoint(runs):
    tmp, res = runs
    rc, out = res['nan']
    assert rc != 0
    assert 'loss is nan at iteration 3' in out and 'decode.loss_ce=nan' in out, out[-3000:]
    assert str(tmp / 'nan' / 'iter_2.pth') in out  # names the checkpoint to resume
    assert f'load_from={tmp / "nan" / "iter_2.pth"}' in out  # and how to change the lr
    assert 'Traceback' not in out  # a diagnosis, not a crash
    nan = tmp / 'nan'
    logs = list(nan.glob('*/*.log'))
    assert logs and 'loss is nan at iteration 3' in logs[0].read_text()
    # checkpoint interval 1: without the check, iteration 3's NaN weights would be iter_3.pth
    assert sorted(p.name for p in nan.glob('*.pth*')) == ['iter_2.pth']
    assert (nan / 'last_checkpoint').read_text() == str(nan / 'iter_2.pth')
    good, orig = load(nan / 'iter_2.pth'), load(tmp / 'crashed' / 'iter_2.pth')
    assert good['meta']['iter'] == 2
    for k, v in good['state_dict'].items():
        assert torch.equal(v, orig['state_dict'][k]) and torch.isfinite(v.float()).all(), k


def _logged_seed(log):
    """The seed mmengine reports in its 'Runtime environment' section."""
    seeds = [
        line.split('seed:')[1].split()[0]
        for line in log.splitlines()
        if line.strip().startswith('seed:')
    ]
    assert seeds, log[-2000:]
    return int(seeds[0])


def test_resume_without_a_seed_keeps_the_runs_seed(toy_seg_run):
    """mmdet/mmseg configs leave randomness.seed unset: each run draws one. A resumed run
    must build its sampler with the interrupted run's seed (carried from the checkpoint by
    tools/train.py), or it would see another data order. The session's toy UperNet run
    (conftest.toy_seg_run: trained to 2, resumed to 4) has no seed in its config."""
    assert Config.fromfile(str(ROOT / CONFIG)).get('randomness', {}).get('seed') is None
    logs = sorted(toy_seg_run.glob('2*/2*.log'))
    assert len(logs) == 2, logs  # the first run, the resumed one
    first, resumed = (_logged_seed(log.read_text()) for log in logs)
    assert resumed == first
    assert load(toy_seg_run / 'iter_2.pth')['meta']['seed'] == first
