"""Known-harmless notices of the pinned upstream stack, kept off the console of the
project's own processes (``tools/train.py``, ``tools/test.py``, ``tools/demo.py``,
``tools/run_demo.py``, ``tools/draw_overview.py``).

Two kinds, both matched by category *and* message, never by a whole category or module:

* Python warnings (:data:`UPSTREAM_WARNINGS`), filtered by :func:`quiet_upstream_warnings`,
  which the tools call at start-up; importing :mod:`hst_mm` changes no filter (a run
  started otherwise, e.g. ``mim train``, is quieted by its config's ``QuietConsoleHook``);
* mmengine log lines (:data:`UPSTREAM_LOG_LINES`), dropped from the console by
  :func:`quiet_console_log`; the run's log file in the work dir keeps every line.

``QuietConsoleHook`` (:mod:`hst_mm.engine.hooks`) applies both to a run whose config lists
it (the shipped configs do, through ``configs/_base_/hst_runtime.py``), so ``mim train/test``
prints what the tools print. It hides only the notices listed here, matched by level and
message: errors, tracebacks and any other warning still reach the console.

``hst_mm/__init__.py`` ignores :data:`PKG_RESOURCES_NOTICE` during its own import of
mmengine only (a filter installed afterwards would come too late for that one).
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import NamedTuple, Tuple, Type  # no mmengine here: tools/*.py --help imports this


class Notice(NamedTuple):
    category: Type[Warning]
    message: str  # regular expression matched at the start of the message
    where: str  # the upstream line that emits it
    why: str  # why it is harmless here


# setuptools is pinned < 81 because mmengine resolves ``mmdet::`` / ``mmseg::`` config bases
# through pkg_resources (requirements/pins.txt): the notice is about that pin, which the
# project made on purpose.
PKG_RESOURCES_NOTICE = r'pkg_resources is deprecated as an API'

UPSTREAM_WARNINGS: Tuple[Notice, ...] = (
    Notice(
        UserWarning,
        PKG_RESOURCES_NOTICE,
        'mmengine/utils/package_utils.py:17 (import) and its is_installed(), which reloads '
        'pkg_resources for every mmdet::/mmseg:: config base; mim likewise',
        'setuptools < 81 is pinned on purpose (pkg_resources resolves config bases)',
    ),
    Notice(
        UserWarning,
        r'``build_loss`` would be deprecated soon',
        "mmseg/models/builder.py:36, called by mmseg's own decode heads",
        "mmseg's internal API use; the configs build losses through the registry",
    ),
    Notice(
        UserWarning,
        r'Default ``avg_non_ignore`` is False',
        'mmseg/models/losses/cross_entropy_loss.py:250, every CrossEntropyLoss',
        "mmseg's default, kept on purpose as in mmseg's own ADE20K configs",
    ),
    Notice(
        UserWarning,
        r'`reduce_zero_label` will be deprecated',
        'mmseg/datasets/transforms/loading.py:83, LoadAnnotations(reduce_zero_label=...)',
        "the ADE20K pipelines pass it as mmseg's own ADE20K configs do; the data set "
        'applies the same setting',
    ),
    Notice(
        UserWarning,
        r"Failed to add <class 'mmengine\.visualization\.vis_backend\.LocalVisBackend'>, "
        r'please provide the `save_dir` argument',
        'mmengine/visualization/visualizer.py:196, a visualizer built without a save_dir '
        "(mmdet's init_detector, mmseg's init_model and Inferencers)",
        'pictures are written to the files the caller names (out_file), not to vis_data/',
    ),
    Notice(
        UserWarning,
        r'The draw is False, it means that the hook for visualization will not take effect',
        'mmseg/engine/hooks/visualization_hook.py:60, SegVisualizationHook(draw=False)',
        "mmseg's default: pictures are drawn only with tools/test.py --show-dir",
    ),
    Notice(
        DeprecationWarning,
        r"__array__ implementation doesn't accept a copy keyword",
        'pycocotools/mask.py:89 (decode, compiled against numpy 1) under numpy 2',
        'numpy retries without the keyword; the decoded masks are the same',
    ),
)

# mmengine log lines (level, message regex) that every HST run repeats.
UPSTREAM_LOG_LINES: Tuple[Tuple[int, str], ...] = (
    # DefaultOptimWrapperConstructor, once per frozen trunk parameter (about 150 lines):
    # a frozen trunk is what HST prescribes.
    (logging.WARNING, r'.* is skipped since its requires_grad=False$'),
    # DefaultOptimWrapperConstructor, once per parameter without weight decay (norms, tokens).
    (logging.INFO, r'paramwise_options -- '),
    # mmdet's and mmseg's image loading calls mmengine's deprecated FileClient.
    (logging.WARNING, r'"FileClient" will be deprecated in future'),
    (logging.WARNING, r'"HardDiskBackend" is the alias of "LocalBackend"'),
    # mmengine's IterBasedTrainLoop at each pass over a data set with a finite sampler (the
    # configs keep mmdet's DefaultSampler): the loader restarts, as the message says.
    (logging.WARNING, r'Reach the end of the dataloader, it will be restarted'),
    # mmengine's BaseMetric: mmseg's IoUMetric has no default prefix; its keys (mIoU, aAcc,
    # mAcc) are unique without one.
    (logging.WARNING, r'The prefix is not set in metric class IoUMetric\.'),
)


def quiet_upstream_warnings() -> None:
    """Ignore the Python warnings of :data:`UPSTREAM_WARNINGS` in this process."""
    for notice in UPSTREAM_WARNINGS:
        warnings.filterwarnings('ignore', message=notice.message, category=notice.category)


class _DropUpstreamLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(
            record.levelno == level and re.match(pattern, message)
            for level, pattern in UPSTREAM_LOG_LINES
        )


def quiet_console_log(logger: logging.Logger) -> None:
    """Drop :data:`UPSTREAM_LOG_LINES` from ``logger``'s console handlers; its file handlers
    (the run's ``<work_dir>/<timestamp>/<timestamp>.log``) keep them."""
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            if not any(isinstance(f, _DropUpstreamLines) for f in handler.filters):
                handler.addFilter(_DropUpstreamLines())
