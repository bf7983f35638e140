"""The GPU check's parent process: each part in a subprocess with a time limit, part 3
(the benchmark), the report and the JSON.

A worker is ``python -m workshop.gpu_check.cli ... --_worker PART`` run from the checkout;
its last stdout line is its JSON result. A part that fails or times out is reported and
the others still run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

from hst_mm.atomic_write import atomic_write_text
from workshop.benchmark.modes import LADDER_MODES

from .parity import format_case
from .throughput import ROOT, TRAIN_CONFIGS, train_ratios

PARTS = ('parity', 'train', 'benchmark')
# The module a worker runs, and the benchmark's command line (part 3).
WORKER_MODULE = 'workshop.gpu_check.cli'
BENCHMARK_MODULE = 'workshop.benchmark.cli'
# The benchmark's tiny trunk is 64 wide (tests/test_benchmark.py explains why).
TINY_BENCH_ARGS = [
    '--trunk',
    'vit_tiny_patch16_224',
    '--trunk-kwargs',
    json.dumps({'depth': 4, 'embed_dim': 64, 'num_heads': 2}),
    '--embed-dims',
    '16',
    '32',
    '48',
    '64',
    '--num-heads',
    '1',
    '2',
    '3',
    '4',
    '--img-size',
    '64',
    '--batch',
    '2',
    '--iters',
    '1',
    '--warmup',
    '1',
]

DEFAULT_BUDGET_S = 540  # the whole default run, so it ends inside 9 minutes
DEFAULT_TIMEOUT_S = 240  # one subprocess at most
MIN_PART_S = 10  # a subprocess is not started with less time left than this


def _version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _finite_numbers(value) -> bool:
    """Whether every float inside ``value`` (nested dicts / lists) is finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite_numbers(v) for v in value)
    return True


class Deadline:
    """The run's time budget: how long the next subprocess may take."""

    def __init__(self, budget_s: float, cap_s: float):
        self.end = time.monotonic() + budget_s
        self.cap_s = cap_s

    def limit(self) -> float:
        """Seconds the next subprocess gets: the cap, or what is left of the budget."""
        return min(self.cap_s, self.end - time.monotonic())


def run_subprocess(cmd: List[str], timeout_s: float) -> dict:
    """Run ``cmd`` in its own process group; kill the whole group at ``timeout_s``.

    Returns ``{'rc', 'stdout', 'stderr', 'elapsed_s', 'timed_out'}``. The group kill also
    ends the benchmark's own workers, which would otherwise keep the GPU busy.
    """
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stdout, stderr = proc.communicate()
    return {
        'rc': proc.returncode,
        'stdout': stdout,
        'stderr': stderr,
        'elapsed_s': time.perf_counter() - start,
        'timed_out': timed_out,
    }


def _tail(text: str, lines: int = 15) -> str:
    return '\n'.join(text.strip().splitlines()[-lines:])


def run_worker(task: str, args: argparse.Namespace, deadline: Deadline) -> dict:
    """The GPU check as ``--_worker task``; its last stdout line is its JSON result.

    Returns ``{'result': ...}`` or ``{'error': ...}``, with ``elapsed_s``.
    """
    limit = deadline.limit()
    if limit < MIN_PART_S:
        return {
            'error': f'not run: the time budget (--budget {args.budget:g} s) is spent',
            'elapsed_s': 0.0,
        }
    cmd = [
        sys.executable,
        '-m',
        WORKER_MODULE,
        '--device',
        args.device,
        '--iters',
        str(args.iters),
        '--warmup',
        str(args.warmup),
        *(['--tiny'] if args.tiny else []),
        '--_worker',
        task,
    ]
    res = run_subprocess(cmd, limit)
    lines = res['stdout'].strip().splitlines()
    if res['timed_out']:
        error = f'timed out after {limit:.0f} s:\n{_tail(res["stdout"] + res["stderr"])}'
    elif res['rc'] != 0 or not lines:
        error = f'exit status {res["rc"]}:\n{_tail(res["stdout"] + res["stderr"])}'
    else:
        try:
            return {'result': json.loads(lines[-1]), 'elapsed_s': res['elapsed_s']}
        except json.JSONDecodeError:
            error = f'no JSON result line:\n{_tail(res["stdout"] + res["stderr"])}'
    return {'error': error, 'elapsed_s': res['elapsed_s']}


def log(message: str) -> None:
    print(f'[gpu_check] {message}', file=sys.stderr, flush=True)


def run_parity(args: argparse.Namespace, deadline: Deadline) -> dict:
    """Part 1 in a worker; the part passes when every case does."""
    out = run_worker('parity', args, deadline)
    if 'error' in out:
        return {'status': 'fail', 'error': out['error'], 'elapsed_s': out['elapsed_s']}
    res = out['result']
    ok = res['passed'] == res['total'] and res['total'] > 0
    return {'status': 'pass' if ok else 'fail', 'elapsed_s': out['elapsed_s'], **res}


def run_train(args: argparse.Namespace, deadline: Deadline) -> dict:
    """Part 2: one worker per (task, mode); fails if any row fails or has a non-finite
    loss."""
    tasks, failed = {}, []
    for task, modes in TRAIN_CONFIGS.items():
        rows = {}
        for mode in modes:
            log(f'train {task} {mode} ...')
            out = run_worker(f'train:{task}:{mode}', args, deadline)
            if 'error' in out:
                rows[mode] = {'error': out['error'], 'config': TRAIN_CONFIGS[task][mode]}
                failed.append(f'{task}/{mode}')
                log(f'train {task} {mode} FAILED after {out["elapsed_s"]:.0f} s')
                continue
            row = dict(out['result'], process_s=out['elapsed_s'])
            if not row['loss_finite']:
                row['error'] = 'non-finite loss during the timed steps'
                failed.append(f'{task}/{mode}')
            rows[mode] = row
            log(
                f'train {task} {mode}: {row["it_per_s"]:.3g} it/s, peak '
                f'{row["peak_mem_mb"]:.0f} MB ({out["elapsed_s"]:.0f} s)'
            )
        tasks[task] = {'rows': rows, 'ratios_hst_over_full': train_ratios(rows)}
    return {'status': 'fail' if failed else 'pass', 'failed': failed, 'tasks': tasks}


# Part 3 on CUDA: the ladder (workshop.benchmark.modes.LADDER_MODES) under bf16 autocast at
# 1024x1024, once at batch 1 (the latency a single image sees) and once at batch 16
# (throughput).
CUDA_BENCH_BATCHES = (1, 16)


def benchmark_commands(args: argparse.Namespace, folder: Path) -> Dict[str, List[str]]:
    """The benchmark runs of part 3 by name, each a command writing its JSON into
    ``folder``: on CUDA the ladder at batch 1 and 16 (bf16 autocast); on the CPU one run at
    batch 2 (``--tiny``: the tiny trunk)."""
    base = [sys.executable, '-m', BENCHMARK_MODULE, '--device', args.device]
    if args.tiny:
        return {'batch 2': base + ['--json', str(folder / 'b2.json')] + TINY_BENCH_ARGS}
    if args.device != 'cuda':
        batches, extra = (2,), ['--amp', 'off']
    else:
        batches, extra = CUDA_BENCH_BATCHES, ['--amp', 'bf16', '--modes', *LADDER_MODES]
    return {
        f'batch {b}': base
        + ['--json', str(folder / f'b{b}.json'), '--img-size', '1024', '--batch', str(b)]
        + extra
        for b in batches
    }


def run_benchmark(args: argparse.Namespace, deadline: Deadline) -> dict:
    """Part 3: the backbone benchmark runs (:func:`benchmark_commands`), each a subprocess
    with its own time limit; their JSON and markdown reports. One failed run fails the part;
    the others still run."""
    runs = {}
    with tempfile.TemporaryDirectory(prefix='gpu_check_bench_') as tmp:
        for name, cmd in benchmark_commands(args, Path(tmp)).items():
            runs[name] = _benchmark_run(name, cmd, args, deadline)
    failed = any('error' in run for run in runs.values())
    return {'status': 'fail' if failed else 'pass', 'runs': runs}


def _benchmark_run(name: str, cmd: List[str], args: argparse.Namespace, deadline: Deadline) -> dict:
    """One benchmark command (its JSON path follows ``--json``), within what is left of
    the budget."""
    limit = deadline.limit()
    if limit < MIN_PART_S:
        return {'error': f'not run: the time budget (--budget {args.budget:g} s) is spent'}
    log(f'benchmark, {name} (at most {limit:.0f} s) ...')
    res = run_subprocess(cmd, limit)
    json_path = Path(cmd[cmd.index('--json') + 1])
    result = json.loads(json_path.read_text()) if json_path.exists() else None
    run = {
        'command': shlex.join(cmd[1:]).replace(str(ROOT) + os.sep, ''),
        'elapsed_s': res['elapsed_s'],
        'returncode': res['rc'],
        'report': res['stdout'].strip(),
        'result': result,
    }
    if res['timed_out']:
        run['error'] = f'timed out after {limit:.0f} s; progress:\n{_tail(res["stderr"])}'
    elif res['rc'] != 0 or result is None:
        run['error'] = f'exit status {res["rc"]}:\n{_tail(res["stdout"] + res["stderr"])}'
    return run


def environment(args: argparse.Namespace) -> dict:
    """Versions and the device, for the JSON's ``meta``."""
    import torch

    cuda = args.device == 'cuda'
    return {
        'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'argv': sys.argv[1:],
        'device': args.device,
        'device_name': torch.cuda.get_device_name(0)
        if cuda
        else platform.processor() or platform.machine(),
        'cuda': torch.version.cuda,
        'python': platform.python_version(),
        'cpu_count': os.cpu_count(),
        'versions': {
            d: _version(d)
            for d in (
                'torch',
                'torchvision',
                'timm',
                'numpy',
                'mmengine',
                'mmcv',
                'mmcv-lite',
                'mmdet',
                'mmsegmentation',
                'hst_mm',
            )
        },
        'tiny': args.tiny,
        'iters': args.iters,
        'warmup': args.warmup,
        'budget_s': args.budget,
        'timeout_s': args.timeout,
    }


# ---- the readable report -------------------------------------------------------------------
def format_report(report: dict) -> str:
    """The whole run as plain text."""
    meta = report['meta']
    lines = [
        f'hst_mm GPU check: {meta["device"]} ({meta["device_name"]}), torch '
        f'{meta["versions"]["torch"]} (CUDA {meta["cuda"]}), Python {meta["python"]}'
        f'{", tiny models" if meta["tiny"] else ""}',
        '',
    ]
    parity = report.get('parity', {'status': 'skipped'})
    lines.append(f'[1/3] operator parity: {parity["status"].upper()}')
    if 'cases' in parity:
        lines.append(
            f'  {parity["passed"]}/{parity["total"]} cases pass; mmcv '
            f'{parity["mmcv"]}, operators from {parity["mmcv_ext"]}'
        )
        lines.append(f'  reference: {parity["reference"]}')
        lines.append('  errors are max |result - reference| / max |reference|')
        lines += [format_case(c) for c in parity['cases']]
    if 'error' in parity:
        lines.append('  ' + parity['error'].replace('\n', '\n  '))
    lines.append('')

    train = report.get('train', {'status': 'skipped'})
    lines.append(f'[2/3] training throughput, HST vs full fine-tuning: {train["status"].upper()}')
    for task, block in train.get('tasks', {}).items():
        lines.append(f'  {task}:')
        for mode, row in block['rows'].items():
            if 'it_per_s' not in row:
                lines.append(f'    {mode:<5} FAILED: {row["error"]}'.replace('\n', '\n      '))
                continue
            amp = row['amp_dtype'] or 'float32'
            lines.append(
                f'    {mode:<5} {row["it_per_s"]:7.3f} it/s  {row["step_s_median"] * 1e3:8.1f} '
                f'ms/step  peak {row["peak_mem_mb"]:8.0f} MB  trainable '
                f'{row["trainable_params"] / 1e6:6.2f}M / {row["total_params"] / 1e6:6.2f}M  '
                f'{row["img_size"]}px x{row["batch"]}  {row["optim_wrapper"]} ({amp})'
                f'{"  " + row["error"] if "error" in row else ""}'
            )
        r = block['ratios_hst_over_full']
        if r:
            lines.append(
                f'    HST / full: it/s {r["it_per_s"]:.3f}, step time {r["step_time"]:.3f}, '
                f'peak memory {r["peak_mem"]:.3f}'
            )
    lines.append('')

    bench = report.get('benchmark', {'status': 'skipped'})
    lines.append(f'[3/3] backbone benchmark: {bench["status"].upper()}')
    for name, run in bench.get('runs', {}).items():
        lines.append(f'  {name}:')
        if 'command' in run:
            lines.append(f'  python {run["command"]}  ({run["elapsed_s"]:.0f} s)')
        if run.get('report'):
            lines += ['  ' + line for line in run['report'].splitlines()]
        if 'error' in run:
            lines.append('  ' + run['error'].replace('\n', '\n  '))
    lines.append('')
    lines.append(
        f'overall: {"PASS" if report["passed"] else "FAIL"} in '
        f'{report["elapsed_s"]:.0f} s; failed parts: '
        f'{", ".join(report["failed_parts"]) or "none"}'
    )
    return '\n'.join(lines)


def write_json(report: dict, path: Path) -> None:
    """Write atomically, so a reader (or a kill) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=2))


def run_all(args: argparse.Namespace) -> int:
    """Run the parts not skipped, write the JSON after each, print the report."""
    import torch

    if args.device == 'cuda' and not torch.cuda.is_available():
        print(
            f'gpu_check: --device cuda, but torch {torch.__version__} sees no CUDA device '
            f'(built with CUDA {torch.version.cuda}). Run on a CUDA machine, or use '
            f'--device cpu --tiny for a smoke run.',
            file=sys.stderr,
        )
        return 2
    start = time.perf_counter()
    deadline = Deadline(args.budget, args.timeout)
    out = Path(args.out)
    if not out.is_absolute():
        out = Path.cwd() / out
    report = {'meta': environment(args), 'skipped': sorted(set(args.skip))}
    runners = {'parity': run_parity, 'train': run_train, 'benchmark': run_benchmark}
    for part in PARTS:
        if part in args.skip:
            continue
        log(f'{part} ...')
        report[part] = runners[part](args, deadline)
        log(f'{part}: {report[part]["status"]}')
        _finish(report, start)
        write_json(report, out)
    print(format_report(report))
    print(f'\nJSON: {out}')
    return 0 if report['passed'] else 1


def _finish(report: dict, start: float) -> None:
    """Overall status fields (every run part passed, every number finite)."""
    failed = [p for p in PARTS if p in report and report[p]['status'] != 'pass']
    if not _finite_numbers({p: report[p] for p in PARTS if p in report}):
        failed.append('non-finite numbers')
    report.update(failed_parts=failed, passed=not failed, elapsed_s=time.perf_counter() - start)
