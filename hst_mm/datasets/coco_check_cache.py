"""The verdicts of the COCO pre-check, remembered across runs, so that a restarted training
does not read a 450 MB annotation file again.

A verdict (the warning lines and the error line, or none, that ``tools/train.py`` prints
for one annotation file) is stored under a key made of the file name as given, its size, its
modification time, the sha256 of its first and last MiB, the check's arguments (classes,
``filter_cfg``, masks) and the check itself (the sha256 of :mod:`.coco_check`'s source), so
that an edited file or a changed check is checked again. Hashing two MiB instead of the whole
file keeps a cache hit cheap; the size and the nanosecond modification time catch edits in
between.

Entries are JSON files in ``$HST_MM_CACHE/coco_check/`` (default ``~/.cache/hst_mm``, the
cache ``tools/build_mmcv.sh`` uses), written atomically (:mod:`hst_mm.atomic_write`). An entry
that cannot be read, is not JSON, holds another key or a malformed verdict is ignored (the
file is checked again and the entry rewritten), never trusted; a cache that cannot be
written only costs the next run the check. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
from typing import List, Optional, TypedDict

from ..atomic_write import atomic_write_text
from . import coco_check

MIB = 2**20


class Verdict(TypedDict):
    """What the pre-check says about one annotation file: ``warnings`` to print, and
    ``error`` (one line) that stops training, or None."""

    warnings: List[str]
    error: Optional[str]


def cache_dir() -> str:
    """``$HST_MM_CACHE/coco_check`` (default ``~/.cache/hst_mm/coco_check``)."""
    root = os.environ.get('HST_MM_CACHE') or osp.join(osp.expanduser('~'), '.cache', 'hst_mm')
    return osp.join(root, 'coco_check')


def _check_digest() -> str:
    """The sha256 of the check's source: another check, another key."""
    with open(coco_check.__file__, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def file_key(ann_file: str, check_args: dict) -> dict:
    """The key of ``ann_file`` as it is now: name, size, modification time, the sha256 of its
    first and last MiB, ``check_args`` and the check's own digest."""
    st = os.stat(ann_file)
    digest = hashlib.sha256()
    with open(ann_file, 'rb') as f:
        digest.update(f.read(MIB))
        if st.st_size > MIB:
            f.seek(max(MIB, st.st_size - MIB))
            digest.update(f.read(MIB))
    return dict(
        ann_file=ann_file,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        ends_sha256=digest.hexdigest(),
        check_args=check_args,
        check=_check_digest(),
    )


def _entry_path(key: dict) -> str:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return osp.join(cache_dir(), f'{name}.json')


def _valid(verdict) -> bool:
    return (
        isinstance(verdict, dict)
        and set(verdict) == {'warnings', 'error'}
        and isinstance(verdict['warnings'], list)
        and all(isinstance(w, str) for w in verdict['warnings'])
        and (verdict['error'] is None or isinstance(verdict['error'], str))
    )


def cached_verdict(key: dict) -> Optional[Verdict]:
    """The stored verdict for ``key``; None if there is none or the entry is not a sound
    one (unreadable, not JSON, another key, a malformed verdict)."""
    try:
        with open(_entry_path(key), encoding='utf-8') as f:
            entry = json.load(f)
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(entry, dict) or entry.get('key') != json.loads(json.dumps(key)):
        return None
    verdict = entry.get('verdict')
    return verdict if _valid(verdict) else None


def store_verdict(key: dict, verdict: Verdict) -> None:
    """Remember ``verdict`` for ``key``; a cache that cannot be written is left alone."""
    path = _entry_path(key)
    try:
        os.makedirs(osp.dirname(path), exist_ok=True)
        atomic_write_text(path, json.dumps(dict(key=key, verdict=verdict)))
    except OSError:
        pass  # read-only or full home: the next run checks again
