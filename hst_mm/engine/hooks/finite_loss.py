"""Stop training at the first non-finite loss or weight, before the state is saved."""

from __future__ import annotations

import math
import os.path as osp
from typing import Dict, List, Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss or weight (names the iteration and what)."""


@HOOKS.register_module()
class CheckFiniteLossHook(Hook):
    """Stop training with :class:`NonFiniteLossError` as soon as a loss, or a trainable weight
    after the optimizer step, is NaN or infinite.

    mmengine's ``OptimWrapper`` steps on whatever gradients it gets (only the AMP wrapper's
    loss scaler skips non-finite steps), so one NaN silently turns every weight into NaN and
    later checkpoints into garbage; a finite loss with overflowing gradients breaks the
    weights just the same, which is why the weights are checked too. This hook runs before
    ``CheckpointHook`` (priority ``ABOVE_NORMAL`` vs ``VERY_LOW``) in ``after_train_iter``,
    so the broken state is never saved and the last checkpoint stays the last good one.

    Args:
        interval: check every ``interval`` iterations. Checking costs one reduction over
            the trainable weights and one scalar all-reduce; the losses are already on the
            host for logging. With ``interval > 1`` a checkpoint saved between two checks
            may already hold the broken weights.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, interval: int = 1) -> None:
        if interval < 1:
            raise ValueError(f'CheckFiniteLossHook: interval must be >= 1, got {interval}')
        self.interval = interval

    def after_train_iter(
        self,
        runner,
        batch_idx: int,
        data_batch=None,
        outputs: Optional[Dict[str, torch.Tensor]] = None,
    ) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        losses = {
            k: float(v.detach()) if torch.is_tensor(v) else float(v)
            for k, v in (outputs or {}).items()
            if 'loss' in k
        }
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        weights = [] if bad else non_finite_weights(runner.model)
        # In distributed runs each rank only sees its own values: agree on stopping, or the
        # healthy ranks would wait forever in the next gradient all-reduce.
        flag = torch.tensor([float(bool(bad or weights))])
        all_reduce(flag)
        if flag.item() == 0:
            return
        iteration = runner.iter + 1  # runner.iter counts finished iterations
        if bad:
            kind = 'nan' if any(math.isnan(v) for v in bad.values()) else 'inf'
            what = 'loss is ' + kind
            detail = ', '.join(f'{k}={v}' for k, v in bad.items())
        elif weights:
            what = 'weights are not finite'
            detail = (
                'after the optimizer step, e.g. '
                + ', '.join(weights[:3])
                + (f' (+{len(weights) - 3} more)' if len(weights) > 3 else '')
                + '; the gradients overflowed'
            )
        else:
            what, detail = 'training is not finite', f'on another of the {get_world_size()} ranks'
        raise NonFiniteLossError(
            f'{what} at iteration {iteration} ({detail}); training '
            f'stopped, this state was not saved; '
            f'{restart_advice(runner.work_dir)}'
        )


def non_finite_weights(model: torch.nn.Module) -> List[str]:
    """Names of trainable parameters holding a NaN or inf (one fused reduction, then names)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        return []
    sums = torch.stack([p.detach().float().sum() for _, p in params])  # NaN/inf propagate
    if bool(torch.isfinite(sums).all()):
        return []
    return [n for (n, p) in params if not bool(torch.isfinite(p.detach()).all())]


def restart_advice(work_dir: str) -> str:
    """What to do next. ``--resume`` would restore the checkpoint's learning rate and
    schedule too, so a changed learning rate needs a new run that starts from the weights."""
    last = last_checkpoint(work_dir)
    if not last:
        return (
            'no checkpoint was saved yet: fix the cause (learning rate, data, loss weights) '
            'and start again'
        )
    return (
        f'the last checkpoint, {last}, was saved before it: fix the cause (data, loss '
        f'weights: then --resume) or, to change the learning rate, start a new run from '
        f'its weights with --cfg-options load_from={last} (--resume would restore the old '
        f'learning rate)'
    )


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint named by ``work_dir/last_checkpoint`` (what ``--resume`` would load)."""
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            return f.read().strip() or None
    except OSError:
        return None
