"""The command-line arguments ``tools/train.py`` and ``tools/test.py`` share, with argparse
alone: this module imports nothing but the standard library, and the tools run it by its
path (``runpy.run_path``), so that ``--help`` and a wrong argument are answered before
torch, mmengine or ``hst_mm`` is imported."""

from __future__ import annotations

import argparse
import os
from typing import List, Optional

CFG_OPTIONS_HELP = (
    'override config settings, e.g. {example}; a key (or dict) the config lacks is added, '
    'unless it is close to an existing key beside it: a misspelling, such as chekpoint for '
    'checkpoint, stops the tool naming the closest keys'
)


def base_parser(description: str, cfg_example: str) -> argparse.ArgumentParser:
    """The config, ``--work-dir``, ``--cfg-options`` (kept as ``key=value`` strings until
    ``hst_mm.engine.cli.load_config`` reads them), ``--launcher`` and ``--local-rank``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='the directory for logs, metrics and checkpoints')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        metavar='KEY=VALUE',
        help=CFG_OPTIONS_HELP.format(example=cfg_example),
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def parse(parser: argparse.ArgumentParser, argv: Optional[List[str]] = None):
    """The parsed arguments; ``LOCAL_RANK`` set from ``--local-rank`` when the launcher did
    not set it (mmengine reads it)."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args
