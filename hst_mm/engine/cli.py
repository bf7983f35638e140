"""The command-line handling that ``tools/train.py`` and ``tools/test.py`` share, after their
arguments are parsed (each tool parses its own with argparse alone, before this module and
torch are imported, so that ``--help`` answers at once)."""

from __future__ import annotations

import argparse
import os.path as osp
import sys
from typing import Callable, Optional, Sequence, Union

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmengine.utils import import_modules_from_strings

from .config_keys import UsageError, check_cfg_options, check_config_path, exit_usage
from .errors import user_error_message
from .hooks.run_config import drop_helpers
from .quiet import quiet_console_log, quiet_upstream_warnings


def load_config(args: argparse.Namespace, config_dirs: Sequence[str] = ()) -> Config:
    """The config with the launcher, ``--cfg-options`` and the work dir applied; also the
    tool's start-up after its arguments are parsed: the known-harmless upstream warnings
    (:mod:`hst_mm.engine.quiet`) are filtered from here on.

    A config path that is not a file, or a ``--cfg-options`` key that is a misspelling
    (:mod:`.config_keys`), ends the process with one ``error:`` line naming the closest
    config files (in ``config_dirs`` and beside the path) or keys, exit status 2. The bases'
    helper variables (``_``-prefixed, :func:`.hooks.run_config.helper_keys`) are dropped, so
    the Runner's log and work-dir copy of the config show what the run uses.

    Work dir: ``--work-dir`` > the config's ``work_dir`` > ``./work_dirs/<config name>``.
    """
    quiet_upstream_warnings()
    try:
        check_config_path(args.config, config_dirs)
        cfg = Config.fromfile(args.config)
        drop_helpers(cfg)
        options = cfg_options(args.cfg_options) if args.cfg_options is not None else None
        if options:
            check_cfg_options(dict(cfg.items()), options)
    except UsageError as e:
        exit_usage(e)
    cfg.launcher = args.launcher
    if options:
        cfg.merge_from_dict(options)
        if any(k.split('.')[0] == 'custom_imports' for k in options):
            import_custom_modules(cfg, args.config)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def cfg_options(options) -> dict:
    """``--cfg-options`` as mmengine's ``DictAction`` reads them (``key=value`` strings, lists
    and tuples in values); the tools parse their arguments with argparse alone, so that
    ``--help`` imports nothing heavy. A dict is taken as it is."""
    if isinstance(options, dict):
        return options
    parser = argparse.ArgumentParser(prog='--cfg-options', add_help=False)
    parser.add_argument('options', nargs='*', action=DictAction)
    return parser.parse_args(list(options)).options


def import_custom_modules(cfg: Config, config: str) -> None:
    """Import ``custom_imports`` given by ``--cfg-options`` (mmengine imports a config file's
    own while reading it, so an override would otherwise be ignored without a word)."""
    imports = cfg.get('custom_imports')
    if not isinstance(imports, dict) or not isinstance(imports.get('imports'), (str, list)):
        sys.exit(
            f'error: --cfg-options custom_imports: expected custom_imports.imports=[MODULE,...] '
            f'(optionally custom_imports.allow_failed_imports=True), got {imports!r}'
        )
    try:
        import_modules_from_strings(**imports)
    except ImportError as e:
        sys.exit(f'error: --cfg-options custom_imports ({config}): {e}')


def build_runner(cfg: Config) -> Runner:
    """mmengine's Runner, or the config's ``runner_type`` built through the registry (as
    mmdet's and mmseg's tools do: ``Runner.from_cfg`` ignores ``runner_type``)."""
    return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)


def run(
    cfg: Config,
    job: Callable[[Runner], object],
    checkpoint: Union[str, Callable[[], Optional[str]], None] = None,
    before: Optional[Callable[[], None]] = None,
):
    """Build the runner and run ``job(runner)``; an error caused by the user's files (a
    refused or unfitting checkpoint, a non-finite loss) ends the process with one
    ``error:`` line, also written to the run's log, instead of a traceback."""
    runner = None
    try:
        if before is not None:
            before()
        runner = build_runner(cfg)
        quiet_console_log(runner.logger)  # the log file in the work dir keeps every line
        result = job(runner)
        log_file = osp.join(runner.log_dir, f'{runner.timestamp}.log')
        runner.logger.info(f'done: work dir {runner.work_dir}, full log {log_file}')
        return result
    except Exception as e:
        message = user_error_message(e, checkpoint() if callable(checkpoint) else checkpoint)
        if message is None:
            raise
        if runner is not None:
            runner.logger.error(message)
        sys.exit(f'error: {message}')
