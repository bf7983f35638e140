"""A model for inference from a config and a checkpoint, checked before it is loaded.

mmdet's ``init_detector`` and mmseg's ``init_model`` load with ``strict=False`` and only
warn (mmseg's fails on a checkpoint without meta): :func:`init_fitting` checks the
checkpoint against the config's model first, and restores the frozen trunk of a
trainable-only export (``tools/export_trainable.py``) from ``model.backbone.pretrained``.
The checkpoint is read once: the weights that were checked are the ones loaded.
``tools/demo.py`` and ``tools/draw_overview.py`` build their models with it.
"""

import warnings

from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model

from .frozen_trunk import restore_frozen_trunk
from .hooks.checkpoint_fit import check_checkpoint_fits


def init_fitting(init, config: str, checkpoint: str, device: str):
    """The model of ``config`` with ``checkpoint`` loaded, as ``init`` (mmdet's
    ``init_detector`` or mmseg's ``init_model``) would load it, after checking that it fits."""
    # mmdet's init_detector without a checkpoint says it falls back to COCO's class names
    # (after its own warnings.simplefilter('once'), which overrides an ignore filter): the
    # class names come from the checkpoint below. Other warnings are passed on.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = init(config, None, device='cpu')
    for w in caught:
        if not str(w.message).startswith('checkpoint is None, use COCO classes'):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    weights = _load_checkpoint(checkpoint, map_location='cpu')
    check_checkpoint_fits(model, weights, checkpoint)
    saved = (weights.get('meta') or {}).get('dataset_meta')
    if isinstance(saved, dict):
        _load_checkpoint_to_model(model, weights, strict=False)  # what init's load does
        model.dataset_meta = dataset_meta(getattr(model, 'dataset_meta', None), saved)
        model.to(device)
    else:  # converted weights without class names: the library's own fallbacks (a 2nd read)
        model = init(config, checkpoint, device=device)
    restore_frozen_trunk(model, weights, checkpoint)  # nothing to do for a full checkpoint
    return model.eval()


def dataset_meta(built: dict, saved: dict) -> dict:
    """The model's ``dataset_meta`` as ``init`` sets it from a checkpoint: the saved one
    (keys lowercased, as mmdet does), with the config's palette first (mmdet's priority:
    config, then checkpoint, then ``'random'``; ``built`` is what ``init`` without a
    checkpoint set: the config's palette or ``'random'`` for mmdet, nothing for mmseg)."""
    meta = {k.lower(): v for k, v in saved.items()}
    palette = (built or {}).get('palette')
    if palette is not None and (palette != 'random' or 'palette' not in meta):
        meta['palette'] = palette
    return meta
