"""Checkpoints saved so that a kill or a full disk never leaves a truncated or missing one."""

from __future__ import annotations

import contextlib
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from ...atomic_write import atomic_path, atomic_write_text


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose local saves cannot leave a truncated or missing checkpoint.

    mmengine 0.10.7 writes a checkpoint straight to its final path (``LocalBackend.put``
    opens ``iter_N.pth`` with ``'wb'``), deletes the oldest kept checkpoint *before* saving
    the new one (``max_keep_ckpts``), and rewrites ``last_checkpoint`` in place. A kill
    during a save can therefore leave a truncated ``iter_N.pth``, and with
    ``max_keep_ckpts=1`` no checkpoint at all. Here the checkpoint is written to a
    temporary file beside ``iter_N.pth``, flushed to disk and renamed
    (:mod:`hst_mm.atomic_write`), then ``last_checkpoint`` is replaced the same way, and only
    then is the oldest checkpoint deleted. A save that fails (a full disk) removes its
    temporary file so as not to keep the disk full; the disk needs room for one more checkpoint than
    ``max_keep_ckpts`` while a save is under way.

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
        if (
            self.file_client_args is not None
            or type(self.file_backend) is not LocalBackend
            or not isinstance(runner, Runner)
        ):  # FlexibleRunner saves differently
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
        # only the main process writes; the others take part in the save without a file
        saving = atomic_path if is_main_process() else contextlib.nullcontext
        with saving(self.last_ckpt) as tmp:
            runner.save_checkpoint(
                self.out_dir,
                osp.basename(tmp),
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args,
            )
        if not is_main_process():
            return
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        if stale is not None:
            path = osp.join(self.out_dir, self.filename_tmpl.format(stale))
            if osp.isfile(path):
                os.remove(path)
