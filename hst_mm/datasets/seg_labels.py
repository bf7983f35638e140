"""``CheckSegLabels``: a pipeline step that names a label map with values outside the classes,
values mmseg cannot read, or another size than its image.

Without it such a map trains until the loss: ``CrossEntropyLoss`` fails with ``IndexError:
Target 8 is out of bounds`` (or a CUDA device-side assert) naming neither the file nor the
value, and evaluation (mmseg's ``IoUMetric``) silently leaves the pixels out of every class.
Two more go wrong silently: mmseg 1.2's ``LoadAnnotations`` casts what it decodes to
``uint8``, so a 16-bit (or 32-bit, float) map's value 258 trains as class 2; and a map of
another size than its image is resized and cropped with it, so its labels land on the wrong
pixels. Put it right after ``LoadAnnotations``, which has applied ``reduce_zero_label`` (file
value 0 -> 255, v -> v - 1) and the data set's ``label_map`` by then::

    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegLabels', num_classes=150),

``import hst_mm`` registers it in mmengine's root ``TRANSFORMS`` registry, which mmseg's (and
mmcv's) registries fall back to; mmseg itself is not imported.
"""

from __future__ import annotations

import io

import numpy as np
from mmengine import fileio
from mmengine.registry import TRANSFORMS

#: PIL modes of 8 bits a channel: what ``LoadAnnotations``' cast to uint8 keeps as it is.
_8BIT_MODES = frozenset({'1', 'L', 'P', 'LA', 'PA', 'RGB', 'RGBA', 'CMYK', 'YCbCr', 'LAB', 'HSV'})


class SegLabelError(ValueError):
    """A label map holds values that are neither classes nor the ignore index, values over
    8 bits, or has another size than its image.

    ``tools/train.py`` and ``tools/test.py`` report it as one ``error:`` line
    (:func:`hst_mm.engine.errors.user_error_message`).
    """


@TRANSFORMS.register_module()
class CheckSegLabels:
    """Raise :class:`SegLabelError` (a ``ValueError``) naming ``seg_map_path`` when
    ``gt_seg_map`` holds a value that is neither a class index (``0 .. num_classes - 1``) nor
    ``ignore_index``, when the file holds values that ``LoadAnnotations`` cut to 8 bits (over
    255, negative or fractional), or when the map's size differs from its image's
    (``ori_shape``, as decoded).

    Args:
        num_classes: classes of the decode head (``len(classes)`` of the data set).
        ignore_index: the label the loss and the metric skip (mmseg's default, 255).
        backend_args: the file backend, as given to ``LoadAnnotations`` (None: local files).

    The results are returned unchanged. Cost: two comparisons over the (H, W) map, and a
    read of the file's header (the file is decoded again only when it has more than 8 bits).
    """

    def __init__(
        self, num_classes: int, ignore_index: int = 255, backend_args: dict = None
    ) -> None:
        if not (isinstance(num_classes, int) and num_classes > 0):
            raise ValueError(
                f'CheckSegLabels: num_classes must be a positive integer, got {num_classes!r}'
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.backend_args = backend_args

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
        self._check_size(results, seg)
        self._check_file_values(results)
        outside = ((seg < 0) | (seg >= self.num_classes)) & (seg != self.ignore_index)
        if outside.any():
            raise SegLabelError(self._message(results, np.unique(seg[outside]), outside.sum()))
        return results

    @staticmethod
    def _check_size(results: dict, seg: np.ndarray) -> None:
        """The map must be as large as its image as decoded (``ori_shape``: the pipeline's
        resizes come later, or leave ``ori_shape`` as it was)."""
        shape = results.get('ori_shape')
        if shape is None or seg.ndim < 2 or tuple(seg.shape[:2]) == tuple(shape[:2]):
            return
        (h, w), (H, W) = seg.shape[:2], shape[:2]
        raise SegLabelError(
            f'{results.get("seg_map_path", "a label map")}: the label map is {w}x{h} pixels, '
            f'its image {results.get("img_path", "")} is {W}x{H}: mmseg would resize and crop '
            f'both alike and train the labels on the wrong pixels: give each image the label '
            f'map of its own size'
        )

    def _check_file_values(self, results: dict) -> None:
        """``LoadAnnotations`` casts the decoded file to uint8 (258 -> 2): read the file's
        mode, and decode it again only if it has more than 8 bits a channel."""
        path = results.get('seg_map_path')
        if not isinstance(path, str):
            return
        from PIL import Image

        try:
            raw = Image.open(io.BytesIO(fileio.get(path, backend_args=self.backend_args)))
            if raw.mode in _8BIT_MODES:
                return
            values = np.asarray(raw)
        except Exception:  # noqa: BLE001  (a format PIL cannot read: cv2 read it 8-bit)
            return
        cut = (values < 0) | (values > 255) | (values != np.floor(values))
        if not cut.any():
            return
        bad = np.unique(values[cut])
        shown = ', '.join(f'{v:g}' for v in bad[:10].tolist()) + (' ...' if len(bad) > 10 else '')
        example = bad[0]
        with np.errstate(invalid='ignore'):  # NaN: whatever the cast makes of it
            trained = np.asarray(example).astype(np.uint8)
        raise SegLabelError(
            f'{path}: a {raw.mode} label map with values {shown} ({cut.sum()} pixels) that do '
            f'not fit in 8 bits: mmseg reads label maps as 8-bit (LoadAnnotations casts to '
            f'uint8), so {example:g} would train as {trained}: '
            f'save the labels as 8-bit values 0-255'
        )

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
        backend = '' if self.backend_args is None else f', backend_args={self.backend_args}'
        return (
            f'{type(self).__name__}(num_classes={self.num_classes}, '
            f'ignore_index={self.ignore_index}{backend})'
        )
