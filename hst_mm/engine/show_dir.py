"""``tools/test.py --show-dir DIR`` as mmdet's and mmseg's ``tools/test.py`` mean it: the
painted predictions go to ``<work_dir>/<timestamp>/DIR`` (an absolute DIR as it is), beside
the run's log, never into the directory the tool is run from."""

from __future__ import annotations

import os.path as osp

from mmengine.config import Config


def show_dir(cfg: Config, directory: str) -> None:
    """Turn on the config's visualization hook for every test image, drawing into
    ``<work_dir>/<timestamp>/directory``.

    mmdet: ``DetVisualizationHook`` joins its ``test_out_dir`` to the work dir and the run's
    timestamp itself. mmseg: ``SegVisualizationHook`` hands the pictures to the visualizer's
    back-ends, whose directory is the run's ``<timestamp>/vis_data`` (the Runner's default
    ``save_dir``); each ``LocalVisBackend`` gets ``img_save_dir='../DIR'`` relative to it.
    (mmseg's own tool sets ``visualizer.save_dir=DIR``, which lands in the current
    directory, although its help promises ``work_dir/timestamp/show_dir``.)
    """
    hooks = cfg.get('default_hooks') or {}
    if 'visualization' not in hooks:
        raise KeyError(f'{cfg.filename}: --show-dir needs default_hooks.visualization')
    vis = hooks['visualization']
    vis.draw, vis.interval = True, 1
    if cfg.get('default_scope') != 'mmseg':
        vis.test_out_dir = directory
        return
    vis.show = False
    backends = (cfg.get('visualizer') or {}).get('vis_backends') or []
    local = [b for b in backends if str(b.get('type', '')).endswith('LocalVisBackend')]
    if not local:
        raise KeyError(f'{cfg.filename}: --show-dir needs a LocalVisBackend in the visualizer')
    for backend in local:
        backend['img_save_dir'] = osp.join(osp.pardir, directory)
