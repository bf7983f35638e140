"""One training run at a time per work dir.

Two runs started into one work dir both write ``iter_N.pth`` and ``last_checkpoint``: the
later one silently replaces the earlier one's checkpoints. The main process of a run holds an
exclusive ``fcntl.flock`` on ``WORK_DIR/train.lock`` for as long as it runs; the kernel
releases it when the process ends, however it ends (a kill included), so a lock is never left
held by a dead process. The file names its holder (pid, host, start time, command): a second
run is refused with that name, and a lock file left by a run that died is reported as such
and taken over.
"""

from __future__ import annotations

import fcntl
import os
import os.path as osp
import socket
import sys
import time
from typing import Dict, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop

LOCK_NAME = 'train.lock'
_held: Dict[str, int] = {}  # real path of a held lock file -> its open descriptor


class WorkDirLockedError(RuntimeError):
    """The work dir is in use by another run (names the lock file and its holder)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def lock_work_dir(work_dir: str, log=print) -> Optional[str]:
    """Take the run lock of ``work_dir`` for this process (a no-op if it holds it already).

    Raises :class:`WorkDirLockedError` naming the holder if another live process holds it.
    Returns a note when a lock file of a dead run was found and taken over, else None.
    """
    os.makedirs(work_dir, exist_ok=True)
    path = osp.realpath(osp.join(work_dir, LOCK_NAME))
    if path in _held:
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode('utf-8', 'replace').strip() or 'another process'
        os.close(fd)
        raise WorkDirLockedError(
            f'{path}: work dir {work_dir} is in use by another training run ({holder}); '
            f'wait for it to end, or train into another --work-dir'
        ) from None
    previous = os.pread(fd, 4096, 0).decode('utf-8', 'replace').strip()
    note = None
    if previous:
        pid = previous.split()[1] if previous.startswith('pid ') else ''
        same_host = f'host {socket.gethostname()} ' in previous
        state = (
            'ended without releasing it'
            if not same_host
            else ('is no longer running' if pid.isdigit() and not _pid_alive(int(pid)) else 'ended')
        )
        note = f'{path}: lock of an earlier run ({previous}) that {state}; taken over'
    os.ftruncate(fd, 0)
    os.pwrite(
        fd,
        (
            f'pid {os.getpid()} host {socket.gethostname()} started '
            f'{time.strftime("%Y-%m-%d %H:%M:%S")} command {" ".join(sys.argv)[:300]}\n'
        ).encode(),
        0,
    )
    _held[path] = fd
    if note and log is not None:
        log(f'note: {note}')
    return note


def unlock_work_dir(work_dir: str) -> None:
    """Release this process's run lock of ``work_dir`` (the file is emptied, not removed:
    removing it could let a third run lock a file nobody else sees)."""
    path = osp.realpath(osp.join(work_dir, LOCK_NAME))
    fd = _held.pop(path, None)
    if fd is None:
        return
    os.ftruncate(fd, 0)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@HOOKS.register_module()
class WorkDirLockHook(Hook):
    """Hold the work dir's run lock (:func:`lock_work_dir`) while training, on the main
    process; released in ``after_run`` or, if training fails, when the process ends.
    Testing and validation (``Runner.test`` / ``val``) take no lock."""

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        if is_main_process() and _training(runner):
            lock_work_dir(runner.work_dir, log=runner.logger.warning)

    def after_run(self, runner) -> None:
        if is_main_process() and _training(runner):
            unlock_work_dir(runner.work_dir)


def _training(runner) -> bool:
    # Runner.train() builds the train loop before before_run; test() and val() do not
    return isinstance(getattr(runner, '_train_loop', None), BaseLoop)
