"""mmdet's and mmseg's analysis tools through mim with the shipped (toy) configs, the
TensorBoard switch, and the FLOPs tool that stands in for mmseg's broken one."""

import contextlib
import importlib.util
import json
import re
import runpy
import sys
from pathlib import Path

import matplotlib.image as iio
import pytest
from mmengine.config import Config

from conftest import TOY_DET_CONFIG, TOY_SEG_CONFIG
from tool_runner import ROOT, VENV_BIN, ensure_toy_data, run, run_main

# The line docs/tools.md gives for a config of one's own (the test checks it is there verbatim).
TENSORBOARD_LINE = (
    "visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), "
    "dict(type='TensorboardVisBackend')])"
)


def mim(*args, check=True):
    return run([VENV_BIN / 'mim', 'run', *args], check=check)


def mim_script(package: str, command: str) -> Path:
    """The script ``mim run PACKAGE COMMAND`` runs: ``PACKAGE/.mim/tools/**/COMMAND.py``."""
    tools = Path(importlib.util.find_spec(package).origin).parent / '.mim' / 'tools'
    (script,) = tools.rglob(f'{command}.py')
    return script


def mim_in_process(package: str, command: str, *args) -> None:
    """What ``mim run PACKAGE COMMAND ARGS`` runs, as ``__main__`` in this process from the
    repository root (the browse_dataset tests run ``mim`` itself)."""
    script = mim_script(package, command)
    argv = sys.argv
    sys.argv = [str(script), *map(str, args)]
    try:
        with contextlib.chdir(ROOT):
            runpy.run_path(str(script), run_name='__main__')
    finally:
        sys.argv = argv


def json_logs(work_dir):
    """mmengine's per-run json logs of a work dir (the fixture runs: trained, then resumed)."""
    logs = sorted(work_dir.glob('*/vis_data/2*.json'))
    assert logs, f'no json log under {work_dir}'
    return logs


def test_tensorboard_config_line_adds_the_backend(tmp_path):
    from hst_mm.engine.launch import add_tensorboard

    assert TENSORBOARD_LINE in (ROOT / 'docs' / 'tools.md').read_text()
    child = tmp_path / 'with_tensorboard.py'
    child.write_text(f"_base_ = ['{ROOT / TOY_SEG_CONFIG}']\n{TENSORBOARD_LINE}\n")
    from_line = Config.fromfile(str(child)).visualizer.vis_backends
    shipped = Config.fromfile(str(ROOT / TOY_SEG_CONFIG))
    add_tensorboard(shipped)
    add_tensorboard(shipped)  # once only
    types = ['LocalVisBackend', 'TensorboardVisBackend']
    assert [b['type'] for b in from_line] == [b['type'] for b in shipped.visualizer.vis_backends]
    assert [b['type'] for b in from_line] == types


@pytest.mark.slow
def test_tensorboard_switch_writes_events(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ensure_toy_data()
    work_dir = tmp_path / 'tb'
    exit_code = run_main(  # tools/train.py's main, in this process
        [
            'tools/train.py',
            TOY_DET_CONFIG,
            '--work-dir',
            work_dir,
            '--tensorboard',
            '--cfg-options',
            'train_cfg.max_iters=1',
            'default_hooks.logger.interval=1',
            'val_dataloader.dataset.indices=2',  # a validation's metrics, not their values
        ]
    )
    assert exit_code is None
    events = list(work_dir.glob('*/vis_data/events.out.tfevents.*'))
    assert len(events) == 1, list(work_dir.rglob('*'))
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert {'loss', 'lr', 'coco/bbox_mAP'} <= set(acc.Tags()['scalars'])
    assert list(work_dir.glob('*/vis_data/scalars.json'))  # the local back-end stays


@pytest.mark.slow
def test_mmdet_browse_dataset(tmp_path):
    ensure_toy_data()
    mim('mmdet', 'browse_dataset', TOY_DET_CONFIG, '--output-dir', tmp_path, '--not-show')
    ann = json.loads((ROOT / 'data/toy/coco/annotations/instances_train.json').read_text())
    pictures = sorted(tmp_path.glob('*.png'))
    assert len(pictures) == len(ann['images'])
    assert iio.imread(pictures[0]).shape[:2] == (128, 128)


@pytest.mark.slow
def test_mmdet_get_flops(capsys):
    ensure_toy_data()
    mim_in_process('mmdet', 'get_flops', TOY_DET_CONFIG, '--num-images', '1')
    out = capsys.readouterr().out
    flops = float(re.search(r'Flops: ([0-9.]+)G', out).group(1))
    params = float(re.search(r'Params: ([0-9.]+)M', out).group(1))
    assert flops > 0.1 and 5 < params < 50, out[-2000:]


@pytest.mark.slow
def test_mmdet_analyze_logs(tmp_path, toy_det_run, capsys):
    out = tmp_path / 'loss.png'
    logs = json_logs(toy_det_run)
    mim_in_process('mmdet', 'analyze_logs', 'plot_curve', *logs, '--keys', 'loss', '--out', out)
    assert out.stat().st_size > 1000
    mim_in_process('mmdet', 'analyze_logs', 'cal_train_time', logs[-1])
    assert 'average iter time' in capsys.readouterr().out


@pytest.mark.slow
def test_mmseg_analyze_logs(tmp_path, toy_seg_run):
    out = tmp_path / 'curves.png'
    resumed = json_logs(toy_seg_run)[-1]  # validated at its last iteration: has mIoU
    mim_in_process('mmseg', 'analyze_logs', resumed, '--keys', 'loss', 'mIoU', '--out', out)
    assert out.stat().st_size > 1000


@pytest.mark.slow
def test_mmseg_get_flops_upstream_failure_and_the_project_tool(capsys):
    """mmseg 1.2.2's get_flops fails with mmengine 0.10.7 (docs/tools.md says so); the project's
    tools/analysis/get_flops.py (its main, in this process) counts the same model."""
    ensure_toy_data()
    with pytest.raises(Exception) as e:
        mim_in_process('mmseg', 'get_flops', TOY_SEG_CONFIG, '--shape', '128', '128')
    assert '"input_shape" and "inputs" cannot be both set' in str(e.value), (
        'mmseg get_flops no longer fails this way: update docs/tools.md and this test'
    )
    capsys.readouterr()
    assert run_main(['tools/analysis/get_flops.py', TOY_SEG_CONFIG, '--shape', '128']) is None
    out = capsys.readouterr().out
    assert re.search(r'FLOPs: [0-9.]+ G', out) and 'params: ' in out
    with pytest.raises(ValueError, match='mim run mmdet get_flops'):
        run_main(['tools/analysis/get_flops.py', TOY_DET_CONFIG])


@pytest.mark.slow
def test_mmseg_browse_dataset_upstream_failure(tmp_path):
    """mmseg 1.2.2's browse_dataset hands OpenCV a non-contiguous image (docs/tools.md says so
    and names the workaround)."""
    ensure_toy_data()
    proc = mim(
        'mmseg',
        'browse_dataset',
        TOY_SEG_CONFIG,
        '--output-dir',
        tmp_path,
        '--not-show',
        check=False,
    )
    assert proc.returncode != 0
    assert 'Layout of the output array img is incompatible with cv::Mat' in (
        proc.stdout + proc.stderr
    ), 'mmseg browse_dataset no longer fails this way: update docs/tools.md and this test'
