"""Command line of the GPU check (``tools/gpu_check.py``); ``--_worker PART`` runs one part
in this process (what the parent's subprocesses do)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from workshop.arg_types import non_negative_int, positive_float, positive_int

from ..fixtures import TINY_SIDE, TINY_TRUNK
from .harness import DEFAULT_BUDGET_S, DEFAULT_TIMEOUT_S, PARTS, run_all
from .parity import parity_worker
from .throughput import TINY_BATCH, TINY_SIZE, TRAIN_CONFIGS, train_worker


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description='Check hst_mm on a CUDA machine: mmcv operator parity (CUDA vs CPU), '
        'training throughput of HST vs full fine-tuning (Mask R-CNN, UperNet), '
        'and the backbone benchmark.'
    )
    p.add_argument(
        '--device',
        choices=('cuda', 'cpu'),
        default='cuda',
        help='device under test (default cuda; cpu for a smoke run, with --tiny)',
    )
    p.add_argument(
        '--tiny',
        action='store_true',
        help=f'tiny models for a quick run: {TINY_TRUNK["trunk"]} with '
        f'{TINY_TRUNK["trunk_kwargs"]}, HST {TINY_SIDE}, 32-channel necks '
        f'and heads, {TINY_SIZE} px images, batch {TINY_BATCH}; the '
        f'benchmark on a 64-wide 4-block ViT at 64 px',
    )
    p.add_argument(
        '--iters',
        type=positive_int,
        default=50,
        help='timed training iterations per model (default 50)',
    )
    p.add_argument(
        '--warmup',
        type=non_negative_int,
        default=5,
        help='untimed training iterations first (default 5)',
    )
    p.add_argument(
        '--skip',
        nargs='+',
        choices=PARTS,
        default=[],
        action='extend',
        metavar='PART',
        help=f'parts not to run: {", ".join(PARTS)}',
    )
    p.add_argument(
        '--budget',
        type=positive_float,
        default=DEFAULT_BUDGET_S,
        help=f'seconds for the whole run; no subprocess outlives it (default {DEFAULT_BUDGET_S})',
    )
    p.add_argument(
        '--timeout',
        type=positive_float,
        default=DEFAULT_TIMEOUT_S,
        help=f'seconds for one subprocess at most (default {DEFAULT_TIMEOUT_S})',
    )
    p.add_argument(
        '--out',
        default='work_dirs/gpu_check.json',
        help='JSON with every number (default work_dirs/gpu_check.json)',
    )
    p.add_argument('--_worker', default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args._worker:
        if args._worker == 'parity':
            result = parity_worker(args)
        elif args._worker.startswith('train:'):
            _, task, mode = args._worker.split(':')
            if mode not in TRAIN_CONFIGS.get(task, {}):
                raise SystemExit(f'unknown training worker {args._worker!r}')
            result = train_worker(args, task, mode)
        else:
            raise SystemExit(f'unknown worker {args._worker!r}')
        # Anything printed before (timm, mmengine) is ignored: the parent reads the last line.
        print(json.dumps(result), flush=True)
        return 0
    return run_all(args)


if __name__ == '__main__':
    sys.exit(main())
