"""The project's behaviour comes with its configs (configs/_base_/hst_runtime.py): a run
started by mim, not by tools/train.py, runs every hook of hst_mm.engine.hooks."""

import glob
import re

import pytest

from hst_mm.engine import hooks

from tool_runner import logged_steps

# Every hook the package registers: the shipped configs list them all.
PROJECT_HOOKS = {name for name in hooks.__all__ if name.endswith('Hook')}


@pytest.mark.slow
def test_mim_train_runs_every_project_hook(mim_train_runs):
    """``mim train mmseg`` (conftest.mim_train_runs) on the toy UperNet."""
    proc, tmp_path = mim_train_runs['mmseg']
    (log_file,) = glob.glob(str(tmp_path / '*' / '*.log'))
    log = open(log_file).read()
    # mmengine lists the run's hooks at the start of training: "(PRIORITY) NameHook"
    listed = set(re.findall(r'^\(\s*[A-Z_]+\s*\) (\w+)', log, flags=re.M))
    assert PROJECT_HOOKS <= listed, f'missing from the run: {PROJECT_HOOKS - listed}'
    assert logged_steps(tmp_path) == [1]
    assert list(tmp_path.glob('iter_1.pth')), 'no checkpoint written'
    # QuietConsoleHook: the frozen trunk's ~100 "requires_grad=False" notices stay in the log
    # file and off the console
    skipped = 'is skipped since its requires_grad=False'
    assert skipped in log
    assert skipped not in proc.stdout + proc.stderr
    # RunConfigHook: the work dir's config copy holds what the run used, not the bases'
    # helper variables (a ViT-B `_hst_backbone` above the ViT-Ti trained)
    saved = (tmp_path / 'upernet_hst-vit-ti_toy.py').read_text()
    assert 'vit_tiny_patch16_224' in saved and 'vit_base_patch16_224' not in saved
