"""Hierarchical Side-Tuning (HST) for MMDetection 3.x and MMSegmentation 1.x.

``import hst_mm`` (what ``custom_imports=dict(imports=['hst_mm'])`` does):

* registers ``type='HST'`` in mmengine's root model registry (seen by mmdet and mmseg);
* allow-lists the types in mmengine checkpoints for ``torch.load(weights_only=True)``;
* registers the reliability hooks of :mod:`hst_mm.hooks` (``CheckFiniteLossHook``,
  ``AtomicCheckpointHook``, ``TorchRNGStateHook``) in mmengine's root hook registry.

It imports neither mmdet nor mmseg. The plain-PyTorch modules live in ``hst_mm.models``.
"""
from .checkpoint_safety import allow_mmengine_checkpoints

allow_mmengine_checkpoints()

from .backbone import HST, ViTPyramid  # noqa: E402  (registers type='HST', 'ViTPyramid')
from . import hooks  # noqa: E402,F401  (registers the hooks)

from .version import __version__  # noqa: E402
__all__ = ['HST', 'ViTPyramid', '__version__']
