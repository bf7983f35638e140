"""The tools' quiet console for any run whose config lists the hook (``mim train/test``)."""

from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.registry import HOOKS

from ..quiet import quiet_console_log, quiet_upstream_warnings


@HOOKS.register_module()
class QuietConsoleHook(Hook):
    """Keep the known-harmless upstream notices of :mod:`hst_mm.engine.quiet` off the console.

    It acts when the Runner builds it (after the logger and the model, before the optimizer
    and the data loaders, whose lines it is mostly about): the Python warnings of
    ``UPSTREAM_WARNINGS`` are ignored in the process from then on, and the mmengine lines of
    ``UPSTREAM_LOG_LINES`` (about 150 per HST run) are dropped from the console handlers of
    the Runner's logger (the current ``MMLogger``); the run's log file keeps every line.
    Errors, tracebacks and any other warning still reach the console.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        quiet_upstream_warnings()
        quiet_console_log(MMLogger.get_current_instance())

    def before_run(self, runner) -> None:
        quiet_console_log(runner.logger)  # idempotent; the Runner's logger in any case
