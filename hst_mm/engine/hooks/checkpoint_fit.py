"""A checkpoint that does not fit the model is refused, not loaded half-way.

mmengine loads ``load_from`` and test checkpoints with ``strict=False``: a checkpoint of
another model prints a "missing keys / unexpected keys" warning and the run goes on with
randomly initialised weights (a test exits 0 with a meaningless score, a fine-tuning run
silently trains from scratch). Keys that legitimately differ are allowed *by name*
(``fnmatch`` patterns), never by switching the check off: for example a new head when
fine-tuning from a detector with other classes::

    custom_hooks = [dict(type='CheckpointFitHook', allowed=['roi_head.bbox_head.fc_cls.*'])]

A trainable-only export (``tools/export_trainable.py``, marked in ``meta['trainable_only']``)
may lack exactly the frozen trunk weights it lists, each of which the model must restore from
its ``pretrained`` source; the hook then loads that source where ``init_weights()`` has not
(``tools/test.py``) and checks it against the export's digests.
"""

from __future__ import annotations

import fnmatch
from typing import List, Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ...models.parts import rename_old_keys
from ..checkpoint_weights import CheckpointMismatchError, checkpoint_state_dict
from ..frozen_trunk import check_export_fits, export_info, restore_frozen_trunk, unwrap


def _first(keys: List[str], n: int = 5) -> str:
    return ', '.join(keys[:n]) + (f' (+{len(keys) - n} more)' if len(keys) > n else '')


def check_checkpoint_fits(
    model: torch.nn.Module, checkpoint: dict, path: Optional[str], allowed: Sequence[str] = ()
) -> None:
    """Raise :class:`CheckpointMismatchError` unless every weight of ``model`` is in
    ``checkpoint`` with its shape and the checkpoint holds nothing else (keys matching an
    ``allowed`` pattern excepted)."""
    # mmengine loads into the wrapped model of DDP wrappers and of test-time augmentation
    # (tools/test.py --tta), whose own keys carry a 'module.' prefix
    model = unwrap(model)
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise CheckpointMismatchError(
            f'{path or "the checkpoint"}: holds a {type(state_dict or checkpoint).__name__} '
            f"where a checkpoint dict with a 'state_dict' of named weights belongs; pass a "
            f"checkpoint saved by mmengine's Runner (or a state dict)"
        )
    theirs = rename_old_keys(model, checkpoint_state_dict(checkpoint))
    ours = model.state_dict()
    info = export_info(checkpoint)
    # a trainable-only export lacks exactly the frozen trunk weights it lists
    left_out = set(check_export_fits(model, info, path)) if info is not None else set()

    def named(keys):
        return [k for k in keys if not any(fnmatch.fnmatchcase(k, p) for p in allowed)]

    missing = named(k for k in ours if k not in theirs and k not in left_out)
    unexpected = named(k for k in theirs if k not in ours)
    mismatched = [
        f'{k} {tuple(theirs[k].shape)} vs model {tuple(ours[k].shape)}'
        for k in named(k for k in theirs if k in ours)
        if torch.is_tensor(theirs[k]) and theirs[k].shape != ours[k].shape
    ]
    if not (missing or unexpected or mismatched):
        return
    problems = [
        f'{what}: {_first(keys)}'
        for what, keys in (
            ('missing keys', missing),
            ('unexpected keys', unexpected),
            ('shape mismatches', mismatched),
        )
        if keys
    ]
    raise CheckpointMismatchError(
        f'{path or "the checkpoint"}: does not fit the {type(model).__name__} of this config; '
        + '; '.join(problems)
        + '. If some keys differ on purpose (a new head), allow them by '
        "name: custom_hooks=[dict(type='CheckpointFitHook', allowed=['PATTERN', ...])]"
    )


EXECUTED_META_KEYS = ('config',)


def drop_executable_config(checkpoint, path: Optional[str], logger=None) -> None:
    """Remove the checkpoint entries that mmengine would run as Python.

    ``Runner.resume`` passes ``meta['config']`` to ``Config.fromstring`` (only to compare
    ``gpu_ids``); mmengine itself writes the config to ``meta['cfg']``, so the entry only
    comes from another writer, and running it would run whatever the file holds.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        return
    for key in EXECUTED_META_KEYS:
        if key in meta:
            del meta[key]
            if logger is not None:
                logger.warning(
                    f"{path or 'the checkpoint'}: meta['{key}'] ignored (config text in a "
                    f'checkpoint is never run)'
                )


def loaded_checkpoint_path(runner) -> Optional[str]:
    """The file mmengine is loading: ``load_from``, or on ``resume`` without it the one the
    work dir's ``last_checkpoint`` names."""
    path = getattr(runner, '_load_from', None)
    if path is None and getattr(runner, '_resume', False):
        from mmengine.runner import find_latest_checkpoint

        path = find_latest_checkpoint(runner.work_dir)
    return path


@HOOKS.register_module()
class CheckpointFitHook(Hook):
    """Refuse a checkpoint (``load_from``, ``--resume``, ``tools/test.py``) that does not fit
    the model, before mmengine loads it with ``strict=False``.

    Args:
        allowed: ``fnmatch`` patterns of state-dict keys that may be missing, unexpected or
            of another shape.
    """

    priority = 'VERY_HIGH'

    def __init__(self, allowed: Sequence[str] = ()) -> None:
        self.allowed = tuple(allowed)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # mmengine calls this before it copies the weights into the model
        path = loaded_checkpoint_path(runner)
        drop_executable_config(checkpoint, path, getattr(runner, 'logger', None))
        check_checkpoint_fits(runner.model, checkpoint, path, self.allowed)
        if export_info(checkpoint) is None:
            return
        if getattr(runner, '_resume', False):
            raise CheckpointMismatchError(
                f'{path or "the checkpoint"}: a trainable-only export holds no optimizer '
                f'or scheduler state and cannot resume training; start a new run from it '
                f'with load_from instead'
            )
        # training has run init_weights() (trunk loaded); tools/test.py has not
        restore_frozen_trunk(runner.model, checkpoint, path)
