"""Training hooks that make a crash lose nothing, one per file, registered in mmengine's root
``HOOKS`` registry (mmdet and mmseg configs find them after ``import hst_mm``):

* ``CheckFiniteLossHook``: stop at the first non-finite loss or weight, before the save;
* ``AtomicCheckpointHook``: checkpoints written to a temporary file, then renamed;
* ``TorchRNGStateHook``: torch's random state carried across a resume;
* ``CheckpointFitHook``: a checkpoint of another model is refused, not half-loaded;
* ``QuietConsoleHook``: the known-harmless upstream notices kept off the console.
* ``WorkDirLockHook``: one training run at a time per work dir;
* ``RunConfigHook``: the work dir's config copy without helper variables; a renamed config
  named with its new name.

The shipped configs list them (``configs/_base_/hst_runtime.py``), so ``tools/train.py``,
``tools/test.py`` and ``mim train/test`` run them alike; ``tools/train.py`` also adds the
first four to a config that lacks them (``--no-nan-check`` removes ``CheckFiniteLossHook``).
Another config can list them::

    custom_hooks = [dict(type='TorchRNGStateHook'), dict(type='CheckpointFitHook'),
                    dict(type='WorkDirLockHook'), dict(type='CheckFiniteLossHook'),
                    dict(type='QuietConsoleHook'), dict(type='RunConfigHook')]
    default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=...))
"""

from .atomic_checkpoint import AtomicCheckpointHook, atomic_write_text
from .checkpoint_fit import CheckpointFitHook, CheckpointMismatchError
from .finite_loss import CheckFiniteLossHook, NonFiniteLossError
from .quiet_console import QuietConsoleHook
from .rng_state import TorchRNGStateHook
from .run_config import RunConfigHook
from .work_dir_lock import WorkDirLockedError, WorkDirLockHook

__all__ = [
    'AtomicCheckpointHook',
    'CheckFiniteLossHook',
    'CheckpointFitHook',
    'CheckpointMismatchError',
    'NonFiniteLossError',
    'QuietConsoleHook',
    'RunConfigHook',
    'TorchRNGStateHook',
    'WorkDirLockHook',
    'WorkDirLockedError',
    'atomic_write_text',
]
