"""The benchmark's rows: three base modes and their activation-checkpointed variants.

* ``hst``: ``HST``, frozen trunk + meta tokens + T-Bridge + side network;
* ``full``: ``ViTPyramid(frozen=False)``, the whole ViT trained (full fine-tuning; the
  configs' ``vit-b-full``);
* ``frozen``: ``ViTPyramid(frozen=True)``, only the simple pyramid trained (the frozen-trunk
  probe; the configs' ``vit-b-frozen``);
* ``hst_cp``, ``full_cp``: the same with ``with_cp=True`` (HST's trunk blocks and Side
  Blocks, the ViT's blocks);
* ``hst_cp_side``: HST checkpointing its Side Blocks only (``with_cp='side'``);
* ``lora``, ``vpt``, ``adaptformer``, ``ssf``: the paper's PETL rows, the frozen probe with
  that method on its trunk (``configs/_base_/petl.py``'s settings; ``--modes`` picks them,
  they are not in the default set).

The probe has no checkpointed row: no gradient flows through its trunk.
"""

from __future__ import annotations

import argparse
from typing import List, Union

BASE_MODES = ('hst', 'full', 'frozen')
PETL_MODES = ('lora', 'vpt', 'adaptformer', 'ssf')
MODE_CHOICES = BASE_MODES + PETL_MODES
# Each base mode's checkpointed rows, and the backbone's with_cp value in those rows.
CP_MODES = {'hst': ('hst_cp', 'hst_cp_side'), 'full': ('full_cp',)}
WITH_CP = {'hst_cp': True, 'hst_cp_side': 'side', 'full_cp': True}
ALL_MODES = MODE_CHOICES + tuple(WITH_CP)
# The rows' names before 0.2, still accepted by --modes.
OLD_NAMES = {'full_ft': 'full', 'frozen_probe': 'frozen'}


def renamed(mode: str) -> str:
    """``full_ft`` -> ``full``, ``frozen_probe`` -> ``frozen``; other names unchanged."""
    return OLD_NAMES.get(mode, mode)


def base_mode(mode: str) -> str:
    """``hst_cp_side`` -> ``hst``: the mode a checkpointed row belongs to."""
    return mode.split('_cp')[0]


def with_cp(mode: str) -> Union[bool, str]:
    """The backbone's ``with_cp`` argument in ``mode``'s row (False when not checkpointed)."""
    return WITH_CP.get(mode, False)


def modes_to_run(args: argparse.Namespace) -> List[str]:
    """The rows, in table order: each of ``args.modes``, then its checkpointed rows.

    ``args.cp``: ``off`` (no checkpointed rows), ``on`` (they replace their base row) or
    ``both``.
    """
    rows = []
    for mode in args.modes:
        if args.cp != 'on' or mode not in CP_MODES:
            rows.append(mode)
        if args.cp != 'off' and mode in CP_MODES:
            rows.extend(CP_MODES[mode])
    return rows
