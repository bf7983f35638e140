"""Writing a file so that a kill, a power cut or a full disk never leaves half of it.

The content goes to a temporary file with a new name in the same folder (``.NAME.PID.HEX.tmp``,
created exclusively, so nothing that exists is ever overwritten on the way; it gets the
usual permissions, unlike a ``mkstemp`` file), is flushed to disk (``fsync``) and renamed
over ``path`` (``os.replace``, atomic within a file system on POSIX); the folder is then
flushed too, so the rename itself survives a power cut. Readers see the old file or the new
one, never a mix. A write that fails removes its temporary file (a full disk stays usable)
and leaves the old file as it was.

* :func:`atomic_path`: a context manager yielding the temporary *path*, for writers that
  open the file themselves (``torch.save(obj, path)``, mmengine's checkpoint saving);
* :func:`atomic_open`: a context manager yielding the open temporary *file*;
* :func:`atomic_write_bytes`, :func:`atomic_write_text`: the whole content at once.

Standard library only, so tools and the workshop can use it without the training stack.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import IO, Iterator, Union

PathLike = Union[str, 'os.PathLike[str]']


def _fsync_folder(folder: str) -> None:
    """Flush a folder's entries (the rename) to disk, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    with open(path, 'rb+') as f:
        os.fsync(f.fileno())


def _new_temporary(path: str) -> str:
    """Create an empty temporary file beside ``path`` with a name nothing else uses."""
    folder, name = os.path.split(os.path.abspath(path))
    while True:
        tmp = os.path.join(folder, f'.{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
        try:
            with open(tmp, 'x'):
                return tmp
        except FileExistsError:  # practically never: try another name
            continue


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; whatever is written there replaces ``path``
    when the block ends without an error. On an error (or a kill signal raised as an
    exception) the temporary file is removed and ``path`` is left as it was::

        with atomic_path('model.pth') as tmp:
            torch.save(state, tmp)
    """
    path = os.fspath(path)
    tmp = _new_temporary(path)
    try:
        yield tmp
        _fsync_file(tmp)  # data on disk before the rename, so a power cut cannot empty it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)  # a partial file would keep a full disk full
        raise
    _fsync_folder(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = 'w', **open_kwargs) -> Iterator[IO]:
    """Like ``open(path, mode)`` for writing (``'w'`` or ``'wb'``), through
    :func:`atomic_path`: ``path`` changes only when the block ends without an error."""
    if mode not in ('w', 'wb'):
        raise ValueError(f"atomic_open: mode {mode!r}, expected 'w' or 'wb'")
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as f:
        yield f


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` (readers see the old or the new content)."""
    with atomic_open(path, 'wb') as f:
        f.write(data)


def atomic_write_text(path: PathLike, text: str, encoding: str = 'utf-8') -> None:
    """Replace ``path`` with ``text`` (readers see the old or the new content)."""
    with atomic_open(path, 'w', encoding=encoding) as f:
        f.write(text)
