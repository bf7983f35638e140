"""workshop.benchmark and tools/analysis/benchmark.py: run end to end on a tiny trunk, check
what they report."""

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hst_mm.models import HST
from workshop.benchmark import cli, measure, modes, report
from workshop.benchmark.ratios import RATIOS, Ratio

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
    # one thread: the tiny rows gain nothing from two, and two wait on each other when the
    # machine is busy
    '--threads',
    '1',
]
# The rows of the one run of the tool: the configs' HST, full fine-tuning and the bare trunk.
ROWS = ('hst_lean', 'full', 'trunk')
LEVER_ROWS = ('hst_ref', 'hst_fold', 'hst_rc_side', 'hst_lean')
HST_PARTS = ['trunk', 'bridge', 'side stage 1', 'side stage 2', 'side stage 3', 'side stage 4']


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    """The one run of the tool in its own process: three rows, each in its own worker, two
    timed iterations each (the interleaved rounds are tested in-process): (JSON, stdout)."""
    out = tmp_path_factory.mktemp('bench') / 'bench.json'
    rows = ['--modes', *ROWS, '--iters', '2', '--json', str(out)]
    proc = subprocess.run(
        [sys.executable, str(TOOL), *TINY_ARGS, *rows],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc.stdout


def tiny_args(*extra):
    """The benchmark's arguments on the tiny trunk, parsed in this process."""
    return cli.parse_args([*TINY_ARGS, *extra])


@pytest.mark.slow
def test_json_structure(bench):
    data, _ = bench
    assert set(data) == {*ROWS, 'meta'}  # the rows named, nothing more
    for mode in ROWS:
        row = data[mode]
        assert row['with_cp'] is False
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
        assert row['peak_rss_mb'] == row['peak_mem_mb'], mode  # on the CPU: the same VmHWM
        if mode != 'trunk':
            # live tensors are part of the process: their peak is below its peak RSS
            assert row['peak_tensor_mb'] < row['peak_rss_mb'], mode
        assert 0 < row['cpu_share'] < 2, mode  # CPU time / (wall time x threads)
        # --warmup 1 --iters 2: the first call apart, then two timed calls of each.
        assert len(row['infer_times_s']) == 2, mode
        assert len(row['train_times_s']) == (0 if mode == 'trunk' else 2), mode
        assert set(row['first_call_s']) == ({'infer'} if mode == 'trunk' else {'infer', 'train'})
        assert row['infer_img_per_s'] == pytest.approx(2 / statistics.median(row['infer_times_s']))
        if mode != 'trunk':
            assert row['train_step_s'] == statistics.median(row['train_times_s']), mode
    meta = data['meta']
    assert meta['device'] == 'cpu'
    for key in ('torch', 'timm', 'cpu_count', 'torch_threads', 'date', 'args', 'ratios'):
        assert meta[key], key
    assert meta['args']['img_size'] == 64 and meta['args']['trunk_kwargs'] == TRUNK_KWARGS


@pytest.mark.slow
def test_parameter_counts(bench):
    data, _ = bench
    hst, full = data['hst_lean'], data['full']
    assert hst['trainable_params'] < full['trainable_params']
    assert full['trainable_params'] == full['total_params']
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
    q = ratios[('peak_tensor_mb', 'hst_lean', 'full')]
    assert q['value'] == pytest.approx(
        data['hst_lean']['peak_tensor_mb'] / data['full']['peak_tensor_mb']
    )
    q = ratios[('peak_rss_mb', 'hst_lean', 'full')]
    assert q['value'] == pytest.approx(
        data['hst_lean']['peak_rss_mb'] / data['full']['peak_rss_mb']
    )
    # speed ratios: the per-round ratios of the two rows' iterations, in order
    q = ratios[('infer_img_per_s', 'hst_lean', 'trunk')]
    a, b = (data[m]['infer_times_s'] for m in ('hst_lean', 'trunk'))
    rounds = [tb / ta for ta, tb in zip(a, b)]
    assert q['rounds'] == 2 and q['source'] == 'iterations'
    assert q['spread'] == pytest.approx([min(rounds), max(rounds)])
    assert q['median'] == pytest.approx(statistics.median(rounds))
    agree = max(rounds) - min(rounds) <= 0.05 * statistics.median(rounds)
    assert (q['value'] is not None) == agree
    # Ratios, not verdicts: no acceptance threshold in the JSON or the report.
    assert not any({'target', 'met'} & set(q) for q in data['meta']['ratios'])
    assert 'target' not in stdout and '| met |' not in stdout
    assert 'CPU share while timed' in stdout and 'multiply-add = 2 FLOPs' in stdout
    # Every ratio whose rows all ran is reported, in the order of RATIOS.
    ran = [r for r in RATIOS if {r.num, r.den} <= set(ROWS)]
    ran = [r for r in ran if not (r.den == 'trunk' and r.metric != 'infer_img_per_s')]
    assert [(q['metric'], q['num'], q['den']) for q in data['meta']['ratios']] == [
        tuple(r) for r in ran
    ]


@pytest.mark.slow
def test_saved_activations_and_profile(bench):
    """Every training row says what autograd saved, per part; hst_lean and the trunk are
    profiled per part."""
    data, stdout = bench
    for mode in ROWS:
        if mode == 'trunk':
            assert 'saved_mb' not in data[mode]
            continue
        saved = data[mode]['saved_mb']
        assert saved['total'] == pytest.approx(sum(saved['parts'].values()), abs=0.2)
    saved = data['hst_lean']['saved_mb']['parts']
    assert [p for p in HST_PARTS if p in saved] == list(saved)
    assert list(data['full']['saved_mb']['parts'])[:2] == ['trunk', 'pyramid']
    assert '| mode | trunk | ' in stdout and ' side stage 1 |' in stdout
    profile = data['hst_lean']['profile']
    assert list(profile) == ['inference', 'train forward', 'train backward', 'optimizer']
    assert {'trunk', 'bridge', 'side stage 1'} <= set(profile['train backward']['parts'])
    assert list(data['trunk']['profile']) == ['inference']
    assert set(data['trunk']['profile']['inference']['parts']) == {'trunk'}
    assert '| hst_lean | train backward | ' in stdout
    assert 'profile' not in data['full']  # only the rows --profile names (default)


def test_interleaved_rounds_replace_the_speeds(monkeypatch):
    """--interleave N: one process times the rows that ran, N rounds; their medians become
    the rows' speeds, the own-process ones stay as *_alone (in-process, tiny trunk)."""
    threads = torch.get_num_threads()
    asked = []

    def in_process(mode, argv):
        args = cli.parse_args(argv)
        asked.append(modes.modes_to_run(args))
        return {'row': measure.interleaved_times(modes.modes_to_run(args), args), 'env': {}}

    monkeypatch.setattr(cli, 'run_worker', in_process)
    argv = [*TINY_ARGS, '--modes', 'hst_lean', 'hst_k6', 'trunk', '--interleave', '2']
    own = {'infer_img_per_s': 1.0, 'train_step_s': 9.0, 'first_call_s': {'infer': 9.0}}
    results = {
        'hst_lean': dict(own),
        'hst_k6': {'error': 'exit 1: MissingOptionError ...'},
        'trunk': dict(own, train_step_s=None),
    }
    try:
        cli._apply_interleaved(results, argv)
    finally:
        torch.set_num_threads(threads)
    assert asked == [['hst_lean', 'trunk']]  # the rows that ran, nothing added
    for mode in ('hst_lean', 'trunk'):
        row, times = results[mode], results[mode]['interleaved_times_s']
        assert len(times['infer_times_s']) == 2 and row['infer_img_per_s_alone'] == 1.0
        assert row['infer_img_per_s'] == pytest.approx(
            2 / statistics.median(times['infer_times_s'])
        )
        assert row['first_call_s_alone'] == {'infer': 9.0}
    lean = results['hst_lean']
    assert set(lean['first_call_s']) == {'infer', 'train'}
    assert lean['train_step_s'] == statistics.median(lean['interleaved_times_s']['train_times_s'])
    assert lean['train_step_s_alone'] == 9.0
    assert results['trunk']['interleaved_times_s']['train_times_s'] == []


def _timed_row(train, infer, **memory):
    """A measured row of the given interleaved round times (seconds) and memory (MB)."""
    row = dict(peak_mem_mb=300.0, model_mem_mb=100.0, peak_tensor_mb=50.0, peak_rss_mb=300.0)
    row.update(memory)
    times = {'train_times_s': list(train), 'infer_times_s': list(infer)}
    return dict(
        row,
        train_step_s=statistics.median(train),
        infer_img_per_s=2 / statistics.median(infer),
        interleaved_times_s=times,
    )


def test_ratios_skip_missing_and_failed_rows():
    """A ratio is reported only when both of its rows were measured."""
    results = {
        'hst': _timed_row([1.0, 1.0], [1.0, 1.0], peak_mem_mb=150.0),
        'full': _timed_row([2.0, 2.0], [1.0, 1.0]),
        'hst_cp': _timed_row([2.0, 2.0], [1.0, 1.0]),
        'full_cp': {'error': 'exit 1: ...'},
    }
    ratios = {(q['metric'], q['num'], q['den']): q for q in report.compute_ratios(results)}
    assert set(ratios) == {
        (m, n, 'full')
        for n in ('hst', 'hst_cp')
        for m in ('train_step_s', 'peak_tensor_mb', 'peak_rss_mb', 'train_increment_mb')
    }
    assert ratios[('train_step_s', 'hst', 'full')]['value'] == 0.5
    # (150 - 100) / (300 - 100)
    assert ratios[('train_increment_mb', 'hst', 'full')]['value'] == 0.25
    assert ratios[('peak_rss_mb', 'hst_cp', 'full')]['value'] == 1.0


def test_speed_ratios_need_agreeing_rounds():
    """A speed ratio is the median of its rounds' ratios; it is withheld (value None, the
    spread kept) when the rounds spread by more than the margin, or there is one round."""
    agree = {
        'a': _timed_row([1.0, 1.1, 1.2], [1, 1, 1]),
        'b': _timed_row([2.0, 2.2, 2.4], [2, 2, 2]),
    }
    split = {
        'a': _timed_row([1.0, 1.0, 1.0], [1, 1, 1]),
        'b': _timed_row([2.0, 1.5, 2.5], [2, 2, 2]),
    }
    one = {'a': _timed_row([1.0], [1]), 'b': _timed_row([2.0], [2])}
    train, infer = Ratio('train_step_s', 'a', 'b'), Ratio('infer_img_per_s', 'a', 'b')
    q = report.ratio_of(train, agree['a'], agree['b'], margin=0.05)
    assert q['value'] == q['median'] == 0.5 and q['rounds'] == 3 and q['source'] == 'interleaved'
    q = report.ratio_of(infer, agree['a'], agree['b'], margin=0.05)
    assert q['value'] == 2.0  # a's images/s over b's: b's time over a's
    q = report.ratio_of(train, split['a'], split['b'], margin=0.05)
    assert q['value'] is None and q['median'] == 0.5
    assert q['spread'] == pytest.approx([0.4, 1 / 1.5])
    # a wider margin accepts the same rounds
    assert report.ratio_of(train, split['a'], split['b'], margin=0.6)['value'] == 0.5
    assert report.ratio_of(train, one['a'], one['b'], margin=0.05)['value'] is None
    # without interleaved rounds: each row's timed iterations, in order
    plain = {
        m: {k: v for k, v in r.items() if k != 'interleaved_times_s'} for m, r in agree.items()
    }
    for m in plain:
        plain[m]['train_times_s'] = agree[m]['interleaved_times_s']['train_times_s']
    q = report.ratio_of(train, plain['a'], plain['b'], margin=0.05)
    assert q['source'] == 'iterations' and q['value'] == 0.5
    # the report prints the accepted ratio and withholds the split one
    results = {'hst_lean': split['a'], 'full': split['b'], 'trunk': agree['b']}
    for r in results.values():
        r.update(trainable_params=1, total_params=1, gflops=1.0, cpu_share=1.0)
    results['trunk']['train_step_s'] = None
    ratios = report.compute_ratios(results, margin=0.05)
    meta = dict(
        args=dict(cli.DEFAULTS, model='backbone', batch=2, amp='off', iters=3, warmup=1),
        device='cpu',
        device_name=None,
        torch_threads=2,
        loadavg_start=None,
        loadavg_end=None,
        cpu_count=2,
    )
    text = report.format_report(results, ratios, meta)
    line = next(x for x in text.splitlines() if x.startswith('| hst_lean.train_step_s'))
    assert f'{0.5:.3f}' not in line.split('|')[2]
    line = next(x for x in text.splitlines() if x.startswith('| hst_lean.infer_img_per_s'))
    assert f'{2.0:.3f}' in line.split('|')[2]


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
    'argv, rows',
    [
        ([], list(modes.DEFAULT_MODES)),
        (['--modes', 'hst', 'full'], ['hst', 'full']),
        (['--modes', 'hst', 'full', '--levers', 'off', '--cp', 'off'], ['hst', 'full']),
        (['--modes', 'hst_lean', 'hst_k6', 'trunk'], ['hst_lean', 'hst_k6', 'trunk']),
        (
            ['--modes', 'hst', 'full', '--cp', 'both'],
            ['hst', 'hst_cp', 'hst_cp_side', 'full', 'full_cp'],
        ),
        (
            ['--modes', 'hst', 'full', 'frozen', '--cp', 'on'],
            ['hst_cp', 'hst_cp_side', 'full_cp', 'frozen'],
        ),
        (
            ['--modes', 'frozen', 'hst', '--levers', 'on'],
            ['frozen', *LEVER_ROWS[:2], 'hst', *LEVER_ROWS[2:]],
        ),
        # hst_lean named and brought by --levers: once
        (
            ['--modes', 'hst_lean', 'hst', '--levers', 'on'],
            ['hst_lean', *LEVER_ROWS[:2], 'hst', 'hst_rc_side'],
        ),
    ],
)
def test_modes_to_run(argv, rows):
    """Exactly the rows named; lever and checkpointed rows only when asked."""
    assert modes.modes_to_run(cli.parse_args(argv)) == rows


def test_modes_to_run_for_detectors():
    # the bare trunk is a backbone's row
    args = cli.parse_args(['--modes', 'hst', 'full', 'trunk', '--model', 'detector'])
    assert modes.modes_to_run(args) == ['hst', 'full']


def test_ladder_rows_are_the_default_hst_plus_one_option():
    """hst_k6 / hst_k12 / hst_bf16 / hst_compile: the configs' HST (row hst_lean, checked
    against the configs in tests/test_exact_levers.py) + one option each."""
    lean = modes.hst_options('hst_lean')
    added = {
        'hst_k6': dict(grad_start=6),
        'hst_k12': dict(grad_start=12),
        'hst_bf16': dict(trunk_dtype='bfloat16'),
        'hst_compile': dict(compile=True),
    }
    for mode, option in added.items():
        assert modes.hst_options(mode) == {**lean, **option}, mode
        assert mode in modes.ALL_MODES and mode in modes.LEVERS
    # the compiling row's first call is untimed even with --warmup 0
    assert measure.warmup_of('hst_compile', tiny_args('--warmup', '0')) == 1
    assert measure.warmup_of('hst_lean', tiny_args('--warmup', '0')) == 0


def test_a_row_whose_option_the_backbone_lacks_fails_by_name(monkeypatch):
    """A ladder row on an HST without its option: a named error, not a row without it."""
    import hst_mm.models
    from workshop.benchmark import workloads

    class OldHST(HST):
        def __init__(
            self, trunk, embed_dims, num_heads, with_cp=False, trunk_kwargs=None, recompute=()
        ):
            super().__init__(
                trunk=trunk,
                embed_dims=embed_dims,
                num_heads=num_heads,
                with_cp=with_cp,
                trunk_kwargs=trunk_kwargs,
                recompute=recompute,
            )

    monkeypatch.setattr(hst_mm.models, 'HST', OldHST)
    args = tiny_args()
    assert isinstance(workloads.build_backbone('hst_lean', args), OldHST)
    for mode, option in (
        ('hst_k6', 'grad_start'),
        ('hst_bf16', 'trunk_dtype'),
        ('hst_compile', 'compile'),
    ):
        with pytest.raises(modes.MissingOptionError, match=f"'{mode}'.*'{option}'"):
            workloads.build_backbone(mode, args)


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


@pytest.mark.slow
def test_detector_mode():
    """The whole Mask R-CNN is measured (in-process): the heads' parameters and FLOPs are
    counted, the row's options reach its backbone, the neck and heads save for backward."""
    args = tiny_args('--model', 'detector', '--iters', '1', '--warmup', '0', '--profile')
    threads = torch.get_num_threads()
    try:
        out = measure.measure_mode('hst_lean', args)
    finally:
        torch.set_num_threads(threads)
    row = out['row']
    assert row['options'] == {'recompute': ('side', 'trunk_mlp')}
    assert {'neck', 'heads'} <= set(row['saved_mb']['parts'])
    for key in measure.METRICS:
        assert math.isfinite(row[key]) and row[key] > 0, (key, row[key])
    backbone = HST(
        trunk='vit_tiny_patch16_224',
        trunk_kwargs=TRUNK_KWARGS,
        embed_dims=EMBED_DIMS,
        num_heads=NUM_HEADS,
    )
    counts = measure.count_params(backbone)
    # FPN + RPN + RoI heads come on top of the backbone, all trainable.
    heads = row['trainable_params'] - counts['trainable_params']
    assert heads > 1e6
    assert row['total_params'] - counts['total_params'] == heads
    x1 = torch.randn(1, 3, 64, 64)
    assert row['gflops'] > measure.count_gflops(lambda: backbone.eval()(x1))


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


def test_profile_charges_time_to_the_part_that_ran():
    """The per-part profile: every phase, the parts that ran, and a part made slow on
    purpose (the bridge, with a 2-GFLOP matmul added to its forward) carries the most
    forward time."""
    from workshop.benchmark.profile import profile_parts

    model = HST(
        trunk='vit_tiny_patch16_224',
        trunk_kwargs=TRUNK_KWARGS,
        embed_dims=EMBED_DIMS,
        num_heads=NUM_HEADS,
        recompute=('side', 'trunk_mlp'),
    )
    x = torch.randn(1, 3, 64, 64)
    heavy = torch.randn(1024, 1024)
    bridge_forward = model.bridge.forward

    def slow_bridge(*args, **kwargs):
        torch.mm(heavy, heavy)  # inside the bridge's module call: the bridge's time
        return bridge_forward(*args, **kwargs)

    model.bridge.forward = slow_bridge
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)

    def infer():
        with torch.inference_mode():
            model(x)

    def step():
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 threads on a busy 2-core machine wait on each other
    try:
        infer()  # the first call pays for lazy initialisation: not what is profiled
        out = profile_parts(model, infer, lambda: sum(o.mean() for o in model(x)), step)
    finally:
        torch.set_num_threads(threads)
    assert list(out) == ['inference', 'train forward', 'train backward', 'optimizer']
    for phase in ('inference', 'train forward'):
        parts = out[phase]['parts']
        assert {'trunk', 'bridge', 'side stage 1', 'side stage 4'} <= set(parts), phase
        assert max(parts, key=parts.get) == 'bridge', (phase, parts)
        assert sum(parts.values()) + out[phase]['rest_s'] == pytest.approx(out[phase]['wall_s'])
    # backward: the tuned trunk (meta tokens, norms) and every side stage take gradients
    back = out['train backward']['parts']
    assert {'trunk', 'side stage 1', 'side stage 4'} <= set(back)
    assert all(p.grad is None for p in model.parameters())  # the step ran and reset them


def test_config_gives_backbone_and_input_size(tmp_path):
    """CONFIG: its backbone built through the registry as it is set, its trunk and side
    network as the other rows' defaults, the input side of its training pipeline."""
    from workshop.benchmark import workloads
    from workshop.benchmark.config import input_side

    args = cli.parse_args(['configs/toy/upernet_hst-vit-ti_toy.py', '--device', 'cpu'])
    assert args.modes == ['config', *modes.DEFAULT_MODES]
    assert args.img_size == 128  # its RandomCrop
    assert args.trunk == 'vit_tiny_patch16_224' and args.embed_dims == [64, 128, 256, 384]
    # built as the config sets it (recompute=('side', 'trunk_mlp')), on the tiny trunk here
    args.config_backbone.update(
        trunk_kwargs=TRUNK_KWARGS, embed_dims=EMBED_DIMS, num_heads=NUM_HEADS
    )
    model = workloads.build_backbone('config', args)
    assert type(model).__module__ == 'hst_mm.registration'  # the registered class
    assert model.trunk.recompute_mlp
    # an explicit argument wins over the config's
    assert (
        cli.parse_args(['configs/toy/upernet_hst-vit-ti_toy.py', '--img-size', '64']).img_size == 64
    )
    # mmdet's keep-ratio resizes: the short side a square image gets, the largest scale
    assert input_side([dict(type='Resize', scale=(1333, 800), keep_ratio=True)]) == 800
    choice = dict(type='RandomChoiceResize', scales=[(480, 1333), (800, 1333)], keep_ratio=True)
    assert input_side([dict(type='RandomChoice', transforms=[[choice]])]) == 800
    assert input_side([dict(type='LoadImageFromFile')]) is None


def test_config_without_a_supported_backbone_is_named(tmp_path, capsys):
    resnet = tmp_path / 'retinanet_r50.py'
    resnet.write_text("model = dict(type='RetinaNet', backbone=dict(type='ResNet', depth=50))\n")
    for argv, names in (
        ([str(resnet)], ["'ResNet'", 'model.backbone.type']),
        ([str(tmp_path / 'missing.py')], ['missing.py', 'no such file']),
        (['--modes', 'config'], ['CONFIG']),
        (['configs/toy/upernet_hst-vit-ti_toy.py', '--model', 'detector'], ['--model backbone']),
    ):
        with pytest.raises(SystemExit) as exc:
            cli.parse_args(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith('benchmark') or 'error:' in err
        assert all(n in err for n in names), err
