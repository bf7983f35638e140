"""The benchmark's rows: three base modes and their activation-checkpointed variants.

* ``hst``: ``HST``, frozen trunk + meta tokens + T-Bridge + side network;
* ``full``: ``ViTPyramid(frozen=False)``, the whole ViT trained (full fine-tuning; the
  configs' ``vit-b-full``);
* ``frozen``: ``ViTPyramid(frozen=True)``, only the simple pyramid trained (the frozen-trunk
  probe; the configs' ``vit-b-frozen``);
* ``hst_cp``, ``full_cp``: the same with ``with_cp=True`` (HST's trunk blocks and Side
  Blocks, the ViT's blocks);
* ``hst_cp_side``: HST checkpointing its Side Blocks only (``with_cp='side'``);
* ``trunk``: the frozen ViT alone, no meta tokens, no pyramid (``forward_features``): the
  floor of any backbone's inference on it; it has no training step;
* the lever rows of HST (:data:`LEVER_MODES`), each adding one optimisation to the one
  before: ``hst_ref`` (the reference computation: unfolded cross-attention, trunk blocks
  on concatenated copies), ``hst_fold`` (+ folded cross-attention), ``hst`` (+ lean trunk:
  the default HST), ``hst_rc_side`` (+ ``recompute=('side',)``), ``hst_lean``
  (+ ``'trunk_mlp'``: the recommended configuration, configs/_base_/hst-vit-b.py).
* ``lora``, ``vpt``, ``adaptformer``, ``ssf``: the paper's PETL rows, the frozen probe with
  that method on its trunk (``configs/_base_/petl.py``'s settings; ``--modes`` picks them,
  they are not in the default set).

The probe has no checkpointed row: no gradient flows through its trunk.
"""

from __future__ import annotations

import argparse
from typing import List, Union

BASE_MODES = ('hst', 'full', 'frozen', 'trunk')
# Each base mode's checkpointed rows, and the backbone's with_cp value in those rows.
CP_MODES = {'hst': ('hst_cp', 'hst_cp_side'), 'full': ('full_cp',)}
WITH_CP = {'hst_cp': True, 'hst_cp_side': 'side', 'full_cp': True}
# HST's lever rows, in the order the levers are added (``hst`` itself comes between).
LEVER_MODES = {'hst': ('hst_ref', 'hst_fold', 'hst_rc_side', 'hst_lean')}
# The HST arguments of each lever row (besides with_cp).
HST_OPTIONS = {
    # 'hst' as HST's class default, also in detector runs (the configs recompute by default)
    'hst': dict(recompute=()),
    'hst_ref': dict(fold_attention=False, lean_trunk=False),
    'hst_fold': dict(lean_trunk=False),
    'hst_rc_side': dict(recompute=('side',)),
    'hst_lean': dict(recompute=('side', 'trunk_mlp')),
}
# What each lever row adds to the row before it (the report's lever table).
LEVERS = {
    'hst_ref': 'reference computation',
    'hst_fold': '+ folded cross-attention',
    'hst': '+ lean trunk (one shared tensor per block)',
    'hst_rc_side': "+ recompute 'side'",
    'hst_lean': "+ recompute 'trunk_mlp' (recommended)",
}
PETL_MODES = ('lora', 'vpt', 'adaptformer', 'ssf')
ALL_MODES = BASE_MODES + PETL_MODES + tuple(WITH_CP) + tuple(m for m in HST_OPTIONS if m != 'hst')
# The rows' names before 0.2, still accepted by --modes.
OLD_NAMES = {'full_ft': 'full', 'frozen_probe': 'frozen'}


def renamed(mode: str) -> str:
    """``full_ft`` -> ``full``, ``frozen_probe`` -> ``frozen``; other names unchanged."""
    return OLD_NAMES.get(mode, mode)


def base_mode(mode: str) -> str:
    """``hst_cp_side`` -> ``hst``, ``hst_lean`` -> ``hst``: the mode a row belongs to."""
    return 'hst' if mode in HST_OPTIONS else mode.split('_cp')[0]


def hst_options(mode: str) -> dict:
    """The HST arguments of ``mode``'s row besides ``with_cp`` (empty for other rows)."""
    return dict(HST_OPTIONS.get(mode, {}))


def with_cp(mode: str) -> Union[bool, str]:
    """The backbone's ``with_cp`` argument in ``mode``'s row (False when not checkpointed)."""
    return WITH_CP.get(mode, False)


def modes_to_run(args: argparse.Namespace) -> List[str]:
    """The rows, in table order: each of ``args.modes``, then its checkpointed rows.

    ``args.cp``: ``off`` (no checkpointed rows), ``on`` (they replace their base row) or
    ``both``. ``args.levers`` (``on`` unless given): HST's lever rows around ``hst``. The
    ``trunk`` row is a backbone's: left out of ``--model detector`` runs.
    """
    rows = []
    levers = getattr(args, 'levers', 'on') == 'on'
    for mode in args.modes:
        if mode == 'trunk' and getattr(args, 'model', 'backbone') == 'detector':
            continue
        if levers and mode in LEVER_MODES:
            rows.extend(LEVER_MODES[mode][:2])
        if args.cp != 'on' or mode not in CP_MODES:
            rows.append(mode)
        if levers and mode in LEVER_MODES:
            rows.extend(LEVER_MODES[mode][2:])
        if args.cp != 'off' and mode in CP_MODES:
            rows.extend(CP_MODES[mode])
    return rows
