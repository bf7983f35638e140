"""Shared fixtures: tiny timm trunks (workshop.fixtures) so that backbone tests run in seconds
on the CPU, and the toy detector and segmentor trained once per test session for the tests
that need a checkpoint."""

import functools
from pathlib import Path

import mmengine.config.config as mmengine_config
import pytest
import torch

from workshop.fixtures import TINY_SIDE, TINY_TRUNK, TRUNK_KINDS

ROOT = Path(__file__).resolve().parents[1]

# mmengine finds an `mmdet::`/`mmseg::` config by parsing every metafile of that package
# (~0.25 s a lookup, ~80 YAML files); the suite loads the shipped configs hundreds of times
# and the installed packages do not change while it runs, so each answer is kept.
mmengine_config._get_external_cfg_path = functools.lru_cache(mmengine_config._get_external_cfg_path)


@pytest.fixture
def tiny_cfg():
    return dict(**TINY_TRUNK, **TINY_SIDE)


@pytest.fixture(params=sorted(TRUNK_KINDS))
def any_trunk_cfg(request):
    """``tiny_cfg`` for each kind of timm ViT in :data:`TRUNK_KINDS`."""
    kwargs = {**TINY_TRUNK['trunk_kwargs'], **TRUNK_KINDS[request.param]}
    return dict(trunk=TINY_TRUNK['trunk'], trunk_kwargs=kwargs, **TINY_SIDE)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def saved_tiny_vit(tmp_path):
    """A randomly initialised tiny timm ViT saved as a state dict, and the model itself."""
    import timm

    vit = timm.create_model(TINY_TRUNK['trunk'], pretrained=False, **TINY_TRUNK['trunk_kwargs'])
    path = tmp_path / 'tiny_vit.pth'
    torch.save(vit.state_dict(), path)
    return str(path), vit


TOY_DET_CONFIG = 'configs/toy/mask-rcnn_hst-vit-ti_fpn_toy.py'
TOY_SEG_CONFIG = 'configs/toy/upernet_hst-vit-ti_toy.py'
SHORT_RUN = [
    'default_hooks.logger.interval=1',
    'default_hooks.checkpoint.interval=2',
    'train_cfg.val_interval=1000',
]


def _train_then_resume(config: str, work_dir: Path) -> Path:
    """tools/train.py's main, in this process, for 2 iterations, then --resume to 4:
    iter_2.pth and iter_4.pth; the resumed run validates at its last iteration (the first
    does not: validation is half a toy run's cost and no test reads it). The tools as
    separate processes: test_tools_det's and test_config_hooks' mim runs, test_resume's
    SIGKILL."""
    from tool_runner import ensure_toy_data, logged_steps, run_main

    ensure_toy_data()
    train = ['tools/train.py', config, '--work-dir', work_dir, '--cfg-options', *SHORT_RUN]
    assert run_main([*train, 'train_cfg.max_iters=2', 'train_cfg.val_begin=3']) is None
    assert (work_dir / 'iter_2.pth').is_file()
    assert logged_steps(work_dir) == [1, 2]
    # validated on 4 of the 16 toy images: the tests read that metrics were logged and how
    four = 'val_dataloader.dataset.indices=4'
    assert run_main([*train, 'train_cfg.max_iters=4', four, '--resume']) is None
    return work_dir


@pytest.fixture(scope='session')
def toy_det_run(tmp_path_factory) -> Path:
    """Work dir of the toy Mask R-CNN: trained to 2, resumed to 4 (read it, do not write)."""
    return _train_then_resume(TOY_DET_CONFIG, tmp_path_factory.mktemp('toy_det'))


@pytest.fixture(scope='session')
def toy_seg_run(tmp_path_factory) -> Path:
    """Work dir of the toy UperNet: trained to 2, resumed to 4 (read it, do not write)."""
    return _train_then_resume(TOY_SEG_CONFIG, tmp_path_factory.mktemp('toy_seg'))


def _test_tool(config: str, run_dir: Path, work_dir: Path, *extra) -> dict:
    """tools/test.py's main, in this process, on ``run_dir``'s iter_4.pth: its metrics."""
    from tool_runner import run_main

    metrics = run_main(
        ['tools/test.py', config, run_dir / 'iter_4.pth', '--work-dir', work_dir, *extra]
    )
    assert isinstance(metrics, dict), metrics
    return metrics


@pytest.fixture(scope='session')
def toy_det_test(toy_det_run, tmp_path_factory):
    """tools/test.py of the toy detector's iter_4.pth, once per session: (its work dir,
    its metrics); its predictions in ``preds.pkl`` beside the work dir (read, do not write)."""
    tmp = tmp_path_factory.mktemp('toy_det_test')
    metrics = _test_tool(TOY_DET_CONFIG, toy_det_run, tmp / 'test', '--out', tmp / 'preds.pkl')
    return tmp / 'test', metrics


@pytest.fixture(scope='session')
def toy_seg_test(toy_seg_run, tmp_path_factory):
    """tools/test.py of the toy segmentor's iter_4.pth, once per session: (its work dir, its
    metrics)."""
    work_dir = tmp_path_factory.mktemp('toy_seg_test') / 'test'
    return work_dir, _test_tool(TOY_SEG_CONFIG, toy_seg_run, work_dir)


@pytest.fixture(scope='session')
def mim_train_runs(tmp_path_factory) -> dict:
    """``mim train mmdet`` on the toy Mask R-CNN and ``mim train mmseg`` on the toy UperNet,
    one iteration each without validation, both started at once:
    {'mmdet' | 'mmseg': (CompletedProcess, work dir)}."""
    from tool_runner import ensure_toy_data, run_together

    ensure_toy_data()
    short = ['train_cfg.max_iters=1', 'train_cfg.val_begin=2', 'default_hooks.logger.interval=1']
    runs = {'mmdet': TOY_DET_CONFIG, 'mmseg': TOY_SEG_CONFIG}
    work_dirs = {package: tmp_path_factory.mktemp(f'mim_{package}') for package in runs}
    procs = run_together(
        [
            ['mim', 'train', package, config, '--work-dir', work_dirs[package], '--cfg-options']
            + short
            for package, config in runs.items()
        ]
    )
    return {package: (proc, work_dirs[package]) for package, proc in zip(runs, procs)}
