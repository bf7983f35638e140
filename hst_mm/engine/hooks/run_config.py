"""What a run's saved config tells its reader: no helper variables, and a renamed config's
new name (for any run whose config lists the hook: ``tools/train.py``, ``tools/test.py``,
``mim train/test``)."""

from __future__ import annotations

import ast
from typing import List, Optional

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

# The key a config kept under its former name carries: the path of the config it now is.
RENAMED_KEY = 'config_renamed_to'


def helper_keys(cfg: Config) -> List[str]:
    """The top-level names of ``cfg`` that are helper variables of its files: those starting
    with one underscore (``_hst_backbone``). mmengine drops only ``__``-prefixed names, and
    drops them from a base file before the configs that inherit it can read them
    (``{{_base_.__x}}`` fails), so the bases' helpers carry one underscore; by the time the
    config is loaded every ``{{_base_._x}}`` has been replaced by its value."""
    return [k for k in cfg.keys() if k.startswith('_') and not k.startswith('__')]


def drop_helpers(cfg: Config) -> bool:
    """Remove :func:`helper_keys` from ``cfg``; whether there were any."""
    keys = helper_keys(cfg)
    for key in keys:
        cfg.pop(key)
    return bool(keys)


def renamed_to(path: str) -> Optional[str]:
    """The config a config file at ``path`` is the former name of (its own
    ``config_renamed_to = '...'``, read without loading it or its bases), or None."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, 'id', None) for t in node.targets] == [RENAMED_KEY]
            and isinstance(node.value, ast.Constant)
        ):
            return node.value.value
    return None


def renamed_config_message(cfg: Config) -> str | None:
    """The warning for a config used under its former name, or None."""
    new = cfg.get(RENAMED_KEY)
    if not new:
        return None
    return (
        f'{cfg.filename} is the former name of {new}: it runs the same config and goes '
        f'away in the next release; use {new}'
    )


@HOOKS.register_module()
class RunConfigHook(Hook):
    """Before the run: a config used under its former name is named with its new one (a
    warning in the log and on the console), and the config copy mmengine wrote into the work
    dir (``<work_dir>/<config name>.py``) is written again without the helper variables of
    :func:`helper_keys` (``tools/train.py`` and ``tools/test.py`` drop them before the Runner
    is built; this covers ``mim train/test`` and other runners).
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        message = renamed_config_message(runner.cfg)
        if message:
            runner.logger.warning(message)
        if drop_helpers(runner.cfg):
            runner.dump_config()  # rank 0 only (mmengine's master_only)
