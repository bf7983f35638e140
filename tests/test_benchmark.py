"""tools/analysis/benchmark.py: run end to end on a tiny trunk, check what it reports."""
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from hst_mm.models import HSTBackbone

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / 'tools' / 'analysis' / 'benchmark.py'

# A tiny trunk and side network, as command-line arguments. The trunk is 64 wide, not
# conftest's 32: at 32 its 4 blocks hold fewer parameters than the side network, and the
# test checks that HST trains fewer parameters than full fine-tuning, as with real trunks.
TRUNK_KWARGS = {'depth': 4, 'embed_dim': 64, 'num_heads': 2}
EMBED_DIMS, NUM_HEADS = (16, 32, 48, 64), (1, 2, 3, 4)
TINY_ARGS = ['--trunk', 'vit_tiny_patch16_224', '--trunk-kwargs', json.dumps(TRUNK_KWARGS),
             '--embed-dims', *map(str, EMBED_DIMS), '--num-heads', *map(str, NUM_HEADS),
             '--img-size', '64', '--batch', '2', '--iters', '1', '--warmup', '1',
             '--device', 'cpu']
ROWS = ('hst', 'hst_cp', 'hst_cp_side', 'full_ft', 'full_ft_cp', 'frozen_probe')
WITH_CP = {'hst_cp': True, 'hst_cp_side': 'side', 'full_ft_cp': True}


def load_tool():
    """The tool as a module (under its own name: 'benchmark' alone could clash)."""
    spec = importlib.util.spec_from_file_location('hst_benchmark_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    """One run of every mode (default --cp both): (the JSON written, stdout)."""
    out = tmp_path_factory.mktemp('bench') / 'bench.json'
    proc = subprocess.run([sys.executable, str(TOOL), *TINY_ARGS, '--json', str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc.stdout


def test_json_structure(bench):
    data, _ = bench
    assert set(data) == {*ROWS, 'meta'}
    tool = load_tool()
    for mode in ROWS:
        row = data[mode]
        assert row['with_cp'] == WITH_CP.get(mode, False)
        for key in tool.METRICS:
            value = row[key]
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (mode, key)
            assert math.isfinite(value) and value > 0, (mode, key, value)
        assert row['peak_mem_mb'] >= row['model_mem_mb'], mode
        assert 0 < row['cpu_share'] < 2, mode      # CPU time / (wall time x threads)
    meta = data['meta']
    assert meta['device'] == 'cpu'
    for key in ('torch', 'timm', 'cpu_count', 'torch_threads', 'date', 'args', 'ratios'):
        assert meta[key], key
    assert meta['args']['img_size'] == 64 and meta['args']['trunk_kwargs'] == TRUNK_KWARGS


def test_parameter_counts(bench):
    data, _ = bench
    hst, full, probe = data['hst'], data['full_ft'], data['frozen_probe']
    assert hst['trainable_params'] < full['trainable_params']
    assert probe['trainable_params'] < full['trainable_params']
    assert full['trainable_params'] == full['total_params']
    assert probe['total_params'] == full['total_params']
    for mode in WITH_CP:        # checkpointing changes neither parameters nor FLOPs
        for key in ('trainable_params', 'total_params', 'gflops'):
            assert data[mode][key] == data[mode.split('_cp')[0]][key], (mode, key)

    model = HSTBackbone(trunk='vit_tiny_patch16_224', trunk_kwargs=TRUNK_KWARGS,
                        embed_dims=EMBED_DIMS, num_heads=NUM_HEADS)
    assert hst['trainable_params'] == sum(p.numel() for p in model.parameters()
                                          if p.requires_grad)
    assert hst['total_params'] == sum(p.numel() for p in model.parameters())


def test_report_and_ratios(bench):
    data, stdout = bench
    assert '| mode | trainable params (M) |' in stdout
    for mode in ROWS:
        assert f'\n| {mode} | ' in stdout
    ratios = {(q['metric'], q['num'], q['den']): q for q in data['meta']['ratios']}
    q = ratios[('train_step_s', 'hst', 'full_ft')]
    assert q['value'] == pytest.approx(data['hst']['train_step_s'] /
                                       data['full_ft']['train_step_s'])
    assert q['target'] == '<= 0.8' and q['met'] == (q['value'] <= 0.8)
    assert ratios[('peak_mem_mb', 'hst', 'full_ft')]['target'] == '<= 0.6'
    assert ratios[('infer_img_per_s', 'hst', 'frozen_probe')]['target'] == '>= 0.95'
    assert '| hst.train_step_s / full_ft.train_step_s |' in stdout
    assert 'CPU share while timed' in stdout and 'multiply-add = 2 FLOPs' in stdout


@pytest.mark.parametrize('cp, modes, rows', [
    ('both', None, list(ROWS)),
    ('off', None, ['hst', 'full_ft', 'frozen_probe']),
    ('on', None, ['hst_cp', 'hst_cp_side', 'full_ft_cp', 'frozen_probe']),
    ('both', ['frozen_probe', 'hst'], ['frozen_probe', 'hst', 'hst_cp', 'hst_cp_side']),
])
def test_modes_to_run(cp, modes, rows):
    tool = load_tool()
    argv = ['--cp', cp] + (['--modes', *modes] if modes else [])
    assert tool.modes_to_run(tool.parse_args(argv)) == rows


def test_bad_arguments():
    tool = load_tool()
    with pytest.raises(SystemExit):
        tool.parse_args(['--embed-dims', '16', '32', '--num-heads', '1'])
    with pytest.raises(SystemExit):
        tool.parse_args(['--trunk-kwargs', '[1, 2]'])


def test_backbones_load_without_mmengine():
    """Backbone mode needs only torch and timm: hst_mm/__init__ (mmengine) is skipped."""
    code = ('import sys; sys.modules["mmengine"] = None\n'   # makes `import mmengine` fail
            'import importlib.util as u\n'
            f'spec = u.spec_from_file_location("tool", {str(TOOL)!r})\n'
            'tool = u.module_from_spec(spec); spec.loader.exec_module(tool)\n'
            'models = tool.import_models()\n'
            'print(models.HSTBackbone.__name__, models.ViTSimplePyramid.__name__)\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['HSTBackbone', 'ViTSimplePyramid']


@pytest.mark.skipif(not Path('/proc/self/status').exists(), reason='needs Linux /proc')
def test_parent_stays_light_and_peaks_are_not_inherited():
    """The parent imports no torch, and a child's peak RSS is its own.

    ``ru_maxrss`` would carry this (torch-loaded) pytest process's size into the child.
    """
    import torch  # noqa: F401  (this process is large; the child must not report that)
    tool = load_tool()
    parent_rss = tool.current_rss_mb()
    code = ('import importlib.util as u, sys\n'
            f'spec = u.spec_from_file_location("tool", {str(TOOL)!r})\n'
            'tool = u.module_from_spec(spec); spec.loader.exec_module(tool)\n'
            'print("torch" in sys.modules, tool.peak_rss_mb())\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    torch_loaded, child_peak = proc.stdout.split()
    assert torch_loaded == 'False'
    assert float(child_peak) < min(100.0, parent_rss)


@pytest.fixture(scope='module')
def bench_detector(tmp_path_factory):
    """Detector mode, HST and full fine-tuning only: (the JSON written, stdout)."""
    out = tmp_path_factory.mktemp('bench_det') / 'bench.json'
    proc = subprocess.run([sys.executable, str(TOOL), *TINY_ARGS, '--model', 'detector',
                           '--modes', 'hst', 'full_ft', '--cp', 'off', '--json', str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc.stdout


def test_detector_mode(bench_detector, bench):
    """The whole Mask R-CNN is measured: the heads' parameters and FLOPs are counted."""
    data, stdout = bench_detector
    assert set(data) == {'hst', 'full_ft', 'meta'}
    assert data['meta']['args']['model'] == 'detector'
    assert stdout.startswith('### Mask R-CNN, vit_tiny_patch16_224 at 64x64')
    backbone_rows, _ = bench
    tool = load_tool()
    for mode in ('hst', 'full_ft'):
        row = data[mode]
        for key in tool.METRICS:
            assert math.isfinite(row[key]) and row[key] > 0, (mode, key, row[key])
        # FPN + RPN + RoI heads come on top of the backbone, trainable in both modes.
        heads = row['trainable_params'] - backbone_rows[mode]['trainable_params']
        assert heads > 1e6, (mode, heads)
        assert row['total_params'] - backbone_rows[mode]['total_params'] == heads
        assert row['gflops'] > backbone_rows[mode]['gflops']
