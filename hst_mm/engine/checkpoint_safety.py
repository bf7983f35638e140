"""Safe loading of mmengine checkpoints on torch >= 2.6 (``weights_only=True``).

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch 2.6 that means
``weights_only=True``, and mmengine's own checkpoints are refused (they pickle the
message hub's ``HistoryBuffer`` and numpy arrays). Instead of switching the safety off for
every file, allow exactly the objects that mmengine writes.

The guarantee: no allow-listed global can reach an arbitrary attribute or call an arbitrary
object. Two names that mmengine's pickles use are generic builtins, so they are *not*
allow-listed as themselves but replaced, under their pickled names, by narrow functions:

* ``builtins.getattr``: ``HistoryBuffer`` pickles its statistics methods as
  ``getattr(HistoryBuffer, 'min')``. The real ``getattr`` would let a file walk
  ``getattr(getattr, '__self__')`` -> the ``builtins`` module -> ``eval``, which torch's own
  allow-listed ``_rebuild_from_type_v2`` then calls. :func:`history_buffer_statistic`
  returns only the statistics methods defined on ``HistoryBuffer`` and refuses the rest.
* ``builtins.bytes``: numpy pickles an empty array's data as ``bytes()``.
  :func:`pickled_bytes` builds bytes from nothing, bytes, or text, never from a size (which
  would let a file ask for any amount of memory).
* ``numpy.ndarray`` and numpy's ``_reconstruct``: numpy pickles an array as an empty one
  filled from the file's data; :func:`pickled_ndarray` and :func:`pickled_reconstruct`
  build exactly that, never an array of a size the file asks for.
"""

from __future__ import annotations

import collections
import os.path as osp
import pickle
import zipfile
from typing import List, Optional

import numpy as np
import torch

from ..models.pretrained import refusal_reason

_MULTIARRAY = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray


def history_buffer_statistic(obj: object, name: str):
    """``getattr`` as mmengine checkpoints use it: a statistics method of ``HistoryBuffer``.

    Registered for ``torch.load(weights_only=True)`` under the name ``builtins.getattr``;
    any other object or attribute is refused with ``pickle.UnpicklingError``.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    if (
        obj is HistoryBuffer
        and isinstance(name, str)
        and not name.startswith('_')
        and callable(vars(HistoryBuffer).get(name))
    ):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'refused getattr({_describe(obj)}, {name!r}) in a weights_only checkpoint: only '
        f'the statistics methods of mmengine HistoryBuffer may be named this way'
    )


def pickled_bytes(*args) -> bytes:
    """``bytes`` as pickles use it: ``bytes()``, ``bytes(b)`` or ``bytes(text, encoding)``."""
    if not args:
        return b''
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    if (
        len(args) == 2
        and isinstance(args[0], str)
        and args[1] in ('latin1', 'latin-1', 'utf-8', 'ascii')
    ):
        return args[0].encode(args[1])
    raise pickle.UnpicklingError(
        f'refused bytes({", ".join(_describe(a) for a in args)}) in a weights_only checkpoint'
    )


def pickled_bytearray(*args) -> bytearray:
    """``bytearray`` as pickles use it: ``bytearray()``, ``bytearray(b)`` or
    ``bytearray(text, encoding)``, never ``bytearray(size)``.

    torch's own ``weights_only`` table allows the real ``bytearray``, with which a file of a
    few bytes asks for any amount of memory; :func:`allow_mmengine_checkpoints` puts this
    function in its place.
    """
    if not args:
        return bytearray()
    if isinstance(args[0], int):
        raise pickle.UnpicklingError(
            f'refused bytearray({_describe(args[0])}) in a weights_only checkpoint: a '
            f'bytearray is built from the data in the file, never from a size'
        )
    return bytearray(pickled_bytes(*args))


def pickled_ndarray(*args):
    """``numpy.ndarray`` as a pickle names it: only as the type ``_reconstruct`` builds.

    Called by a file, the real ``numpy.ndarray(shape)`` allocates whatever size the file
    asks for (16 GiB from a 1.4 KB file); numpy's own pickles never call it, their data
    comes from the file through ``__setstate__``.
    """
    raise pickle.UnpicklingError(
        f'refused numpy.ndarray({", ".join(_describe(a) for a in args)}) in a weights_only '
        f'checkpoint: an array is built from the data in the file, never from a size'
    )


def pickled_reconstruct(subtype, shape, dtype):
    """``numpy.core.multiarray._reconstruct`` as numpy's pickles use it: an empty
    ``ndarray`` (``shape (0,)``) that ``__setstate__`` then fills from the file's data,
    which numpy checks against the shape; any other shape or type is refused."""
    if subtype is pickled_ndarray and shape == (0,) and dtype == b'b':
        return _MULTIARRAY._reconstruct(np.ndarray, shape, dtype)
    raise pickle.UnpicklingError(
        f'refused numpy _reconstruct({_describe(subtype)}, {_describe(shape)}, '
        f'{_describe(dtype)}) in a weights_only checkpoint: only the empty array numpy pickles'
    )


def _describe(obj: object) -> str:
    text = repr(obj) if isinstance(obj, (str, int, float, type(None))) else type(obj).__name__
    return text if len(text) < 60 else text[:57] + '...'


def mmengine_checkpoint_types() -> List[object]:
    """The globals that a checkpoint saved by mmengine's Runner pickles.

    Plain entries are allowed as themselves; ``(function, 'module.name')`` pairs put a
    narrow function where the pickle names a generic builtin.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    types = [
        HistoryBuffer,  # message_hub log scalars
        # numpy arrays inside HistoryBuffer; numpy >= 2 moved `core` to `_core`, pickles
        # name whichever wrote them
        (pickled_reconstruct, 'numpy.core.multiarray._reconstruct'),
        (pickled_reconstruct, 'numpy._core.multiarray._reconstruct'),
        (pickled_ndarray, 'numpy.ndarray'),
        # the array type itself, for BUILD (__setstate__) only: a pickle's GLOBAL cannot
        # name a key with a line break
        (np.ndarray, 'numpy.ndarray\n(built by pickled_reconstruct only)'),
        _MULTIARRAY.scalar,  # numpy scalars in runtime info
        np.dtype,
        collections.Counter,  # MultiStepLR milestones in scheduler state
        (history_buffer_statistic, 'builtins.getattr'),
        (pickled_bytes, 'builtins.bytes'),
    ]
    # pickled dtypes name their class: numpy.dtypes.Float64DType, ...
    types += [
        getattr(np.dtypes, n)
        for n in dir(np.dtypes)
        if n.endswith('DType') and n not in ('StringDType', 'VoidDType', 'ObjectDType')
    ]
    return types


def allow_mmengine_checkpoints() -> None:
    """Allow-list mmengine's checkpoint types for ``torch.load(weights_only=True)``, and
    narrow torch's own ``builtins.bytearray`` entry to :func:`pickled_bytearray`."""
    torch.serialization.add_safe_globals(mmengine_checkpoint_types())
    _narrow_torch_bytearray()


def _narrow_torch_bytearray() -> None:
    """torch checks its built-in table (``_get_allowed_globals``, computed once and cached)
    before the user's allow-list, so ``add_safe_globals`` cannot replace its
    ``builtins.bytearray``: the entry is replaced in that cached table. A torch without the
    table (another layout) is left as it is."""
    from torch import _weights_only_unpickler as unpickler

    table = getattr(unpickler, '_get_allowed_globals', None)
    allowed = table() if callable(table) else None
    if isinstance(allowed, dict) and allowed.get('builtins.bytearray') is bytearray:
        allowed['builtins.bytearray'] = pickled_bytearray


def refused_checkpoint_message(path: str, exc: BaseException) -> str:
    """What the tools print when a checkpoint file is refused."""
    return (
        f'{path}: refused by the safe checkpoint loader (torch.load weights_only=True): '
        f'{refusal_reason(exc)}. Load only files you trust; this one holds objects that '
        f'are not tensors, numbers or mmengine training state.'
    )


def incomplete_checkpoint(path: str) -> Optional[str]:
    """What makes ``path`` an unreadable torch checkpoint (empty, truncated), or None.

    torch saves a zip archive whose directory is at its end: a truncated file lacks it.
    Reads the archive's directory only, not the weights.
    """
    if '://' in str(path) or not osp.isfile(path):
        return None  # remote, or mmengine names the missing file itself
    if osp.getsize(path) == 0:
        return 'the file is empty (0 bytes)'
    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
    except zipfile.BadZipFile:
        with open(path, 'rb') as f:
            legacy = f.read(2) == b'\x80\x02'  # torch's pre-1.6 format (a pickle)
        return None if legacy else 'not a complete torch checkpoint (truncated or not a torch file)'
    return None
