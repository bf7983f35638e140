"""Hierarchical Side-Tuning (HST) for MMDetection 3.x and MMSegmentation 1.x.

* :mod:`hst_mm.models`: the method in plain PyTorch (torch and timm), one paper box per file;
* :mod:`hst_mm.registration`: ``type='HST'`` and ``type='ViTPyramid'`` for OpenMMLab configs;
* :mod:`hst_mm.engine`: training support (safe checkpoint loading, hooks, tool policies);
* :mod:`hst_mm.datasets`: data checks (segmentation label maps, COCO annotation files);
* :mod:`hst_mm.analysis`: a run's evaluations beside the paper's tables.

The benchmark, the GPU check and the toy data sets are not part of the package: they live
in the checkout's ``workshop/``.

``import hst_mm`` (what ``custom_imports=dict(imports=['hst_mm'])`` does) registers the two
backbones, the hooks, the ``CheckSegLabels`` transform and the layer-decay optimizer
constructor in mmengine's root registries (seen by mmdet and mmseg; neither is imported) and
installs the ``weights_only`` allow-list for mmengine checkpoints. Without mmengine installed
it does none of that, and ``hst_mm.models`` works with torch and timm alone.
"""

import warnings

from .version import __version__

try:
    with warnings.catch_warnings():
        # mmengine imports pkg_resources, deprecated by setuptools, which the project pins
        # < 81 on purpose; the notice is ignored for this import only (the other known
        # upstream notices: hst_mm.engine.quiet, which the tools apply).
        warnings.filterwarnings('ignore', 'pkg_resources is deprecated as an API', UserWarning)
        import mmengine  # noqa: F401
except ImportError:  # plain PyTorch use of hst_mm.models
    pass
else:
    from . import engine  # noqa: F401  (hooks, checkpoint allow-list)
    from .datasets import seg_labels  # noqa: F401  (the CheckSegLabels transform)
    from .registration import HST, ViTPyramid  # noqa: F401

__all__ = ['__version__']
