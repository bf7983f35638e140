"""A model for inference from a config and a checkpoint, checked before it is loaded.

mmdet's ``init_detector`` and mmseg's ``init_model`` load with ``strict=False`` and only
warn (mmseg's fails on a checkpoint without meta): :func:`init_fitting` checks the
checkpoint against the config's model first, and restores the frozen trunk of a
trainable-only export (``tools/export_trainable.py``) from ``model.backbone.pretrained``.
``tools/demo.py`` and ``tools/draw_overview.py`` build their models with it.
"""

import warnings

from mmengine.runner.checkpoint import _load_checkpoint

from .frozen_trunk import restore_frozen_trunk
from .hooks.checkpoint_fit import check_checkpoint_fits


def init_fitting(init, config: str, checkpoint: str, device: str):
    """The model of ``config`` with ``checkpoint`` loaded by ``init`` (mmdet's
    ``init_detector`` or mmseg's ``init_model``), after checking that it fits."""
    # mmdet's init_detector without a checkpoint says it falls back to COCO's class names
    # (after its own warnings.simplefilter('once'), which overrides an ignore filter): this
    # model only serves the check, the one returned loads the checkpoint. Other warnings
    # are passed on.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        unloaded = init(config, None, device='cpu')
    for w in caught:
        if not str(w.message).startswith('checkpoint is None, use COCO classes'):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    weights = _load_checkpoint(checkpoint, map_location='cpu')
    check_checkpoint_fits(unloaded, weights, checkpoint)
    model = init(config, checkpoint, device=device)
    restore_frozen_trunk(model, weights, checkpoint)  # nothing to do for a full checkpoint
    return model
