"""tools/gpu_check.py (workshop.gpu_check) on the CPU: tiny models, the parity and training
parts, the JSON checked.

The GPU numbers themselves need a CUDA machine; here the same code paths run with
``--device cpu --tiny`` (parity: CPU float32 / autocast against CPU float64 references).
"""

import contextlib
import io
import itertools
import json
import math
import time
from pathlib import Path

import pytest

from workshop.benchmark.cli import parse_args as benchmark_args
from workshop.fixtures import TINY_TRUNK
from workshop.gpu_check import cli, harness, parity

ROOT = Path(__file__).resolve().parents[1]
TASKS = ('detection', 'segmentation')


def run_main(*args):
    """The GPU check's command line in this process (its parts still run in subprocesses,
    as the harness starts them): (exit status, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main([str(a) for a in args])
    return status, out.getvalue()


@pytest.fixture(scope='module')
def checked(tmp_path_factory):
    """One CPU run of parity + training (tiny models; 5 worker processes): (the JSON,
    stdout)."""
    out = tmp_path_factory.mktemp('gpu_check') / 'gpu_check.json'
    status, stdout = run_main(
        '--device',
        'cpu',
        '--tiny',
        '--iters',
        2,
        '--warmup',
        1,
        '--skip',
        'benchmark',
        '--out',
        out,
    )
    assert status == 0, stdout[-6000:]
    return json.loads(out.read_text()), stdout


def finite_positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_overall_status(checked):
    report, stdout = checked
    assert report['passed'] is True and report['failed_parts'] == []
    assert report['skipped'] == ['benchmark'] and 'benchmark' not in report
    assert report['meta']['device'] == 'cpu' and report['meta']['tiny'] is True
    assert report['meta']['versions']['mmdet'] == '3.3.0'
    assert '[1/3] operator parity: PASS' in stdout
    assert '[2/3] training throughput, HST vs full fine-tuning: PASS' in stdout
    assert '[3/3] backbone benchmark: SKIPPED' in stdout
    assert 'overall: PASS' in stdout


@pytest.mark.slow
def test_parity_covers_every_case_and_passes(checked):
    parity = checked[0]['parity']
    assert parity['status'] == 'pass' and parity['device'] == 'cpu'
    assert 'float64' in parity['reference'] and 'no CUDA' in parity['reference']
    cases = parity['cases']
    assert parity['passed'] == parity['total'] == len(cases) == 24 + 4 + 12
    assert all(c['pass'] for c in cases)

    roi = [c for c in cases if c['op'] == 'roi_align']
    seen = {
        (
            c['params']['aligned'],
            c['params']['sampling_ratio'],
            c['params']['output_size'],
            c['dtype'],
        )
        for c in roi
    }
    assert seen == set(
        itertools.product((True, False), (0, 2), (7, 14), ('float32', 'float16', 'bfloat16'))
    )
    focal = [c for c in cases if c['op'] == 'sigmoid_focal_loss']
    assert {c['dtype'] for c in focal} == {'float32', 'float16', 'bfloat16'}
    for case in roi + focal:
        assert case['autocast'] == (case['dtype'] != 'float32')
        for check in case['checks'].values():
            # Compared with a distinct float64 result: a real, small, non-zero difference.
            assert finite_positive(check['max_ref'])
            assert finite_positive(check['rel']) and check['rel'] <= case['tol_rel'], case
            assert check['max_abs_vs_cpu_float32'] is None  # no CUDA side here

    nms = [c for c in cases if c['op'] == 'nms']
    assert {(c['params']['offset'], c['params']['iou_threshold']) for c in nms} == {
        (0, 0.5),
        (0, 0.7),
        (1, 0.5),
        (1, 0.7),
    }
    for case in nms:
        assert case['same_as_reference'] and case['same_as_cpu'] and case['dets_match_boxes']
        # Something is suppressed and something kept: the comparison is not vacuous.
        assert 0 < case['kept'] == case['kept_reference'] < case['params']['boxes']


@pytest.mark.slow
@pytest.mark.parametrize('task', TASKS)
@pytest.mark.parametrize('mode', ('hst', 'full'))
def test_training_rows(checked, task, mode):
    row = checked[0]['train']['tasks'][task]['rows'][mode]
    assert 'error' not in row, row
    assert (ROOT / row['config']).is_file()
    assert row['iters'] == 2 and row['warmup'] == 1
    assert row['img_size'] == 128 and row['batch'] == 2
    assert len(row['step_times_s']) == 2
    for key in (
        'it_per_s',
        'img_per_s',
        'step_s_median',
        'model_mem_mb',
        'peak_mem_mb',
        'loss_first',
        'loss_last',
    ):
        assert finite_positive(row[key]), (key, row[key])
    assert row['peak_mem_mb'] >= row['model_mem_mb']
    assert row['loss_finite'] is True
    # No GPU: the config's AmpOptimWrapper is trained as float32, and the row says so.
    assert row['optim_wrapper'] == 'OptimWrapper' and row['amp_dtype'] is None
    assert 'float32' in row['precision_note']
    if mode == 'hst':  # frozen trunk: fewer trainable than total parameters
        assert 0 < row['trainable_params'] < row['total_params']
    else:
        assert row['trainable_params'] == row['total_params'] > 0


@pytest.mark.slow
@pytest.mark.parametrize('task', TASKS)
def test_training_ratios(checked, task):
    block = checked[0]['train']['tasks'][task]
    rows, ratios = block['rows'], block['ratios_hst_over_full']
    assert math.isclose(ratios['it_per_s'], rows['hst']['it_per_s'] / rows['full']['it_per_s'])
    assert finite_positive(ratios['step_time']) and finite_positive(ratios['peak_mem'])
    assert set(ratios) == {'it_per_s', 'step_time', 'peak_mem'}  # ratios, not verdicts


def test_failed_parts_are_reported_and_set_the_exit_status(tmp_path):
    """A budget too small to start anything: every part fails, the JSON says why, exit 1."""
    out = tmp_path / 'out.json'
    status, stdout = run_main('--device', 'cpu', '--tiny', '--budget', 1, '--out', out)
    assert status == 1, stdout
    report = json.loads(out.read_text())
    assert report['passed'] is False
    assert report['failed_parts'] == ['parity', 'train', 'benchmark']
    assert 'time budget' in report['parity']['error']
    assert all('time budget' in run['error'] for run in report['benchmark']['runs'].values())
    assert all(
        'time budget' in row['error']
        for block in report['train']['tasks'].values()
        for row in block['rows'].values()
    )
    assert 'overall: FAIL' in stdout


def test_cuda_requested_without_cuda_says_so(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    argv = ['--device', 'cuda', '--skip', 'parity', 'train', 'benchmark', '--out', '/dev/null']
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert 'sees no CUDA device' in err and '--device cpu' in err


def test_benchmark_commands_use_real_flags(tmp_path):
    """On CUDA, part 3 runs the benchmark's ladder at batch 1 and 16 under bf16 autocast;
    each command parses with the benchmark's own argument parser."""
    commands = harness.benchmark_commands(cli.parse_args(['--device', 'cuda']), tmp_path)
    assert list(commands) == ['batch 1', 'batch 16']
    jsons = set()
    for name, cmd in commands.items():
        assert cmd[1:3] == ['-m', 'workshop.benchmark.cli']
        bench = benchmark_args(cmd[3:])
        assert (bench.device, bench.amp, bench.img_size) == ('cuda', 'bf16', 1024)
        assert name == f'batch {bench.batch}'
        assert {'hst_lean', 'hst_k12', 'hst_bf16', 'hst_compile', 'full', 'trunk'} <= set(
            bench.modes
        )
        jsons.add(bench.json)
    assert len(jsons) == 2 and all(j.startswith(str(tmp_path)) for j in jsons)
    (tiny,) = harness.benchmark_commands(
        cli.parse_args(['--device', 'cpu', '--tiny']), tmp_path
    ).values()
    tiny = benchmark_args(tiny[3:])
    assert tiny.trunk == TINY_TRUNK['trunk'] and tiny.amp == 'off'


def test_reference_nms_on_a_small_case():
    import torch

    boxes = torch.tensor(
        [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], dtype=torch.float32
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # IoU(0, 1) = 81 / 119 = 0.68; IoU(3, 0) = 0.9; IoU(3, 1) = 72 / 118 = 0.61.
    assert parity.reference_nms(boxes, scores, 0.5, 0) == [3, 2]
    assert parity.reference_nms(boxes, scores, 0.65, 0) == [3, 1, 2]
    assert parity.reference_nms(boxes, scores, 0.95, 0) == [3, 0, 1, 2]


@pytest.mark.slow  # starts a shell and its children
def test_timeout_kills_the_whole_process_group():
    """A part that hangs, children included, ends at its limit."""
    start = time.perf_counter()
    res = harness.run_subprocess(['sh', '-c', 'sleep 60 & sleep 60'], timeout_s=1)
    assert res['timed_out'] and time.perf_counter() - start < 30


def test_a_failing_parity_case_fails_alone():
    def broken():
        raise RuntimeError('no bfloat16 kernel')

    case = parity._run_case({'op': 'roi_align', 'dtype': 'bfloat16'}, broken)
    assert case['pass'] is False and case['error'] == 'RuntimeError: no bfloat16 kernel'
    assert case['op'] == 'roi_align'
