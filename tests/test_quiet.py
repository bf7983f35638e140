"""The known-harmless upstream notices are filtered by message; the project's warnings and
every other warning still show; the run's log file keeps the lines the console drops."""

import importlib
import logging
import warnings

import numpy as np
import pytest

from hst_mm.engine.quiet import UPSTREAM_WARNINGS, quiet_console_log, quiet_upstream_warnings


def _reload_pkg_resources():
    import pkg_resources

    importlib.reload(pkg_resources)  # what mmengine's is_installed() does per config base


def _mmseg_decode_head_losses():
    from mmengine.registry import DefaultScope
    from mmseg.models.decode_heads import FCNHead

    # mmseg's scope, whatever an earlier test left: under mmdet's, the loss is mmdet's
    # CrossEntropyLoss, which does not give this notice
    with DefaultScope.overwrite_default_scope('mmseg'):
        FCNHead(in_channels=4, channels=4, num_classes=2)  # build_loss + CrossEntropyLoss


def _mmseg_load_annotations():
    from mmseg.datasets.transforms import LoadAnnotations

    LoadAnnotations(reduce_zero_label=True)


def _visualizer_without_save_dir():
    from mmengine.visualization import Visualizer

    Visualizer(name='test_quiet_vis', vis_backends=[dict(type='LocalVisBackend')])


def _mmseg_visualization_hook():
    from mmseg.engine.hooks import SegVisualizationHook
    from mmseg.visualization import SegLocalVisualizer

    SegLocalVisualizer.get_instance('test_quiet_seg_vis')  # the hook takes the current one
    SegVisualizationHook(draw=False)


def _pycocotools_decode():
    from pycocotools import mask

    mask.decode(mask.encode(np.asfortranarray(np.ones((4, 4, 1), np.uint8))))


# Each trigger calls the real upstream code that emits one notice of UPSTREAM_WARNINGS.
TRIGGERS = {
    'pkg_resources is deprecated': _reload_pkg_resources,
    'build_loss': _mmseg_decode_head_losses,
    'avg_non_ignore': _mmseg_decode_head_losses,
    'reduce_zero_label': _mmseg_load_annotations,
    'LocalVisBackend': _visualizer_without_save_dir,
    'The draw is False': _mmseg_visualization_hook,
    "doesn't accept a copy keyword": _pycocotools_decode,
}


def _notice(fragment):
    (notice,) = [n for n in UPSTREAM_WARNINGS if fragment in n.message.replace('\\', '')]
    return notice


def test_every_filter_has_a_trigger():
    assert len(TRIGGERS) == len(UPSTREAM_WARNINGS)
    assert {_notice(f) for f in TRIGGERS} == set(UPSTREAM_WARNINGS)


@pytest.mark.parametrize('fragment', sorted(TRIGGERS))
def test_filter_matches_the_real_upstream_warning(fragment):
    """Without the filters upstream emits the notice (so the pattern is not stale); with them
    it is gone."""
    notice = _notice(fragment)

    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter('always')
        TRIGGERS[fragment]()
    assert any(
        issubclass(r.category, notice.category) and fragment in str(r.message) for r in records
    ), f'upstream no longer emits {notice.message!r}: update hst_mm/engine/quiet.py'

    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter('always')
        quiet_upstream_warnings()
        TRIGGERS[fragment]()
    assert not any(fragment in str(r.message) for r in records)


def test_other_warnings_still_show():
    from hst_mm.models.hst import check_with_cp

    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter('always')
        quiet_upstream_warnings()
        check_with_cp('all')  # the project's own deprecation notice
        warnings.warn('pkg_resources could not find a distribution', UserWarning)
        warnings.warn('some other mmseg notice', UserWarning)
    assert [str(r.message)[:22] for r in records] == [
        "with_cp='all' is depre",
        'pkg_resources could no',
        'some other mmseg notic',
    ]


def test_console_drops_upstream_lines_the_log_file_keeps(tmp_path, capsys):
    from mmengine.logging import MMLogger

    log_file = tmp_path / 'run.log'
    logger = MMLogger.get_instance('test_quiet_console', log_file=str(log_file))
    quiet_console_log(logger)
    quiet_console_log(logger)  # idempotent: one filter per handler
    logger.warning(
        'backbone.trunk.vit.blocks.0.attn.qkv.weight is skipped since its requires_grad=False'
    )
    logger.info('paramwise_options -- backbone.trunk.meta_tokens:lr=0.0005')
    logger.warning('a warning of the run itself')
    logger.info('Iter(train) [1/2]  loss: 1.0')
    for handler in logger.handlers:
        handler.flush()
    console = capsys.readouterr().out
    assert 'requires_grad' not in console and 'paramwise_options' not in console
    assert 'a warning of the run itself' in console and 'Iter(train)' in console
    text = log_file.read_text()
    for line in ('requires_grad=False', 'paramwise_options', 'itself', 'Iter(train)'):
        assert line in text
    assert (
        sum(
            isinstance(f, logging.Filter) and type(f).__name__ == '_DropUpstreamLines'
            for h in logger.handlers
            for f in h.filters
        )
        == 1
    )
