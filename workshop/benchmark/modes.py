"""The benchmark's rows: what each builds, and which rows a run measures.

* ``hst``: ``HST`` with the class defaults (frozen trunk + meta tokens + T-Bridge + side
  network, no recomputation);
* ``hst_lean``: ``hst`` + ``recompute=('side', 'trunk_mlp')``, the configs' default
  (configs/_base_/hst-vit-b.py);
* the ladder of HST options, each ``hst_lean`` plus one option: ``hst_k6`` / ``hst_k12``
  (``grad_start=6`` / ``12``: trunk blocks before it run without autograd), ``hst_bf16``
  (``trunk_dtype='bfloat16'``: the frozen trunk's matrices in bfloat16), ``hst_compile``
  (``compile=True``: ``torch.compile`` of the side network; its first call, which compiles,
  is reported apart from the steady calls);
* ``full``: ``ViTPyramid(frozen=False)``, the whole ViT trained (full fine-tuning; the
  configs' ``vit-b-full``);
* ``frozen``: ``ViTPyramid(frozen=True)``, only the simple pyramid trained (the frozen-trunk
  probe; the configs' ``vit-b-frozen``);
* ``trunk``: the frozen ViT alone, no meta tokens, no pyramid (``forward_features``): the
  floor of any backbone's inference on it; it has no training step;
* ``config``: the backbone of the run's CONFIG, built through the registry as the config
  sets it (only with a CONFIG);
* the exact levers of HST (``--levers on``, around ``hst``), each adding one optimisation to
  the one before: ``hst_ref`` (the reference computation: unfolded cross-attention, trunk
  blocks on concatenated copies), ``hst_fold`` (+ folded cross-attention), ``hst``
  (+ lean trunk), ``hst_rc_side`` (+ ``recompute=('side',)``), ``hst_lean``
  (+ ``'trunk_mlp'``);
* the checkpointed rows (``--cp on`` / ``both``, beside ``hst`` and ``full``): ``hst_cp``,
  ``full_cp`` (``with_cp=True``), ``hst_cp_side`` (``with_cp='side'``);
* ``lora``, ``vpt``, ``adaptformer``, ``ssf``: the paper's PETL rows, the frozen probe with
  that method on its trunk (``configs/_base_/petl.py``'s settings).

A run measures exactly the rows ``--modes`` names; the lever and checkpointed rows are added
only when ``--levers on`` / ``--cp on|both`` ask for them. The probe has no checkpointed row:
no gradient flows through its trunk.
"""

from __future__ import annotations

import argparse
import inspect
from typing import List, Union

BASE_MODES = ('hst', 'full', 'frozen', 'trunk')
# What a run measures when --modes is not given (with a CONFIG: its backbone first).
DEFAULT_MODES = ('hst_lean', 'full', 'frozen', 'trunk')
CONFIG_MODE = 'config'
# Each base mode's checkpointed rows, and the backbone's with_cp value in those rows.
CP_MODES = {'hst': ('hst_cp', 'hst_cp_side'), 'full': ('full_cp',)}
WITH_CP = {'hst_cp': True, 'hst_cp_side': 'side', 'full_cp': True}
# HST's exact lever rows, in the order the levers are added (``hst`` itself comes between).
LEVER_MODES = {'hst': ('hst_ref', 'hst_fold', 'hst_rc_side', 'hst_lean')}
# The configs' default recomputation (configs/_base_/hst-vit-b.py), the ladder's base.
LEAN = ('side', 'trunk_mlp')
# The HST arguments of each HST row (besides with_cp).
HST_OPTIONS = {
    # 'hst' as HST's class default, also in detector runs (the configs recompute by default)
    'hst': dict(recompute=()),
    'hst_ref': dict(fold_attention=False, lean_trunk=False),
    'hst_fold': dict(lean_trunk=False),
    'hst_rc_side': dict(recompute=('side',)),
    'hst_lean': dict(recompute=LEAN),
    'hst_k6': dict(recompute=LEAN, grad_start=6),
    'hst_k12': dict(recompute=LEAN, grad_start=12),
    'hst_bf16': dict(recompute=LEAN, trunk_dtype='bfloat16'),
    'hst_compile': dict(recompute=LEAN, compile=True),
}
# What each HST row adds to the row it is built on (the report's table of HST rows).
LEVERS = {
    'hst_ref': 'reference computation',
    'hst_fold': 'hst_ref + folded cross-attention',
    'hst': 'hst_fold + lean trunk (one shared tensor per block)',
    'hst_rc_side': "hst + recompute 'side'",
    'hst_lean': "hst_rc_side + recompute 'trunk_mlp' (the configs' default)",
    'hst_k6': 'hst_lean + grad_start=6',
    'hst_k12': 'hst_lean + grad_start=12',
    'hst_bf16': "hst_lean + trunk_dtype='bfloat16'",
    'hst_compile': 'hst_lean + compile=True',
}
# The ladder (docs/benchmark.md, "The ladder"): the HST options' rows, then what they are
# compared with.
LADDER_HST_MODES = ('hst_lean', 'hst_k6', 'hst_k12', 'hst_bf16', 'hst_compile')
LADDER_MODES = LADDER_HST_MODES + ('full', 'frozen', 'trunk')
PETL_MODES = ('lora', 'vpt', 'adaptformer', 'ssf')
ALL_MODES = (
    BASE_MODES
    + PETL_MODES
    + tuple(WITH_CP)
    + tuple(m for m in HST_OPTIONS if m != 'hst')
    + (CONFIG_MODE,)
)
# The rows' names before 0.2, still accepted by --modes.
OLD_NAMES = {'full_ft': 'full', 'frozen_probe': 'frozen'}


class MissingOptionError(TypeError):
    """A row asks its backbone for an option this version of the backbone does not have."""


def renamed(mode: str) -> str:
    """``full_ft`` -> ``full``, ``frozen_probe`` -> ``frozen``; other names unchanged."""
    return OLD_NAMES.get(mode, mode)


def base_mode(mode: str) -> str:
    """``hst_cp_side`` -> ``hst``, ``hst_lean`` -> ``hst``: the mode a row belongs to."""
    return 'hst' if mode in HST_OPTIONS else mode.split('_cp')[0]


def hst_options(mode: str) -> dict:
    """The HST arguments of ``mode``'s row besides ``with_cp`` (empty for other rows)."""
    return dict(HST_OPTIONS.get(mode, {}))


def checked_options(mode: str, cls: type) -> dict:
    """:func:`hst_options` of ``mode``, once ``cls``'s constructor is known to take each.

    ``cls``: the plain model class (``hst_mm.models.HST``), whose constructor names its
    options (the registered wrapper takes ``**kwargs``). Raises
    :class:`MissingOptionError` naming the row and the options ``cls`` lacks, rather
    than letting the row run without them (or fail with Python's bare ``TypeError``).
    """
    options = hst_options(mode)
    params = inspect.signature(cls).parameters
    missing = [k for k in options if k not in params]
    if missing:
        raise MissingOptionError(
            f'row {mode!r} needs {cls.__name__}('
            + ', '.join(f'{k}={options[k]!r}' for k in missing)
            + f'), but this {cls.__module__}.{cls.__name__} has no option '
            + ', '.join(repr(k) for k in missing)
        )
    return options


def with_cp(mode: str) -> Union[bool, str]:
    """The backbone's ``with_cp`` argument in ``mode``'s row (False when not checkpointed)."""
    return WITH_CP.get(mode, False)


def modes_to_run(args: argparse.Namespace) -> List[str]:
    """The rows, in the order of ``args.modes``: each named row, and only when asked the
    lever rows around ``hst`` (``args.levers == 'on'``) and the checkpointed rows of ``hst``
    and ``full`` (``args.cp``: ``on``, they replace their base row; ``both``, after it).

    The ``trunk`` row is a backbone's: left out of ``--model detector`` runs. A row named
    twice (e.g. ``hst_lean`` and ``--levers on``) runs once.
    """
    rows = []
    levers = getattr(args, 'levers', 'off') == 'on'
    cp = getattr(args, 'cp', 'off')
    for mode in args.modes:
        if mode == 'trunk' and getattr(args, 'model', 'backbone') == 'detector':
            continue
        if levers and mode in LEVER_MODES:
            rows.extend(LEVER_MODES[mode][:2])
        if cp != 'on' or mode not in CP_MODES:
            rows.append(mode)
        if levers and mode in LEVER_MODES:
            rows.extend(LEVER_MODES[mode][2:])
        if cp != 'off' and mode in CP_MODES:
            rows.extend(CP_MODES[mode])
    return list(dict.fromkeys(rows))
