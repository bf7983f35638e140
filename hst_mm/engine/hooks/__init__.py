"""Training hooks that make a crash lose nothing, one per file, registered in mmengine's root
``HOOKS`` registry (mmdet and mmseg configs find them after ``import hst_mm``).

``tools/train.py`` adds them to every run (``--no-nan-check`` leaves out the first);
configs started otherwise (``mim train``) can list them themselves::

    custom_hooks = [dict(type='CheckFiniteLossHook'), dict(type='TorchRNGStateHook')]
    default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=...))
"""
from .atomic_checkpoint import AtomicCheckpointHook, atomic_write_text
from ..checkpoint_fit import CheckpointFitHook, CheckpointMismatchError
from .finite_loss import CheckFiniteLossHook, NonFiniteLossError
from .rng_state import TorchRNGStateHook

__all__ = ['AtomicCheckpointHook', 'CheckFiniteLossHook', 'CheckpointFitHook',
           'CheckpointMismatchError', 'NonFiniteLossError',
           'TorchRNGStateHook', 'atomic_write_text']
