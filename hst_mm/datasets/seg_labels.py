"""``CheckSegLabels``: a pipeline step that names a label map with values outside the classes.

Without it such a map trains until the loss: ``CrossEntropyLoss`` fails with ``IndexError:
Target 8 is out of bounds`` (or a CUDA device-side assert) naming neither the file nor the
value, and evaluation (mmseg's ``IoUMetric``) silently leaves the pixels out of every class.
Put it right after ``LoadAnnotations``, which has applied ``reduce_zero_label`` (file value 0
-> 255, v -> v - 1) and the data set's ``label_map`` by then::

    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegLabels', num_classes=150),

``import hst_mm`` registers it in mmengine's root ``TRANSFORMS`` registry, which mmseg's (and
mmcv's) registries fall back to; mmseg itself is not imported.
"""

from __future__ import annotations

import numpy as np
from mmengine.registry import TRANSFORMS


class SegLabelError(ValueError):
    """A label map holds values that are neither classes nor the ignore index.

    ``tools/train.py`` and ``tools/test.py`` report it as one ``error:`` line
    (:func:`hst_mm.engine.errors.user_error_message`).
    """


@TRANSFORMS.register_module()
class CheckSegLabels:
    """Raise :class:`SegLabelError` (a ``ValueError``) naming ``seg_map_path`` when
    ``gt_seg_map`` holds a value that is neither a class index (``0 .. num_classes - 1``) nor
    ``ignore_index``.

    Args:
        num_classes: classes of the decode head (``len(classes)`` of the data set).
        ignore_index: the label the loss and the metric skip (mmseg's default, 255).

    The results are returned unchanged. Cost: two comparisons over the (H, W) map.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if not (isinstance(num_classes, int) and num_classes > 0):
            raise ValueError(
                f'CheckSegLabels: num_classes must be a positive integer, got {num_classes!r}'
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def __call__(self, results: dict) -> dict:
        return self.transform(results)

    def transform(self, results: dict) -> dict:
        """Check ``results['gt_seg_map']`` (H, W); return ``results`` unchanged.

        Without a label map there is nothing to check: mmseg's ``inference_model`` and
        ``MMSegInferencer`` drop ``LoadAnnotations`` from the test pipeline and keep the rest.
        """
        if 'gt_seg_map' not in results:
            return results
        seg = np.asarray(results['gt_seg_map'])
        outside = ((seg < 0) | (seg >= self.num_classes)) & (seg != self.ignore_index)
        if outside.any():
            raise SegLabelError(self._message(results, np.unique(seg[outside]), outside.sum()))
        return results

    def _message(self, results: dict, bad: np.ndarray, pixels: int) -> str:
        """The error for the values ``bad`` found in ``pixels`` pixels of one label map."""
        path = results.get('seg_map_path', 'a label map')
        shown = ', '.join(map(str, bad[:10].tolist())) + (' ...' if len(bad) > 10 else '')
        msg = (
            f'{path}: label values {shown} ({pixels} pixels) are outside the '
            f'{self.num_classes} classes (valid: 0-{self.num_classes - 1}, and '
            f'{self.ignore_index} for ignored pixels)'
        )
        if results.get('reduce_zero_label') and results.get('label_map') is None:
            # what the user finds in the file: LoadAnnotations subtracted 1 from each value
            in_file = ', '.join(str(int(v) + 1) for v in bad[:10])
            msg += (
                f'; read with reduce_zero_label, so the file holds {in_file} (file value '
                f'0 is ignored, v becomes v - 1)'
            )
        return msg + ': fix the file or the number of classes'

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(num_classes={self.num_classes}, '
            f'ignore_index={self.ignore_index})'
        )
