"""Safe loading of mmengine checkpoints on torch >= 2.6 (``weights_only=True``).

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch 2.6 that means
``weights_only=True``, and mmengine's own checkpoints are refused (they pickle the
message hub's ``HistoryBuffer`` and numpy arrays). Instead of switching the safety off for
every file, allow exactly the types that mmengine writes. A checkpoint carrying anything
else (say, a pickled callable) is still refused by torch.
"""
from __future__ import annotations

import collections
from typing import List

import numpy as np
import torch


def mmengine_checkpoint_types() -> List[object]:
    """The globals that a checkpoint saved by mmengine's Runner pickles."""
    from mmengine.logging.history_buffer import HistoryBuffer
    # numpy >= 2 moved `core` to `_core`; pickles name whichever wrote them.
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    types = [
        HistoryBuffer,                  # message_hub log scalars
        multiarray._reconstruct,        # numpy arrays inside HistoryBuffer
        multiarray.scalar,              # numpy scalars in runtime info
        np.ndarray,
        np.dtype,
        collections.Counter,            # MultiStepLR milestones in scheduler state
        # HistoryBuffer's statistics methods are pickled by qualified name, which pickle
        # writes as `getattr(HistoryBuffer, 'min')`. Allowing getattr only lets a file read
        # attributes of objects it could already build: torch's weights-only unpickler still
        # refuses to *call* anything that is not itself allow-listed.
        getattr,
    ]
    # pickled dtypes name their class: numpy.dtypes.Float64DType, ...
    types += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith('DType')
              and n not in ('StringDType', 'VoidDType', 'ObjectDType')]
    return types


def allow_mmengine_checkpoints() -> None:
    """Allow-list mmengine's checkpoint types for ``torch.load(weights_only=True)``."""
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(mmengine_checkpoint_types())
