"""Toy Mask R-CNN training speed with hst_mm's torchvision operators vs mmcv's compiled ones.

    python tools/analysis/compare_mmcv_builds.py --compiled-wheel WHEEL [--iters 40]
                                                 [--rounds 2] [--json FILE]

The installed mmcv (the default, pure-Python build with ``mmcv_ext/_ext.py``) and a compiled
mmcv wheel (``MMCV_OPS=compiled bash tools/build_mmcv.sh`` prints its path) are timed side by
side: the compiled wheel is unpacked into a temporary folder put first on ``PYTHONPATH``, so
the same interpreter imports it instead. Each round trains the toy Mask R-CNN
(``configs/toy/...``) for ``--iters`` iterations through ``tools/train.py`` once with each
build, alternating, and reads mmengine's per-iteration ``time`` from the log; the first 5
iterations of each run are dropped (warm-up). The report gives the median seconds per
iteration of each build and their ratio.
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = 'configs/toy/mask-rcnn_hst-vit-ti_fpn_toy.py'
WARMUP = 5


def iteration_times(work_dir: str):
    """Seconds per training iteration that mmengine logged (scalars.json, ``time``)."""
    runs = sorted(glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json')))
    with open(runs[-1]) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r['time'] for r in rows if 'loss' in r and 'time' in r]


def train(iters: int, work_dir: str, pythonpath: str = '') -> list:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (pythonpath, str(ROOT)) if p))
    cmd = [
        sys.executable,
        'tools/train.py',
        CONFIG,
        '--work-dir',
        work_dir,
        '--cfg-options',
        f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={iters + 1}',
        'default_hooks.logger.interval=1',
        f'default_hooks.checkpoint.interval={iters + 1}',
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(
            f'training failed ({"compiled" if pythonpath else "installed"} mmcv):\n'
            + (proc.stdout + proc.stderr)[-3000:]
        )
    return iteration_times(work_dir)[WARMUP:]


def mmcv_compiler(pythonpath: str = '') -> str:
    env = dict(os.environ, PYTHONPATH=pythonpath)
    code = 'from mmcv.utils import collect_env; print(collect_env()["MMCV Compiler"])'
    return (
        subprocess.run(
            [sys.executable, '-c', code], env=env, capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--compiled-wheel', required=True, help='an MMCV_OPS=compiled wheel')
    parser.add_argument('--iters', type=int, default=40)
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--json', help='write the measurements here')
    args = parser.parse_args(argv)
    if args.iters <= WARMUP:
        parser.error(f'--iters must be more than the {WARMUP} warm-up iterations')
    subprocess.run(
        [sys.executable, 'tools/make_toy_data.py'], cwd=ROOT, check=True, capture_output=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        site = os.path.join(tmp, 'compiled')
        with zipfile.ZipFile(args.compiled_wheel) as z:
            z.extractall(site)
        builds = {'torchvision': '', 'compiled': site}
        compilers = {name: mmcv_compiler(path) for name, path in builds.items()}
        times = {name: [] for name in builds}
        for r in range(args.rounds):
            for name, path in builds.items():
                times[name] += train(args.iters, os.path.join(tmp, f'{name}{r}'), path)
    median = {name: statistics.median(t) for name, t in times.items()}
    result = {
        'iters_per_run': args.iters,
        'rounds': args.rounds,
        'warmup_dropped': WARMUP,
        'mmcv_compiler': compilers,
        'median_s_per_iter': median,
        'torchvision_over_compiled': median['torchvision'] / median['compiled'],
        'samples': {name: len(t) for name, t in times.items()},
    }
    for name in builds:
        print(
            f'{name:12s} {median[name]:.3f} s/iter (median of {len(times[name])}; '
            f'MMCV Compiler: {compilers[name]})'
        )
    print(f'torchvision / compiled: {result["torchvision_over_compiled"]:.3f}')
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
