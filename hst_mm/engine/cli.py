"""The command-line handling that ``tools/train.py`` and ``tools/test.py`` share, after their
arguments are parsed (each tool parses its own with argparse alone, before this module and
torch are imported, so that ``--help`` answers at once)."""

from __future__ import annotations

import argparse
import os.path as osp
import sys
from typing import Callable, Optional, Union

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmengine.utils import import_modules_from_strings

from .errors import user_error_message
from .quiet import quiet_console_log, quiet_upstream_warnings


def load_config(args: argparse.Namespace) -> Config:
    """The config with the launcher, ``--cfg-options`` and the work dir applied; also the
    tool's start-up after its arguments are parsed: the known-harmless upstream warnings
    (:mod:`hst_mm.engine.quiet`) are filtered from here on.

    Work dir: ``--work-dir`` > the config's ``work_dir`` > ``./work_dirs/<config name>``.
    """
    quiet_upstream_warnings()
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        options = cfg_options(args.cfg_options)
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
