"""Training hooks that make a crash lose nothing: finite-loss check, atomic checkpoints and
exact resumption of the torch random state.

All three are registered in mmengine's root ``HOOKS`` registry, so mmdet and mmseg configs
find them after ``import hst_mm`` (``custom_imports``). ``tools/train.py`` adds them to every
run (``--no-nan-check`` leaves out the first); configs started otherwise (``mim train``) can
list them themselves::

    custom_hooks = [dict(type='CheckFiniteLossHook'), dict(type='TorchRNGStateHook')]
    default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=...))
"""
from __future__ import annotations

import math
import os
import os.path as osp
import random
from typing import Dict, Optional

import numpy as np
import torch
from mmengine.dist import all_reduce, get_world_size, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss (names the iteration and the losses)."""


@HOOKS.register_module()
class CheckFiniteLossHook(Hook):
    """Stop training with :class:`NonFiniteLossError` as soon as a loss is NaN or infinite.

    mmengine's ``OptimWrapper`` steps on whatever gradients it gets (only the AMP wrapper's
    loss scaler skips non-finite steps), so one NaN silently turns every weight into NaN
    and later checkpoints into garbage. This hook runs before ``CheckpointHook`` (priority
    ``ABOVE_NORMAL`` vs ``VERY_LOW``) in ``after_train_iter``, so the broken state is never
    saved and the last checkpoint stays the last good one.

    Args:
        interval: check every ``interval`` iterations. Checking costs one scalar
            all-reduce; the losses are already on the host for logging. With
            ``interval > 1`` a checkpoint saved between two checks may already hold the
            broken weights.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, interval: int = 1) -> None:
        if interval < 1:
            raise ValueError(f'CheckFiniteLossHook: interval must be >= 1, got {interval}')
        self.interval = interval

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[Dict[str, torch.Tensor]] = None) -> None:
        if not outputs or not self.every_n_train_iters(runner, self.interval):
            return
        losses = {k: float(v.detach()) if torch.is_tensor(v) else float(v)
                  for k, v in outputs.items() if 'loss' in k}
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        # In distributed runs each rank only sees its own losses: agree on stopping, or the
        # healthy ranks would wait forever in the next gradient all-reduce.
        flag = torch.tensor([float(bool(bad))])
        all_reduce(flag)
        if flag.item() == 0:
            return
        iteration = runner.iter + 1                 # runner.iter counts finished iterations
        if bad:
            kind = 'nan' if any(math.isnan(v) for v in bad.values()) else 'inf'
            detail = ', '.join(f'{k}={v}' for k, v in bad.items())
        else:
            kind, detail = 'not finite', f'on another of the {get_world_size()} ranks'
        last = _last_checkpoint(runner.work_dir)
        resume = (f'the last checkpoint, {last}, was saved before it: fix the cause (learning '
                  f'rate, data, loss weights) and --resume from it' if last
                  else 'no checkpoint was saved yet')
        raise NonFiniteLossError(f'loss is {kind} at iteration {iteration} ({detail}); '
                                 f'training stopped, this state was not saved; {resume}')


def _last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint named by ``work_dir/last_checkpoint`` (what ``--resume`` would load)."""
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _fsync(path: str) -> None:
    with open(path, 'rb+') as f:
        os.fsync(f.fileno())


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old or the new content."""
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose local saves cannot leave a truncated or missing checkpoint.

    mmengine 0.10.7 writes a checkpoint straight to its final path (``LocalBackend.put``
    opens ``iter_N.pth`` with ``'wb'``), deletes the oldest kept checkpoint *before* saving
    the new one (``max_keep_ckpts``), and rewrites ``last_checkpoint`` in place. A kill
    during a save can therefore leave a truncated ``iter_N.pth``, and with
    ``max_keep_ckpts=1`` no checkpoint at all. Here the checkpoint is written to
    ``iter_N.pth.tmp``, flushed to disk and renamed (``os.replace`` is atomic on POSIX
    within a file system), then ``last_checkpoint`` is replaced the same way, and only then
    is the oldest checkpoint deleted.

    Why a hook subclass rather than patching ``LocalBackend.put`` or ``torch.save``: it
    changes checkpoint saving only where a config (or ``tools/train.py``) asks for it, and
    nothing else that writes files through mmengine. It overrides mmengine's private
    ``_save_checkpoint_with_step`` (same bookkeeping, reordered); mmengine is pinned to
    0.10.7. Remote back-ends (``backend_args``, ``out_dir`` on S3, ...) and
    ``file_client_args`` fall back to mmengine's own saving. ``save_best`` checkpoints are
    still saved by mmengine directly.

    Same arguments as :class:`mmengine.hooks.CheckpointHook`.
    """

    def _save_checkpoint_with_step(self, runner, step, meta):
        if (self.file_client_args is not None or type(self.file_backend) is not LocalBackend
                or not isinstance(runner, Runner)):     # FlexibleRunner saves differently
            return super()._save_checkpoint_with_step(runner, step, meta)
        # Bookkeeping as in mmengine (the message hub, saved in the checkpoint, must already
        # list this step), but the stale checkpoint is deleted only after the new one exists.
        stale = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        name = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, name)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(                         # saves on the main process only
            self.out_dir, f'{name}.tmp', save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
            backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        tmp = f'{self.last_ckpt}.tmp'
        _fsync(tmp)         # data on disk before the rename, so a power cut cannot empty it
        os.replace(tmp, self.last_ckpt)
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        if stale is not None:
            path = osp.join(self.out_dir, self.filename_tmpl.format(stale))
            if osp.isfile(path):
                os.remove(path)


@HOOKS.register_module()
class TorchRNGStateHook(Hook):
    """Save torch's random state in each checkpoint and restore it on resume, so that a
    resumed run draws the same dropout masks, RoI samples, ... as an uninterrupted one.

    What mmengine already restores on ``resume``: weights, optimizer, schedulers, the
    message hub, the iteration, and the data position: ``IterBasedTrainLoop`` replays
    (loads and discards) the batches already trained, so the sampler (seeded by
    ``randomness.seed``) and the numpy / python random state used by the data pipeline
    end up where they were. What it does not: torch's generator, which the model consumes
    (dropout in the decode heads, mmdet's RoI samplers). Without this hook a resumed run
    continues with the generator as it was right after model initialisation.

    The state saved with a checkpoint is the one after that iteration, i.e. the one the
    next iteration starts from; it is restored in ``before_train_iter`` of the first
    iteration after resuming (after the data replay, which does not touch torch's
    generator). It is restored only in single-process runs: the checkpoint holds rank 0's
    state, and giving it to every rank would change a multi-process run, not resume it.

    Validation runs after the checkpoint of its iteration is saved and draws from the
    generators too (a data loader draws a seed when it starts), so this hook also makes
    validation leave torch's, numpy's and python's random states as it found them: training
    then draws the same numbers whether or not, and wherever, it validated.
    """

    priority = 'VERY_HIGH'
    KEY = 'torch_rng_state'

    def __init__(self) -> None:
        self._pending: Optional[dict] = None
        self._before_val: Optional[tuple] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = {'cpu': torch.get_rng_state(), 'iter': checkpoint['meta'].get('iter')}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state()       # the current device's
        checkpoint[self.KEY] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Also called by plain `load_from`; before_train_iter tells the two apart.
        self._pending = checkpoint.get(self.KEY)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        state, self._pending = self._pending, None
        # Only when training continues exactly where the checkpoint was saved (a resume),
        # not after `load_from` (which starts at iteration 0).
        if state is None or state.get('iter') != runner.iter or get_world_size() > 1:
            return
        torch.set_rng_state(state['cpu'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state['cuda'])

    def before_val(self, runner) -> None:
        cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() \
            and torch.cuda.is_initialized() else None
        self._before_val = (torch.get_rng_state(), cuda, np.random.get_state(),
                            random.getstate())

    def after_val(self, runner) -> None:
        if self._before_val is None:
            return
        cpu, cuda, np_state, py_state = self._before_val
        self._before_val = None
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)
        np.random.set_state(np_state)
        random.setstate(py_state)
