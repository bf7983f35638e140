"""Training hooks that make a crash lose nothing, one per file, registered in mmengine's root
``HOOKS`` registry (mmdet and mmseg configs find them after ``import hst_mm``):

* ``CheckFiniteLossHook``: stop at the first non-finite loss or weight, before the save;
* ``AtomicCheckpointHook``: checkpoints written to a temporary file, then renamed;
* ``TorchRNGStateHook``: torch's random state carried across a resume;
* ``CheckpointFitHook``: a checkpoint of another model is refused, not half-loaded;
* ``WorkDirLockHook``: one training run at a time per work dir.

``tools/train.py`` adds them to every run (``--no-nan-check`` leaves out the first;
``tools/test.py`` adds the last); configs started otherwise (``mim train``) can list them::

    custom_hooks = [dict(type='CheckFiniteLossHook'), dict(type='TorchRNGStateHook'),
                    dict(type='CheckpointFitHook'), dict(type='WorkDirLockHook')]
    default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=...))
"""

from .atomic_checkpoint import AtomicCheckpointHook, atomic_write_text
from .checkpoint_fit import CheckpointFitHook, CheckpointMismatchError
from .finite_loss import CheckFiniteLossHook, NonFiniteLossError
from .rng_state import TorchRNGStateHook
from .work_dir_lock import WorkDirLockedError, WorkDirLockHook

__all__ = [
    'AtomicCheckpointHook',
    'CheckFiniteLossHook',
    'CheckpointFitHook',
    'CheckpointMismatchError',
    'NonFiniteLossError',
    'TorchRNGStateHook',
    'WorkDirLockHook',
    'WorkDirLockedError',
    'atomic_write_text',
]
