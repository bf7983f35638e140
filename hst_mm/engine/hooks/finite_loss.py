"""Stop training at the first non-finite loss or weight, before the state is saved."""

from __future__ import annotations

import math
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from torch.optim import Optimizer


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss or weight (names the iteration and what)."""


@HOOKS.register_module()
class CheckFiniteLossHook(Hook):
    """Stop training with :class:`NonFiniteLossError` as soon as a loss, or a trainable weight,
    its gradient or the optimizer's state after the optimizer step, is NaN or infinite; and
    before training, at a learning rate beyond the weights' range.

    mmengine's ``OptimWrapper`` steps on whatever gradients it gets (only the AMP wrapper's
    loss scaler skips non-finite steps), so one NaN silently turns every weight into NaN and
    later checkpoints into garbage; a finite loss with overflowing gradients breaks the
    weights just the same, which is why the weights are checked too, and the optimizer state:
    a finite loss of 1e38 leaves Adam's weights finite but its ``exp_avg_sq`` infinite, and
    every later update zero. This hook runs before
    ``CheckpointHook`` (priority ``ABOVE_NORMAL`` vs ``VERY_LOW``) in ``after_train_iter``,
    so the broken state is never saved and the last checkpoint stays the last good one.

    Args:
        interval: check every ``interval`` iterations. Checking costs one fused reduction
            over the trainable weights and the optimizer state, and one scalar all-reduce;
            the losses are already on the host for logging. With ``interval > 1`` a
            checkpoint saved between two checks may already hold the broken weights.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, interval: int = 1) -> None:
        if interval < 1:
            raise ValueError(f'CheckFiniteLossHook: interval must be >= 1, got {interval}')
        self.interval = interval

    def before_train(self, runner) -> None:
        check_learning_rates(runner)

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
        weights = [] if bad else non_finite_state(runner.model, _optimizers(runner))
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
            what = 'weights or optimizer state are not finite'
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


def _optimizers(runner) -> List[torch.optim.Optimizer]:
    """The optimizers of the runner's ``OptimWrapper`` or ``OptimWrapperDict``."""
    wrapper = getattr(runner, 'optim_wrapper', None)
    if wrapper is None or isinstance(wrapper, dict):  # not built (not training)
        return []
    wrappers = wrapper.values() if hasattr(wrapper, 'optim_wrappers') else [wrapper]
    return [w.optimizer for w in wrappers if isinstance(getattr(w, 'optimizer', None), Optimizer)]


def non_finite_state(
    model: torch.nn.Module, optimizers: Sequence[torch.optim.Optimizer] = ()
) -> List[str]:
    """What holds a NaN or inf: trainable weights, their gradients (if not yet cleared) and
    the optimizer's state (Adam's ``exp_avg_sq`` overflows while the weights are finite).

    One fused reduction (``torch._foreach_norm``, max-norm: no overflow of its own, NaN and
    inf propagate) over all of them; the names are looked up only when one is not finite.
    """
    named: List[Tuple[str, torch.Tensor]] = []
    names = {}
    for n, p in model.named_parameters():
        if p.requires_grad:
            names[id(p)] = n
            named.append((n, p.detach()))
            if p.grad is not None:
                named.append((f'gradient of {n}', p.grad.detach()))
    for optimizer in optimizers:
        for p, state in optimizer.state.items():
            for key, value in state.items():
                if torch.is_tensor(value) and value.is_floating_point() and value.numel():
                    named.append(
                        (f"optimizer state '{key}' of {names.get(id(p), 'a weight')}", value)
                    )
    tensors = [t for _, t in named if t.is_floating_point() and t.numel()]
    if not tensors:
        return []
    norms = torch._foreach_norm(tensors, float('inf'))
    if bool(torch.isfinite(torch.stack([n.float() for n in norms])).all()):
        return []
    return [n for n, t in named if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def check_learning_rates(runner) -> None:
    """A learning rate beyond the range of the weights' dtype makes the first optimizer step
    fail in torch with 'value cannot be converted to type float without overflow', which
    names no setting: refuse it before training, naming it."""
    for optimizer in _optimizers(runner):
        for i, group in enumerate(optimizer.param_groups):
            lr = group.get('lr')
            dtypes = {p.dtype for p in group['params'] if p.is_floating_point()}
            limit = min((torch.finfo(d).max for d in dtypes), default=torch.finfo().max)
            if isinstance(lr, (int, float)) and not (math.isfinite(lr) and abs(lr) <= limit):
                config = getattr(getattr(runner, 'cfg', None), 'filename', None) or 'the config'
                raise NonFiniteLossError(
                    f'{config}: optim_wrapper.optimizer.lr: learning rate {lr:g} (param group '
                    f'{i}, after any auto_scale_lr) is beyond the range of the weights '
                    f'({limit:.3g}): set a learning rate in range'
                )


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
        f'the last checkpoint, {last}, was saved before it{_magnitude(last)} but may already '
        f'hold the diverging run (weights grown large before they overflow): check it, or '
        f'go back to an earlier one; fix the cause (data, loss weights: then --resume) or, '
        f'to change the learning rate, start a new run from its weights with --cfg-options '
        f'load_from={last} (--resume would restore the old learning rate)'
    )


def _magnitude(path: str) -> str:
    """`` (largest weight magnitude X)`` of a checkpoint, read memory-mapped; '' if unreadable."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
        tensors = [
            t
            for t in state.get('state_dict', {}).values()
            if torch.is_tensor(t) and t.is_floating_point()
        ]
        largest = max(float(n) for n in torch._foreach_norm(tensors, float('inf')))
    except Exception:  # the advice does without it
        return ''
    return f' (largest weight magnitude {largest:.3g})'


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint named by ``work_dir/last_checkpoint`` (what ``--resume`` would load)."""
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            return f.read().strip() or None
    except OSError:
        return None
