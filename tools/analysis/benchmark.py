#!/usr/bin/env python
"""Side-by-side cost of HST, full fine-tuning and the frozen-trunk probe (backbones only).

Modes (same timm ViT trunk in all of them):

* ``hst``           ``HSTBackbone``: frozen trunk + meta tokens + T-Bridge + side network;
* ``full_ft``       ``ViTSimplePyramid(frozen=False)``: the whole ViT is trained;
* ``frozen_probe``  ``ViTSimplePyramid(frozen=True)``: only the simple pyramid is trained;
* ``hst_cp``, ``full_ft_cp``: the same with activation checkpointing of the trunk blocks
  (``--cp on|both``; the probe has no ``_cp`` row: no gradient flows through its trunk).

Per mode: trainable / total parameters, GFLOPs of a batch-1 forward, inference images/s,
seconds per training step (forward + loss + backward + AdamW step) and memory. Each mode
runs in its own process (this script re-invoked with a hidden ``--_worker MODE``), so the
memory peaks are independent of each other and of the order of the modes.

Usage::

    python tools/analysis/benchmark.py --trunk vit_base_patch16_224 --img-size 512 \\
        --batch 2 --json bench.json

    # a tiny trunk, for a smoke test on the CPU
    python tools/analysis/benchmark.py --trunk vit_tiny_patch16_224 \\
        --trunk-kwargs '{"depth": 4, "embed_dim": 64, "num_heads": 2}' \\
        --embed-dims 16 32 48 64 --num-heads 1 2 3 4 --img-size 64 --device cpu

The JSON holds one object per mode plus ``meta`` (device, versions, threads, load average,
date, arguments and the ratios below); stdout gets a markdown table and the ratios the
project's targets are stated in (HST train step <= 0.8x and peak memory <= 0.6x of full
fine-tuning, inference >= 0.95x of the frozen-trunk probe).

On a shared CPU machine, check each row's ``cpu_share`` (the fraction of its threads' CPU
time the mode actually got while timed; 1.0 = uncontended): timings of rows with
different shares are not comparable.

Only torch and timm are needed (``hst_mm.models`` is loaded without ``hst_mm/__init__``
where mmengine is missing).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
import types
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

# Note: the parent process deliberately does not import torch (see ``peak_rss_mb``); torch
# is imported inside the worker functions only.

ROOT = Path(__file__).resolve().parents[2]

BASE_MODES = ('hst', 'full_ft', 'frozen_probe')
CP_MODES = {'hst': 'hst_cp', 'full_ft': 'full_ft_cp'}   # modes that have a checkpointed row
METRICS = ('trainable_params', 'total_params', 'gflops', 'infer_img_per_s', 'train_step_s',
           'peak_mem_mb', 'model_mem_mb')

# (metric, numerator mode, denominator mode, comparison, target). Pairs whose rows were not
# run are skipped. 'train_increment_mb' is peak_mem_mb - model_mem_mb (derived).
RATIOS = (
    ('train_step_s', 'hst', 'full_ft', '<=', 0.8),
    ('peak_mem_mb', 'hst', 'full_ft', '<=', 0.6),
    ('train_increment_mb', 'hst', 'full_ft', '<=', 0.6),
    ('train_step_s', 'hst_cp', 'full_ft_cp', '<=', 0.8),
    ('peak_mem_mb', 'hst_cp', 'full_ft_cp', '<=', 0.6),
    ('train_increment_mb', 'hst_cp', 'full_ft_cp', '<=', 0.6),
    ('train_step_s', 'hst_cp', 'full_ft', '<=', 0.8),
    ('peak_mem_mb', 'hst_cp', 'full_ft', '<=', 0.6),
    ('train_increment_mb', 'hst_cp', 'full_ft', '<=', 0.6),
    ('infer_img_per_s', 'hst', 'frozen_probe', '>=', 0.95),
)


# ---- command line ------------------------------------------------------------------------
def _json_dict(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f'expected a JSON object, got {text!r}')
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected an integer >= 1, got {text}')
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'expected an integer >= 0, got {text}')
    return value


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description='Parameters, FLOPs, speed and memory of HST vs. full fine-tuning vs. '
                    'the frozen-trunk probe (backbones only).')
    p.add_argument('--trunk', default='vit_base_patch16_224', help='timm ViT name')
    p.add_argument('--trunk-kwargs', type=_json_dict, default={},
                   help='extra timm.create_model arguments as JSON, e.g. \'{"depth": 4}\'')
    p.add_argument('--embed-dims', type=_positive_int, nargs='+', default=[64, 128, 256, 384],
                   help='HST side-network width per stage')
    p.add_argument('--num-heads', type=_positive_int, nargs='+', default=[2, 4, 8, 12],
                   help='HST cross-attention heads per stage')
    p.add_argument('--img-size', type=_positive_int, default=512, help='square input side (px)')
    p.add_argument('--batch', type=_positive_int, default=2,
                   help='batch size of the speed and memory runs')
    p.add_argument('--iters', type=_positive_int, default=5, help='timed iterations')
    p.add_argument('--warmup', type=_non_negative_int, default=2, help='untimed iterations first')
    p.add_argument('--modes', nargs='+', choices=BASE_MODES, default=list(BASE_MODES),
                   help='which modes to run')
    p.add_argument('--cp', choices=('off', 'on', 'both'), default='both',
                   help='activation checkpointing of the trunk blocks: off, on (hst_cp and '
                        'full_ft_cp replace hst and full_ft), or both rows')
    p.add_argument('--device', choices=('cpu', 'cuda'), default=None,
                   help='default: cuda if available')
    p.add_argument('--amp', choices=('off', 'bf16'), default='off',
                   help='autocast (bf16) for the timed forward passes (meant for cuda)')
    p.add_argument('--threads', type=_positive_int, default=None,
                   help='torch.set_num_threads in every mode (default: torch\'s own)')
    p.add_argument('--json', default=None, help='write the results here')
    p.add_argument('--_worker', default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if len(args.embed_dims) != len(args.num_heads):
        p.error(f'--embed-dims {args.embed_dims} and --num-heads {args.num_heads} need one '
                f'entry per stage each')
    return args


def modes_to_run(args: argparse.Namespace) -> List[str]:
    """The rows, in table order: each requested mode, then its ``_cp`` twin if asked for."""
    rows = []
    for mode in args.modes:
        if args.cp != 'on' or mode not in CP_MODES:
            rows.append(mode)
        if args.cp != 'off' and mode in CP_MODES:
            rows.append(CP_MODES[mode])
    return rows


# ---- memory of this process --------------------------------------------------------------
def _proc_status_mb(field: str) -> Optional[float]:
    """A ``kB`` field of /proc/self/status (Linux) in MB, or None elsewhere."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def current_rss_mb() -> float:
    """Resident set size now, in MB (falls back to the peak where /proc is missing)."""
    rss = _proc_status_mb('VmRSS')
    return rss if rss is not None else peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MB.

    On Linux this is ``VmHWM``, not ``getrusage().ru_maxrss``: the kernel carries the
    parent's high-water mark over into ``ru_maxrss`` across fork + exec, so a worker
    started from a large process (pytest with torch loaded) would report at least the
    parent's size. Elsewhere ``ru_maxrss`` (KB on Linux, bytes on macOS).
    """
    hwm = _proc_status_mb('VmHWM')
    if hwm is not None:
        return hwm
    import resource
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == 'darwin' else maxrss / 1024


# ---- one mode, inside a worker process ---------------------------------------------------
def import_models() -> types.ModuleType:
    """``hst_mm.models``, also where its parent package cannot be imported.

    ``hst_mm/__init__`` registers the OpenMMLab wrappers and so needs mmengine, while
    ``hst_mm.models`` needs only torch and timm: if the normal import fails, an empty
    stand-in parent package lets ``hst_mm.models`` load without running ``__init__``.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module('hst_mm.models')
    except ImportError:
        pass
    for name in [n for n in sys.modules if n == 'hst_mm' or n.startswith('hst_mm.')]:
        del sys.modules[name]
    package = types.ModuleType('hst_mm')
    package.__path__ = [str(ROOT / 'hst_mm')]
    sys.modules['hst_mm'] = package
    return importlib.import_module('hst_mm.models')


def build_model(mode: str, args: argparse.Namespace):
    """The backbone of ``mode`` (``hst``, ``full_ft``, ``frozen_probe``, ``*_cp``)."""
    models = import_models()
    base = mode[:-3] if mode.endswith('_cp') else mode
    common = dict(trunk=args.trunk, trunk_kwargs=args.trunk_kwargs,
                  with_cp=mode.endswith('_cp'))
    if base == 'hst':
        return models.HSTBackbone(embed_dims=args.embed_dims, num_heads=args.num_heads,
                                  **common)
    return models.ViTSimplePyramid(frozen=base == 'frozen_probe', **common)


def count_params(model) -> Dict[str, int]:
    return {'trainable_params': sum(p.numel() for p in model.parameters() if p.requires_grad),
            'total_params': sum(p.numel() for p in model.parameters())}


def count_gflops(model, img_size: int, device) -> float:
    """GFLOPs of one batch-1 forward, a multiply-add counted as 2 FLOPs.

    ``FlopCounterMode`` counts matmuls and convolutions (not norms, softmax or elementwise
    ops). It has no formula for the CPU's fused attention kernel, so the count runs on the
    math SDPA backend, whose attention matmuls it does count, on every device alike.
    """
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, img_size, img_size, device=device)
    model.eval()
    with torch.inference_mode(), sdpa_kernel([SDPBackend.MATH]), \
            FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 1e9


def _timed(fn: Callable[[], None], warmup: int, iters: int, sync: Callable[[], None]
           ) -> List[float]:
    """Seconds per call of ``fn`` over ``iters`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def measure_mode(mode: str, args: argparse.Namespace) -> Dict[str, object]:
    """Build ``mode``'s backbone and measure it; returns its row and the environment."""
    import timm
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available')
    cuda = device.type == 'cuda'
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    amp = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.amp == 'bf16' \
        else nullcontext
    torch.manual_seed(0)

    model = build_model(mode, args).to(device)
    # Memory held once the model exists: the baseline the training run adds to.
    # CUDA: tensors allocated; CPU: the process's RSS (interpreter + libraries + weights).
    model_mem_mb = torch.cuda.memory_allocated(device) / 2**20 if cuda else current_rss_mb()
    row: Dict[str, object] = {'with_cp': mode.endswith('_cp'), **count_params(model)}
    row['gflops'] = count_gflops(model, args.img_size, device)

    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device)  # (B, 3, S, S)

    model.eval()

    def infer() -> None:
        with torch.inference_mode(), amp():
            model(x)

    # CPU seconds / wall seconds of the timed phases, over the threads torch may use.
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    infer_times = _timed(infer, args.warmup, args.iters, sync)

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def train_step() -> None:
        with amp():
            outs = model(x)
        loss = sum(o.float().mean() for o in outs)     # touches every output level
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    train_times = _timed(train_step, args.warmup, args.iters, sync)
    cpu_share = (time.process_time() - cpu_start) / (
        (time.perf_counter() - wall_start) * torch.get_num_threads())
    # CPU: the peak over the whole process, which the training steps set (they hold the
    # activations, gradients and AdamW state on top of everything inference needs).
    peak_mem_mb = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else peak_rss_mb()

    row.update(infer_img_per_s=args.batch / statistics.median(infer_times),
               train_step_s=statistics.median(train_times),
               peak_mem_mb=peak_mem_mb, model_mem_mb=model_mem_mb,
               # On CUDA the CPU mostly waits for the GPU: no contention measure there.
               cpu_share=None if cuda else round(cpu_share, 3),
               infer_times_s=infer_times, train_times_s=train_times)
    env = {'device': str(device),
           'device_name': torch.cuda.get_device_name(device) if cuda else None,
           'torch': torch.__version__, 'timm': timm.__version__,
           'torch_threads': torch.get_num_threads()}
    return {'row': row, 'env': env}


# ---- the parent: one worker per mode, then the report ------------------------------------
def run_worker(mode: str, argv: Sequence[str]) -> Dict[str, object]:
    """Run ``mode`` in a fresh process; its last stdout line is its JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, '--_worker', mode]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    tail = '\n'.join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    return {'row': {'error': f'exit {proc.returncode}: {tail}'}, 'env': {}}


def train_increment_mb(row: Dict[str, object]) -> float:
    """Memory the training run added to the built model (MB)."""
    return row['peak_mem_mb'] - row['model_mem_mb']


def compute_ratios(results: Dict[str, dict]) -> List[dict]:
    """The target ratios whose two rows were measured."""
    out = []
    for metric, num, den, op, target in RATIOS:
        a, b = results.get(num), results.get(den)
        if not a or not b or 'error' in a or 'error' in b:
            continue
        get = train_increment_mb if metric == 'train_increment_mb' else (lambda r: r[metric])
        value = get(a) / get(b)
        met = value <= target if op == '<=' else value >= target
        out.append({'metric': metric, 'num': num, 'den': den, 'value': value,
                    'target': f'{op} {target}', 'met': met})
    return out


def format_report(results: Dict[str, dict], ratios: List[dict], meta: dict) -> str:
    """A markdown table of the rows, one of the ratios, and how they were measured."""
    a = meta['args']
    cuda = meta['device'].startswith('cuda')
    head = (f"### {a['trunk']} at {a['img_size']}x{a['img_size']}, batch {a['batch']}, "
            f"{meta['device_name'] or meta['device']}"
            f"{'' if cuda else ', %s threads' % meta['torch_threads']}"
            f"{', bf16 autocast' if a['amp'] == 'bf16' else ', fp32'}")
    lines = [head, '',
             '| mode | trainable params (M) | total params (M) | GFLOPs | infer img/s '
             '| train step (s) | peak mem (MB) | model mem (MB) | train +mem (MB) |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for mode, r in results.items():
        if 'error' in r:
            lines.append(f'| {mode} | failed (see stderr) | | | | | | | |')
            continue
        lines.append(f"| {mode} | {r['trainable_params'] / 1e6:.2f} | "
                     f"{r['total_params'] / 1e6:.2f} | {r['gflops']:.4g} | "
                     f"{r['infer_img_per_s']:.3g} | {r['train_step_s']:.3g} | "
                     f"{r['peak_mem_mb']:.0f} | {r['model_mem_mb']:.0f} | "
                     f"{train_increment_mb(r):.0f} |")
    if ratios:
        lines += ['', '| ratio | value | target | met |', '|---|---:|---|---|']
        for q in ratios:
            lines.append(f"| {q['num']}.{q['metric']} / {q['den']}.{q['metric']} | "
                         f"{q['value']:.3f} | {q['target']} | {'yes' if q['met'] else 'no'} |")
    mem = ('torch.cuda.max_memory_allocated during the training steps; model mem = '
           'memory_allocated once the model is on the device' if cuda else
           "peak RSS of the mode's own process (VmHWM); model mem = RSS once the model is "
           'built (includes interpreter and libraries)')
    lines += ['',
              f"GFLOPs: one batch-1 forward at {a['img_size']}x{a['img_size']} counted by "
              'torch.utils.flop_counter.FlopCounterMode (multiply-add = 2 FLOPs; matmuls, '
              'convolutions and attention only).',
              f"Speed: median over {a['iters']} iterations after {a['warmup']} warm-up, "
              f"batch {a['batch']}; a train step is forward + sum of output means + backward "
              '+ AdamW step over the trainable parameters.',
              f'Memory: {mem}; train +mem = peak - model.',
              *([] if cuda else [
                  'CPU share while timed (1.0 = uncontended; rows with different shares are '
                  'not comparable): ' + ', '.join(f"{m} {r['cpu_share']:.2f}" for m, r in
                                                  results.items() if 'error' not in r) + '.']),
              f"Load average (1/5/15 min) at start {meta['loadavg_start']}, "
              f"at end {meta['loadavg_end']}; {meta['cpu_count']} CPUs."]
    return '\n'.join(lines)


def _loadavg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def run_all(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run every row in its own worker, write the JSON, print the report."""
    meta = {'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
            'loadavg_start': _loadavg(), 'cpu_count': os.cpu_count(),
            'python': sys.version.split()[0],
            'args': {k: v for k, v in vars(args).items() if k != '_worker'}}
    results, env = {}, {}
    for mode in modes_to_run(args):
        start = time.perf_counter()
        print(f'[benchmark] {mode} ...', file=sys.stderr, flush=True)
        out = run_worker(mode, argv)
        results[mode] = out['row']
        env = env or out['env']
        status = 'FAILED' if 'error' in out['row'] else 'done'
        print(f'[benchmark] {mode} {status} in {time.perf_counter() - start:.0f} s',
              file=sys.stderr, flush=True)
    meta.update({'device': 'unknown', 'device_name': None, 'torch_threads': None,
                 'torch': _version('torch'), 'timm': _version('timm')}, **env)
    meta.update(loadavg_end=_loadavg(),
                flops='batch-1 forward, torch.utils.flop_counter.FlopCounterMode, '
                      'multiply-add = 2 FLOPs',
                memory='cuda: max_memory_allocated' if meta['device'].startswith('cuda')
                else 'cpu: peak RSS (VmHWM) of one process per mode')
    ratios = compute_ratios(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump({**results, 'meta': {**meta, 'ratios': ratios}}, f, indent=2)
    print(format_report(results, ratios, meta))
    failed = [m for m, r in results.items() if 'error' in r]
    for mode in failed:
        print(f'[benchmark] {mode} failed:\n{results[mode]["error"]}', file=sys.stderr)
    return 1 if failed else 0


def _version(package: str) -> Optional[str]:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args._worker:
        if args._worker not in BASE_MODES + tuple(CP_MODES.values()):
            raise SystemExit(f'unknown worker mode {args._worker!r}')
        result = measure_mode(args._worker, args)
        # Anything printed before (e.g. by timm) is ignored: the parent reads the last line.
        print(json.dumps(result), flush=True)
        return 0
    return run_all(args, argv)


if __name__ == '__main__':
    sys.exit(main())
