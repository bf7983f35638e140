"""``benchmark.py CONFIG``: the backbone of an MMDetection / MMSegmentation config and the
input size its training pipeline gives.

The config's ``model.backbone`` must be one of this package's backbones (``HST`` or
``ViTPyramid``): the ``config`` row builds it through mmengine's registry as the config sets
it (its pretrained weights left out: nothing is downloaded); the other rows take its trunk
(``trunk``, ``trunk_kwargs``) and, for HST, its side network's ``embed_dims`` and
``num_heads``.

The input side: the benchmark feeds square images, so the side is that of a square image
after the training pipeline's geometry: a ``RandomCrop``'s ``crop_size`` at the pipeline's
top level (mmseg's 512x512), else the largest short side of its resize scales (mmdet's
``Resize(scale=(1333, 800), keep_ratio=True)`` makes a square image 800x800; the
multi-scale ``RandomChoiceResize`` the largest of its scales). A non-square crop
``(h, w)`` is measured at ``max(h, w)`` a side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, Optional

# The backbones the benchmark knows how to compare (hst_mm's registered ones).
SUPPORTED = ('HST', 'ViTPyramid')
# Transforms whose `scale` / `scales` resize the image.
RESIZES = ('Resize', 'RandomResize', 'RandomChoiceResize', 'RandomChoice')


class BenchmarkConfigError(ValueError):
    """A CONFIG the benchmark cannot measure (missing, no supported backbone, no size)."""


def _transforms(pipeline) -> Iterator[dict]:
    """Every transform of ``pipeline``, nested ones (``RandomChoice``, ``RandomApply``)
    included, in order."""
    for t in pipeline or ():
        if isinstance(t, (list, tuple)):
            yield from _transforms(t)
        elif isinstance(t, dict):
            yield t
            yield from _transforms(t.get('transforms'))


def _side(size) -> int:
    """A crop or scale given as an int or (a, b) -> its longer side (crops) as an int."""
    return int(size) if isinstance(size, (int, float)) else int(max(size))


def input_side(pipeline) -> Optional[int]:
    """The side of a square image after ``pipeline``'s geometry (see the module's
    docstring), or None if the pipeline neither crops nor resizes."""
    for t in pipeline or ():
        if isinstance(t, dict) and t.get('crop_size') is not None:
            return _side(t['crop_size'])
    shorts = []
    for t in _transforms(pipeline):
        scales = t.get('scales') or ([t['scale']] if t.get('scale') is not None else [])
        for s in scales:
            shorts.append(int(s) if isinstance(s, (int, float)) else int(min(s)))
    return max(shorts) if shorts else None


def read_config(path: str) -> Dict[str, object]:
    """``{'path', 'scope', 'backbone': dict, 'img_size': int or None}`` of the config at
    ``path``. Raises :class:`BenchmarkConfigError` naming the file and the problem."""
    from mmengine.config import Config

    if not Path(path).is_file():
        raise BenchmarkConfigError(f'CONFIG {path}: no such file')
    try:
        cfg = Config.fromfile(path)
    except Exception as e:  # a syntax error, a missing base file, a bad mmdet:: path...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ''
        raise BenchmarkConfigError(f'CONFIG {path}: {type(e).__name__}: {first}') from e
    backbone = (cfg.get('model') or {}).get('backbone')
    kind = backbone.get('type') if isinstance(backbone, dict) else None
    if kind not in SUPPORTED:
        raise BenchmarkConfigError(
            f'CONFIG {path}: model.backbone.type is {kind!r}; the benchmark measures '
            f'{" or ".join(SUPPORTED)} backbones'
        )
    dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    # A wrapped dataset (RepeatDataset, ConcatDataset...) holds the pipeline one level down.
    pipeline = dataset.get('pipeline') or (dataset.get('dataset') or {}).get('pipeline')
    return {
        'path': str(path),
        'scope': cfg.get('default_scope', 'mmdet'),
        'backbone': backbone.to_dict(),
        'img_size': input_side(pipeline),
    }


def build_config_backbone(backbone: dict):
    """The config's backbone through mmengine's registry, as the config sets it, without
    its pretrained weights (``hst_mm``'s backbones load them in ``init_weights()``, which
    the benchmark does not call)."""
    from mmengine.registry import MODELS

    import hst_mm.registration  # noqa: F401  (registers HST and ViTPyramid)

    return MODELS.build(dict(backbone, pretrained=None))
