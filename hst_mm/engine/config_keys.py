"""``--cfg-options`` keys and the config path, checked before anything runs: a misspelt key
or path is named with the closest existing ones in one ``error:`` line (exit status 2, as
argparse's own errors), instead of a ``KeyError`` after a long config dump or a traceback.

New keys stay allowed (a config of mmdet or mmseg often leaves a hook's or a model part's
argument at its default, or the Runner's ``randomness`` out, and ``--cfg-options`` is how it
is set): a key or dict the config lacks is refused only when it is close to an existing key
beside it (``train_cfg.max_iter`` beside ``max_iters``; ``default_hooks.chekpoint.interval``:
the dict ``chekpoint`` beside ``checkpoint``; a dict is matched more loosely than a last key,
as a value set into a misspelt dict would be lost).
"""

from __future__ import annotations

import difflib
import glob
import os.path as osp
import sys
from typing import Iterable, List, Mapping, Optional, Sequence

# How close a new key must be to an existing one to be taken for a misspelling of it:
# 'chekpoint' / 'checkpoint' is 0.95, 'max_iter' / 'max_iters' 0.94, 'drop_rate' /
# 'drop_path_rate' (a real, different argument) 0.78.
CUTOFF = 0.85


class UsageError(ValueError):
    """A command line naming something that does not exist (exit status 2)."""


def closest(name: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> List[str]:
    return difflib.get_close_matches(name, sorted(set(candidates)), n=n, cutoff=cutoff)


def _suggest(names: List[str]) -> str:
    return f'; did you mean {" or ".join(names)}?' if names else ''


def check_key(cfg: Mapping, key: str) -> Optional[str]:
    """Why ``key`` (dotted, as ``--cfg-options`` takes it) is refused for ``cfg``, or None."""
    node, path = cfg, []
    parts = key.split('.')
    for i, part in enumerate(parts):
        where = '.'.join(path) or 'the config'
        last = i == len(parts) - 1
        if node is None:
            return None  # mmengine replaces a None with the dict the options build
        if isinstance(node, (list, tuple)):
            if not (part.isdigit() and int(part) < len(node)):
                return f'{key}: {where} is a list of {len(node)}; {part!r} is not an index of it'
            node = node[int(part)]
        elif isinstance(node, Mapping):
            if part in node:
                node = node[part]
            else:
                # a key the config lacks, or a dict it lacks (mmengine creates both): refused
                # only when it is close to an existing key beside it, a misspelling of it
                near = closest(part, [str(k) for k in node], cutoff=CUTOFF if last else 0.6)
                if not near:
                    return None
                names = ['.'.join(path + [n]) for n in near]
                return f'{key}: no key {part!r} in {where}{_suggest(names)}'
        else:
            return f'{key}: {where} is a {type(node).__name__}, not a dict'
        path.append(part)
    return None


def check_cfg_options(cfg: Mapping, options: Mapping) -> None:
    """Raise :class:`UsageError` for the first ``--cfg-options`` key :func:`check_key`
    refuses."""
    for key in options:
        problem = check_key(cfg, key)
        if problem:
            raise UsageError(f'--cfg-options {problem}')


def config_names(dirs: Sequence[str]) -> List[str]:
    """The config files (``*.py``, not in ``_base_``, not a former name kept for one release)
    under ``dirs``, as given."""
    from .hooks.run_config import renamed_to

    found = set()
    for d in dirs:
        if osp.isdir(d):
            found.update(glob.glob(osp.join(glob.escape(d), '**', '*.py'), recursive=True))
    return sorted(
        p for p in found if '_base_' not in p.split(osp.sep) and not _renamed(p, renamed_to)
    )


def _renamed(path: str, renamed_to) -> bool:
    try:
        return renamed_to(path) is not None
    except (OSError, SyntaxError, UnicodeDecodeError):  # not a config: not suggested
        return True


def check_config_path(path: str, search: Sequence[str] = ()) -> None:
    """Raise :class:`UsageError` naming the closest config files when ``path`` is not a file;
    searched: the directories of ``search`` (the checkout's ``configs/``) and the nearest
    existing directory of ``path``."""
    if osp.isfile(path):
        return
    near_dir = osp.dirname(osp.abspath(path))
    while not osp.isdir(near_dir):
        near_dir = osp.dirname(near_dir)
    files = config_names(list(search) + [near_dir])
    by_name = {}
    for f in files:
        by_name.setdefault(osp.splitext(osp.basename(f))[0], osp.relpath(f))
    stem = osp.splitext(osp.basename(path))[0]
    names = [by_name[n] for n in closest(stem, by_name, cutoff=0.5)]
    raise UsageError(f'config file not found: {path}{_suggest(names)}')


def exit_usage(error: UsageError) -> None:
    """One ``error:`` line and exit status 2 (argparse's status for a wrong command line)."""
    print(f'error: {error}', file=sys.stderr)
    sys.exit(2)
