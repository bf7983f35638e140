"""Command line of the benchmark: HST vs. full fine-tuning vs. the frozen-trunk probe.

Two models (``--model``): ``backbone`` (default), the backbones alone; ``detector``, the
whole Mask R-CNN of each mode's config on a synthetic COCO-like batch (needs mmdet). The
rows are those of :mod:`workshop.benchmark.modes`: exactly those ``--modes`` names (lever
and checkpointed rows only with ``--levers on`` / ``--cp on|both``), all on the same timm
ViT trunk. A positional CONFIG adds its backbone (row ``config``, :mod:`.config`) and
gives the trunk, side network and input size.

Per row: trainable / total parameters, GFLOPs of a batch-1 forward, inference images/s,
seconds per training step (forward + loss + backward + optimizer step), its first call
apart, peak tensor memory and peak RSS, and what autograd saves for backward per part of
the model (:mod:`workshop.benchmark.saved`); for the rows ``--profile`` names, where the
time goes per part (:mod:`workshop.benchmark.profile`). Speed ratios come from rounds and
are printed only when the rounds agree within ``--margin`` (:mod:`workshop.benchmark.ratios`).
Each row runs in its own process (this module re-run with a hidden ``--_worker MODE``), so the
memory peaks are independent of each other and of the order of the rows.

Usage::

    python -m workshop.benchmark.cli --trunk vit_base_patch16_224 --img-size 512 \\
        --batch 2 --json bench.json

    # the backbone of a config (row `config`), at the input size of its training pipeline
    python -m workshop.benchmark.cli configs/hst/upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512.py

    # the rows named, timed in 3 interleaved rounds; a profile of hst_lean per part
    python -m workshop.benchmark.cli --modes hst_lean hst_k6 full trunk --interleave 3

    # the whole Mask R-CNN of each mode
    python -m workshop.benchmark.cli --model detector --img-size 512 --batch 2

    # a tiny trunk, for a smoke test on the CPU
    python -m workshop.benchmark.cli --trunk vit_tiny_patch16_224 \\
        --trunk-kwargs '{"depth": 4, "embed_dim": 64, "num_heads": 2}' \\
        --embed-dims 16 32 48 64 --num-heads 1 2 3 4 --img-size 64 --device cpu

(``python tools/analysis/benchmark.py`` takes the same arguments.) The JSON holds one
object per row plus ``meta`` (device, versions, threads, load average, date, arguments and
the ratios of :mod:`workshop.benchmark.ratios`); stdout gets the markdown report.

On a shared CPU machine, check each row's ``cpu_share`` (the fraction of its threads' CPU
time the row actually got while timed; 1.0 = uncontended): timings of rows with different
shares are not comparable.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from workshop.arg_types import non_negative_int, positive_int

from .modes import ALL_MODES, CONFIG_MODE, DEFAULT_MODES, modes_to_run, renamed
from .report import DEFAULT_MARGIN, compute_ratios, format_report

__all__ = ['main', 'modes_to_run', 'parse_args', 'run_all', 'run_worker']

WORKER_MODULE = 'workshop.benchmark.cli'
# The worker that times every row in one process (--interleave).
INTERLEAVE_WORKER = 'interleave'


# ---- command line ------------------------------------------------------------------------
def _json_dict(text: str) -> dict:
    """An argparse type: a JSON object."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f'expected a JSON object, got {text!r}')
    return value


# The benchmark's trunk, side network and input without a CONFIG (configs/_base_/hst-vit-b.py).
DEFAULTS = dict(
    trunk='vit_base_patch16_224',
    trunk_kwargs={},
    embed_dims=[64, 128, 256, 384],
    num_heads=[2, 4, 8, 12],
    img_size=512,
)


def _fail(p: argparse.ArgumentParser, message: str) -> None:
    """Exit 2 with ``error: message`` on one line (argparse's ``error`` adds the usage)."""
    p.exit(2, f'{p.prog}: error: {message}\n')


def _fill_defaults(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The arguments not given, from the CONFIG (if any), else :data:`DEFAULTS`; the rows.

    Sets ``args.config_backbone`` (the CONFIG's ``model.backbone``, or None). Exits with a
    one-line error for a CONFIG the benchmark cannot measure.
    """
    from .config import BenchmarkConfigError, read_config

    found = dict(DEFAULTS)
    args.config_backbone = None
    if args.config:
        if args.model == 'detector':
            _fail(p, "CONFIG measures the config's backbone: use it with --model backbone")
        try:
            cfg = read_config(args.config)
        except BenchmarkConfigError as e:
            _fail(p, str(e))
        backbone = cfg['backbone']
        args.config_backbone = backbone
        found.update(trunk=backbone.get('trunk', found['trunk']))
        found.update(trunk_kwargs=dict(backbone.get('trunk_kwargs') or {}))
        if backbone['type'] == 'HST':
            found.update(
                embed_dims=list(backbone.get('embed_dims', found['embed_dims'])),
                num_heads=list(backbone.get('num_heads', found['num_heads'])),
            )
        if cfg['img_size']:
            found['img_size'] = cfg['img_size']
    for key, value in found.items():
        if getattr(args, key) is None:
            setattr(args, key, copy.deepcopy(value))  # not the module's lists and dicts
    if args.modes is None:
        args.modes = ([CONFIG_MODE] if args.config else []) + list(DEFAULT_MODES)
    if CONFIG_MODE in args.modes and not args.config:
        _fail(p, '--modes config: the row of a CONFIG; give the config file first')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The benchmark's arguments (``sys.argv[1:]`` when ``argv`` is None)."""
    p = argparse.ArgumentParser(
        description='Parameters, FLOPs, speed and memory of HST vs. full fine-tuning vs. '
        'the frozen-trunk probe (backbones alone, or whole Mask R-CNNs).'
    )
    p.add_argument(
        'config',
        nargs='?',
        default=None,
        help='an MMDetection / MMSegmentation config whose backbone (HST or ViTPyramid) is '
        'measured (row "config"); its trunk, side network and training input size become '
        'the defaults of --trunk, --trunk-kwargs, --embed-dims, --num-heads and --img-size',
    )
    p.add_argument(
        '--model',
        choices=('backbone', 'detector'),
        default='backbone',
        help='backbone: the backbones alone (no mmdet needed); detector: the '
        'whole Mask R-CNN of each mode (needs mmdet)',
    )
    p.add_argument('--trunk', default=None, help=f'timm ViT name (default {DEFAULTS["trunk"]})')
    p.add_argument(
        '--trunk-kwargs',
        type=_json_dict,
        default=None,
        help='extra timm.create_model arguments as JSON, e.g. \'{"depth": 4}\'',
    )
    p.add_argument(
        '--embed-dims',
        type=positive_int,
        nargs='+',
        default=None,
        help=f'HST side-network width per stage (default {DEFAULTS["embed_dims"]})',
    )
    p.add_argument(
        '--num-heads',
        type=positive_int,
        nargs='+',
        default=None,
        help=f'HST cross-attention heads per stage (default {DEFAULTS["num_heads"]})',
    )
    p.add_argument(
        '--img-size',
        type=positive_int,
        default=None,
        help=f'square input side (px; default {DEFAULTS["img_size"]})',
    )
    p.add_argument(
        '--batch', type=positive_int, default=2, help='batch size of the speed and memory runs'
    )
    p.add_argument('--iters', type=positive_int, default=5, help='timed iterations')
    p.add_argument('--warmup', type=non_negative_int, default=2, help='untimed iterations first')
    p.add_argument(
        '--modes',
        nargs='+',
        type=renamed,
        choices=ALL_MODES,
        default=None,
        help='the rows to run, exactly these (default: '
        + ' '.join(DEFAULT_MODES)
        + '; with a CONFIG, config first)',
    )
    p.add_argument(
        '--cp',
        choices=('off', 'on', 'both'),
        default='off',
        help='activation checkpointing rows of hst and full when named: off (default), on '
        '(hst_cp, hst_cp_side and full_cp replace hst and full), or both',
    )
    p.add_argument(
        '--levers',
        choices=('off', 'on'),
        default='off',
        help='on: with hst named, its exact lever rows (hst_ref, hst_fold, hst_rc_side, '
        'hst_lean) around it, each adding one optimisation to the row before',
    )
    p.add_argument(
        '--profile',
        nargs='*',
        type=renamed,
        choices=ALL_MODES,
        default=['hst_lean', 'trunk'],
        help='rows (those that run) whose time is also profiled per part (default: '
        'hst_lean trunk; none: --profile with no row)',
    )
    p.add_argument(
        '--device', choices=('cpu', 'cuda'), default=None, help='default: cuda if available'
    )
    p.add_argument(
        '--amp',
        choices=('off', 'bf16'),
        default='off',
        help='autocast (bf16) for the timed forward passes (meant for cuda)',
    )
    p.add_argument(
        '--threads',
        type=positive_int,
        default=None,
        help="torch.set_num_threads in every mode (default: torch's own)",
    )
    p.add_argument(
        '--interleave',
        type=non_negative_int,
        default=0,
        help='N > 0: time the rows again in one process, N rounds round-robin, and report '
        "those medians and the ratios' per-round spread (each row's own-process times stay "
        'in the JSON as *_alone); for machines whose load drifts during a run',
    )
    p.add_argument(
        '--margin',
        type=float,
        default=DEFAULT_MARGIN,
        help='a speed ratio is printed only if its rounds spread (max - min) by at most this '
        'share of their median (default %(default)s); else "not measured"',
    )
    p.add_argument('--json', default=None, help='write the results here')
    p.add_argument('--_worker', default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    _fill_defaults(p, args)
    if len(args.embed_dims) != len(args.num_heads):
        p.error(
            f'--embed-dims {args.embed_dims} and --num-heads {args.num_heads} need one '
            f'entry per stage each'
        )
    return args


# ---- the parent: one worker per row, then the report -------------------------------------
def _worker_env() -> Dict[str, str]:
    """This environment, with the folders this ``workshop`` and this ``hst_mm`` were imported
    from first on ``PYTHONPATH``.

    ``python -m`` finds packages on the path only, so without this a worker started from a
    checkout (``tools/analysis/benchmark.py`` puts it on ``sys.path``) could import another,
    installed ``hst_mm``, or find no ``workshop`` at all.
    """
    import hst_mm

    roots = [str(Path(m.__file__).resolve().parents[1]) for m in (sys.modules['workshop'], hst_mm)]
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        dict.fromkeys([*roots, *filter(None, env.get('PYTHONPATH', '').split(os.pathsep))])
    )
    return env


def run_worker(mode: str, argv: Sequence[str]) -> Dict[str, object]:
    """Run ``mode`` in a fresh process; its last stdout line is its JSON result.

    A failed worker gives ``{'row': {'error': ...}, 'env': {}}`` with the end of its output.
    """
    cmd = [sys.executable, '-m', WORKER_MODULE, *argv, '--_worker', mode]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_worker_env())
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    tail = '\n'.join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    return {'row': {'error': f'exit {proc.returncode}: {tail}'}, 'env': {}}


def _loadavg() -> Optional[List[float]]:
    """The 1/5/15-minute load averages, or None where the system has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _version(package: str) -> Optional[str]:
    """``package``'s installed version, or None."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _apply_interleaved(results: Dict[str, dict], argv: Sequence[str]) -> None:
    """Replace the rows' speeds by those of one interleaved worker (``--interleave``).

    The own-process medians move to ``train_step_s_alone`` / ``infer_img_per_s_alone``; the
    rows that failed in their own processes are left out.
    """
    print('[benchmark] interleaved timing ...', file=sys.stderr, flush=True)
    ok = [m for m, r in results.items() if 'error' not in r]
    if not ok:
        return
    # Exactly the rows that ran (a row that failed alone would fail the shared process).
    out = run_worker(INTERLEAVE_WORKER, [*argv, '--modes', *ok, '--levers', 'off', '--cp', 'off'])
    if 'error' in out['row']:
        for r in results.values():
            r.setdefault('interleave_error', out['row']['error'])
        return
    batch = parse_args(argv).batch
    for mode, times in out['row'].items():
        r = results.get(mode)
        if not r or 'error' in r:
            continue
        r['infer_img_per_s_alone'] = r['infer_img_per_s']
        r['train_step_s_alone'] = r['train_step_s']
        r['interleaved_times_s'] = times
        r['first_call_s_alone'] = r.get('first_call_s')
        r['first_call_s'] = times['first_call_s']
        r['infer_img_per_s'] = batch / statistics.median(times['infer_times_s'])
        if times['train_times_s']:
            r['train_step_s'] = statistics.median(times['train_times_s'])


def run_all(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run every row in its own worker, write the JSON, print the report.

    Returns the exit status: 1 if a row failed, else 0.
    """
    meta = {
        'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'loadavg_start': _loadavg(),
        'cpu_count': os.cpu_count(),
        'python': sys.version.split()[0],
        'args': {k: v for k, v in vars(args).items() if k != '_worker'},
    }
    results, env = {}, {}
    for mode in modes_to_run(args):
        start = time.perf_counter()
        print(f'[benchmark] {mode} ...', file=sys.stderr, flush=True)
        out = run_worker(mode, argv)
        results[mode] = out['row']
        env = env or out['env']
        status = 'FAILED' if 'error' in out['row'] else 'done'
        print(
            f'[benchmark] {mode} {status} in {time.perf_counter() - start:.0f} s',
            file=sys.stderr,
            flush=True,
        )
    if args.interleave:
        _apply_interleaved(results, argv)
    # Placeholders where every worker failed before reporting its environment.
    meta.update(
        {
            'device': 'unknown',
            'device_name': None,
            'torch_threads': None,
            'torch': _version('torch'),
            'timm': _version('timm'),
        },
        **env,
    )
    meta.update(
        loadavg_end=_loadavg(),
        flops='batch-1 forward, torch.utils.flop_counter.FlopCounterMode, multiply-add = 2 FLOPs',
        memory='cuda: max_memory_allocated'
        if meta['device'].startswith('cuda')
        else 'cpu: peak RSS (VmHWM) of one process per mode',
    )
    ratios = compute_ratios(results, margin=args.margin)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump({**results, 'meta': {**meta, 'ratios': ratios}}, f, indent=2)
    print(format_report(results, ratios, meta))
    failed = [m for m, r in results.items() if 'error' in r]
    for mode in failed:
        print(f'[benchmark] {mode} failed:\n{results[mode]["error"]}', file=sys.stderr)
    return 1 if failed else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark (parent) or one row (``--_worker MODE``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args._worker:
        if args._worker == INTERLEAVE_WORKER:
            from .measure import interleaved_times

            result = {'row': interleaved_times(modes_to_run(args), args), 'env': {}}
            print(json.dumps(result), flush=True)
            return 0
        if args._worker not in ALL_MODES:
            raise SystemExit(f'unknown worker mode {args._worker!r}')
        from .measure import measure_mode

        result = measure_mode(args._worker, args)
        # Anything printed before (e.g. by timm) is ignored: the parent reads the last line.
        print(json.dumps(result), flush=True)
        return 0
    return run_all(args, argv)


if __name__ == '__main__':
    sys.exit(main())
