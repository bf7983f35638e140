"""workshop.benchmark and tools/analysis/benchmark.py: run end to end on a tiny trunk, check
what they report."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hst_mm.models import HST
from workshop.benchmark import cli, measure, modes, report
from workshop.benchmark.ratios import RATIOS

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / 'tools' / 'analysis' / 'benchmark.py'

# A tiny trunk and side network, as command-line arguments. The trunk is 64 wide, not
# conftest's 32: at 32 its 4 blocks hold fewer parameters than the side network, and the
# test checks that HST trains fewer parameters than full fine-tuning, as with real trunks.
TRUNK_KWARGS = {'depth': 4, 'embed_dim': 64, 'num_heads': 2}
EMBED_DIMS, NUM_HEADS = (16, 32, 48, 64), (1, 2, 3, 4)
TINY_ARGS = [
    '--trunk',
    'vit_tiny_patch16_224',
    '--trunk-kwargs',
    json.dumps(TRUNK_KWARGS),
    '--embed-dims',
    *map(str, EMBED_DIMS),
    '--num-heads',
    *map(str, NUM_HEADS),
    '--img-size',
    '64',
    '--batch',
    '2',
    '--iters',
    '1',
    '--warmup',
    '1',
    '--device',
    'cpu',
]
ROWS = (
    'hst_ref',
    'hst_fold',
    'hst',
    'hst_rc_side',
    'hst_lean',
    'hst_cp',
    'hst_cp_side',
    'full',
    'full_cp',
    'frozen',
    'trunk',
)
WITH_CP = {'hst_cp': True, 'hst_cp_side': 'side', 'full_cp': True}
LEVER_ROWS = ('hst_ref', 'hst_fold', 'hst_rc_side', 'hst_lean')
HST_PARTS = ['trunk', 'bridge', 'side stage 1', 'side stage 2', 'side stage 3', 'side stage 4']


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    """One run of every mode (default --cp both), with one interleaved round, through the
    tool: (the JSON, stdout)."""
    out = tmp_path_factory.mktemp('bench') / 'bench.json'
    proc = subprocess.run(
        [sys.executable, str(TOOL), *TINY_ARGS, '--interleave', '1', '--json', str(out)],
        capture_output=True,
        text=True,
        timeout=1200,  # 11 rows, each in its own process, on a possibly busy machine
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.slow
def test_json_structure(bench):
    data, _ = bench
    assert set(data) == {*ROWS, 'meta'}
    for mode in ROWS:
        row = data[mode]
        assert row['with_cp'] == WITH_CP.get(mode, False)
        assert row['options'] == json.loads(json.dumps(modes.hst_options(mode)))
        for key in measure.METRICS:
            value = row[key]
            if mode == 'trunk' and key in ('train_step_s', 'peak_tensor_mb'):
                assert value is None  # the bare trunk does not train
                continue
            if mode == 'trunk' and key == 'trainable_params':
                assert value == 0
                continue
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (mode, key)
            assert math.isfinite(value) and value > 0, (mode, key, value)
        assert row['peak_mem_mb'] >= row['model_mem_mb'], mode
        if mode != 'trunk':
            # live tensors are part of the process: their peak is below its peak RSS
            assert row['peak_tensor_mb'] < row['peak_mem_mb'], mode
        assert 0 < row['cpu_share'] < 2, mode  # CPU time / (wall time x threads)
        # --warmup 1 --iters 1: exactly one timed call of each.
        assert len(row['infer_times_s']) == 1, mode
        assert len(row['train_times_s']) == (0 if mode == 'trunk' else 1), mode
        # --interleave 1: the reported speeds are those of the one interleaved round
        times = row['interleaved_times_s']
        assert len(times['infer_times_s']) == 1, mode
        assert row['infer_img_per_s'] == pytest.approx(2 / times['infer_times_s'][0])
        assert row['infer_img_per_s_alone'] == pytest.approx(2 / row['infer_times_s'][0])
        if mode != 'trunk':
            assert row['train_step_s'] == times['train_times_s'][0], mode
            assert row['train_step_s_alone'] == row['train_times_s'][0], mode
    meta = data['meta']
    assert meta['device'] == 'cpu'
    for key in ('torch', 'timm', 'cpu_count', 'torch_threads', 'date', 'args', 'ratios'):
        assert meta[key], key
    assert meta['args']['img_size'] == 64 and meta['args']['trunk_kwargs'] == TRUNK_KWARGS


@pytest.mark.slow
def test_parameter_counts(bench):
    data, _ = bench
    hst, full, probe = data['hst'], data['full'], data['frozen']
    assert hst['trainable_params'] < full['trainable_params']
    assert probe['trainable_params'] < full['trainable_params']
    assert full['trainable_params'] == full['total_params']
    assert probe['total_params'] == full['total_params']
    for mode in WITH_CP:  # checkpointing changes neither parameters nor FLOPs
        for key in ('trainable_params', 'total_params', 'gflops'):
            assert data[mode][key] == data[mode.split('_cp')[0]][key], (mode, key)
    for mode in LEVER_ROWS:  # the levers change no parameter
        for key in ('trainable_params', 'total_params'):
            assert data[mode][key] == hst[key], (mode, key)
    # Recomputation adds no forward FLOPs; the fold removes the queries' and output's matmuls.
    assert data['hst_rc_side']['gflops'] == data['hst_lean']['gflops'] == hst['gflops']
    assert data['hst_ref']['gflops'] > data['hst_fold']['gflops'] == hst['gflops']
    # The bare trunk: the same ViT, nothing trainable, fewer FLOPs than any backbone on it.
    trunk = data['trunk']
    assert trunk['trainable_params'] == 0
    assert trunk['gflops'] < min(hst['gflops'], full['gflops'])

    model = HST(
        trunk='vit_tiny_patch16_224',
        trunk_kwargs=TRUNK_KWARGS,
        embed_dims=EMBED_DIMS,
        num_heads=NUM_HEADS,
    )
    assert hst['trainable_params'] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert hst['total_params'] == sum(p.numel() for p in model.parameters())


@pytest.mark.slow
def test_report_and_ratios(bench):
    data, stdout = bench
    assert '| mode | trainable params (M) |' in stdout
    for mode in ROWS:
        assert f'\n| {mode} | ' in stdout
    ratios = {(q['metric'], q['num'], q['den']): q for q in data['meta']['ratios']}
    q = ratios[('train_step_s', 'hst', 'full')]
    assert q['value'] == pytest.approx(data['hst']['train_step_s'] / data['full']['train_step_s'])
    q = ratios[('infer_img_per_s', 'hst', 'trunk')]
    assert q['value'] == pytest.approx(
        data['hst']['infer_img_per_s'] / data['trunk']['infer_img_per_s']
    )
    assert '| hst.train_step_s / full.train_step_s |' in stdout
    q = ratios[('peak_tensor_mb', 'hst_lean', 'full')]
    assert q['value'] == pytest.approx(
        data['hst_lean']['peak_tensor_mb'] / data['full']['peak_tensor_mb']
    )
    # Ratios, not verdicts: no acceptance threshold in the JSON or the report.
    assert all(set(q) == {'metric', 'num', 'den', 'value'} for q in data['meta']['ratios'])
    assert 'target' not in stdout and '| met |' not in stdout
    assert "| hst_lean | + recompute 'trunk_mlp' (recommended) |" in stdout
    assert 'CPU share while timed' in stdout and 'multiply-add = 2 FLOPs' in stdout
    # one line per lever row, in the order the levers are added
    levers = [line.split(' | ')[0][2:] for line in stdout.splitlines() if '| + ' in line]
    assert levers == ['hst_fold', 'hst', 'hst_rc_side', 'hst_lean']
    assert '| hst_ref | reference computation |' in stdout
    # Every ratio whose rows all ran is reported, in the order of RATIOS.
    assert [(q['metric'], q['num'], q['den']) for q in data['meta']['ratios']] == [
        tuple(r) for r in RATIOS
    ]


@pytest.mark.slow
def test_saved_activation_breakdown(bench):
    """Every training row says what autograd saved, per part; the levers save less."""
    data, stdout = bench
    for mode in ROWS:
        if mode == 'trunk':
            assert 'saved_mb' not in data[mode]
            continue
        saved = data[mode]['saved_mb']
        assert saved['total'] == pytest.approx(sum(saved['parts'].values()), abs=0.2)
        if mode.startswith('hst') and not mode.startswith('hst_cp'):
            # in HST_PARTS' order; a part that saved under 0.05 MB (here the bridge, with the
            # lean trunk) is left out
            assert [p for p in HST_PARTS if p in saved['parts']] == list(saved['parts']), mode
            assert {'trunk', 'side stage 1'} <= set(saved['parts']), mode
    assert list(data['full']['saved_mb']['parts'])[:2] == ['trunk', 'pyramid']
    total = {m: data[m]['saved_mb']['total'] for m in ROWS if m != 'trunk'}
    # MB rounded to 0.1 at 64x64: non-increasing here (strictly falling per lever at 128x128
    # in tests/test_exact_levers.py)
    assert total['hst_ref'] >= total['hst_fold'] >= total['hst'] >= total['hst_rc_side']
    assert total['hst_rc_side'] >= total['hst_lean'] and total['hst_ref'] > total['hst_lean']
    assert '| mode | trunk | ' in stdout and ' side stage 1 |' in stdout


def test_ratios_skip_missing_and_failed_rows():
    """A ratio is reported only when both of its rows were measured."""
    row = {'train_step_s': 2.0, 'peak_mem_mb': 300.0, 'model_mem_mb': 100.0, 'infer_img_per_s': 4.0}
    results = {
        'hst': dict(row, train_step_s=1.0, peak_mem_mb=150.0),
        'full': row,
        'hst_cp': row,
        'full_cp': {'error': 'exit 1: ...'},
    }
    ratios = {(q['metric'], q['num'], q['den']): q for q in report.compute_ratios(results)}
    assert set(ratios) == {
        (m, n, 'full')
        for n in ('hst', 'hst_cp')
        for m in ('train_step_s', 'peak_mem_mb', 'train_increment_mb')
    }
    assert ratios[('train_step_s', 'hst', 'full')]['value'] == 0.5
    # (150 - 100) / (300 - 100)
    assert ratios[('train_increment_mb', 'hst', 'full')]['value'] == 0.25
    assert ratios[('peak_mem_mb', 'hst_cp', 'full')]['value'] == 1.0


def test_peak_tensor_mb_counts_what_lives_during_a_step():
    """The CPU's tensor peak: what was held before the step plus its allocations' peak."""
    held = torch.zeros(2**18)  # 1 MB held throughout
    mb = 2**18  # float32 elements per MB

    def step():
        a = torch.ones(4 * mb)
        b = torch.ones(2 * mb)
        del a
        c = torch.ones(4 * mb)  # b and c: 6 MB at once, the step's peak
        del b, c
        torch.ones(mb)  # 1 MB, freed at once

    before = measure.live_tensor_mb()
    assert before >= 1
    peak = measure.peak_tensor_mb(step, torch.device('cpu'))
    assert peak - before == pytest.approx(6, abs=0.05)
    # a step that allocates nothing peaks at what is held
    assert measure.peak_tensor_mb(lambda: None, torch.device('cpu')) == pytest.approx(before)
    assert held.sum() == 0


def test_time_calls_counts_warmup_and_iters():
    """--warmup untimed calls, then one time per --iters call."""
    calls = []
    times = measure.time_calls(lambda: calls.append(None), warmup=2, iters=3)
    assert len(calls) == 5 and len(times) == 3 and all(t >= 0 for t in times)


@pytest.mark.parametrize(
    'cp, modes_, rows',
    [
        ('both', None, list(ROWS)),
        (
            'off',
            None,
            ['hst_ref', 'hst_fold', 'hst', 'hst_rc_side', 'hst_lean', 'full', 'frozen', 'trunk'],
        ),
        (
            'on',
            None,
            [
                *LEVER_ROWS[:2],
                *LEVER_ROWS[2:],
                'hst_cp',
                'hst_cp_side',
                'full_cp',
                'frozen',
                'trunk',
            ],
        ),
        (
            'both',
            ['frozen', 'hst'],
            ['frozen', *LEVER_ROWS[:2], 'hst', *LEVER_ROWS[2:], 'hst_cp', 'hst_cp_side'],
        ),
        ('off', ['hst_lean', 'full'], ['hst_lean', 'full']),
    ],
)
def test_modes_to_run(cp, modes_, rows):
    argv = ['--cp', cp] + (['--modes', *modes_] if modes_ else [])
    assert modes.modes_to_run(cli.parse_args(argv)) == rows


def test_modes_to_run_without_levers_and_for_detectors():
    args = cli.parse_args(['--levers', 'off', '--cp', 'off'])
    assert modes.modes_to_run(args) == ['hst', 'full', 'frozen', 'trunk']
    # the bare trunk is a backbone's row
    args = cli.parse_args(['--levers', 'off', '--cp', 'off', '--model', 'detector'])
    assert modes.modes_to_run(args) == ['hst', 'full', 'frozen']


def test_bad_arguments():
    with pytest.raises(SystemExit):
        cli.parse_args(['--embed-dims', '16', '32', '--num-heads', '1'])
    with pytest.raises(SystemExit):
        cli.parse_args(['--trunk-kwargs', '[1, 2]'])


@pytest.mark.slow
def test_backbones_build_without_mmdet():
    """Backbone mode needs no detection stack: mmdet, mmseg and mmcv cannot be imported."""
    code = (
        'import sys\n'
        'for name in ("mmdet", "mmseg", "mmcv"):\n'
        '    sys.modules[name] = None\n'  # makes `import name` fail
        'from workshop.benchmark import cli, workloads\n'
        f'args = cli.parse_args({TINY_ARGS!r})\n'
        'for mode in ("hst", "full"):\n'
        '    print(type(workloads.build_backbone(mode, args)).__name__)\n'
    )
    proc = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['HST', 'ViTPyramid']


@pytest.mark.slow
@pytest.mark.skipif(not Path('/proc/self/status').exists(), reason='needs Linux /proc')
def test_peaks_are_not_inherited():
    """A worker's peak RSS is its own, not that of the larger process that started it.

    ``ru_maxrss`` would carry the parent's size into the child. This process is made larger
    than any fresh one importing the benchmark (which loads torch) can be.
    """
    ballast = b'\x01' * (768 * 2**20)  # written, so resident
    parent_rss = measure.current_rss_mb()
    code = (
        'from workshop.benchmark import measure\n'
        'print(measure.peak_rss_mb(), measure.current_rss_mb())\n'
    )
    proc = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    del ballast
    assert proc.returncode == 0, proc.stderr
    child_peak, child_rss = map(float, proc.stdout.split())
    assert child_rss <= child_peak < parent_rss


@pytest.fixture(scope='module')
def bench_detector(tmp_path_factory):
    """Detector mode, HST and full fine-tuning only, through ``python -m``: (JSON, stdout)."""
    out = tmp_path_factory.mktemp('bench_det') / 'bench.json'
    proc = subprocess.run(
        [
            sys.executable,
            '-m',
            'workshop.benchmark.cli',
            *TINY_ARGS,
            '--model',
            'detector',
            '--modes',
            'hst',
            'hst_lean',
            'full',
            '--cp',
            'off',
            '--levers',
            'off',
            '--json',
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.slow
def test_detector_mode(bench_detector, bench):
    """The whole Mask R-CNN is measured: the heads' parameters and FLOPs are counted."""
    data, stdout = bench_detector
    assert set(data) == {'hst', 'hst_lean', 'full', 'meta'}
    assert data['meta']['args']['model'] == 'detector'
    assert stdout.startswith('### Mask R-CNN, vit_tiny_patch16_224 at 64x64')
    backbone_rows, _ = bench
    # the lever row's options reach the detector's backbone; the neck and heads save too
    assert data['hst_lean']['options'] == {'recompute': ['side', 'trunk_mlp']}
    assert data['hst_lean']['saved_mb']['total'] < data['hst']['saved_mb']['total']
    assert {'neck', 'heads'} <= set(data['hst']['saved_mb']['parts'])
    for mode in ('hst', 'hst_lean', 'full'):
        row = data[mode]
        for key in measure.METRICS:
            assert math.isfinite(row[key]) and row[key] > 0, (mode, key, row[key])
        # FPN + RPN + RoI heads come on top of the backbone, trainable in both modes.
        heads = row['trainable_params'] - backbone_rows[mode]['trainable_params']
        assert heads > 1e6, (mode, heads)
        assert row['total_params'] - backbone_rows[mode]['total_params'] == heads
        assert row['gflops'] > backbone_rows[mode]['gflops']


def test_old_row_names_still_select_modes():
    args = cli.parse_args(['--modes', 'full_ft', 'frozen_probe', 'hst', '--cp', 'off'])
    assert args.modes == ['full', 'frozen', 'hst']


def test_petl_rows_are_the_configs_backbones():
    """The PETL rows are chosen by --modes only and build the probe with the configs' method
    settings (configs/_base_/petl.py)."""
    from workshop.benchmark import workloads

    args = cli.parse_args([*TINY_ARGS, '--modes', 'frozen', 'lora', 'ssf'])
    assert modes.modes_to_run(args) == ['frozen', 'lora', 'ssf']
    assert not set(modes.PETL_MODES) & set(modes.modes_to_run(cli.parse_args(TINY_ARGS)))
    assert workloads.petl_settings('lora') == dict(
        method='lora', rank=16, alpha=16, targets=['qkv'], dropout=0.0
    )
    for mode in modes.PETL_MODES:
        model = workloads.build_backbone(mode, args)
        assert model.frozen and type(model.petl).__name__.lower().startswith(mode[:3])
        assert (
            workloads.DETECTOR_CONFIGS[mode]
            == f'configs/petl/mask-rcnn_vit-b-{mode}_fpn_amp-1x_coco.py'
        )
