"""What the demo pictures (``tools/demo.py``, :mod:`workshop.overview`) add to mmdet's and
mmseg's visualizers.

* :func:`upscaled_instances`: predictions made on the original image, enlarged with it (boxes
  scaled, masks resized), so that a small image can be drawn large enough to read;
* :func:`keep_labels_inside`: mmdet writes a box's label from its top-left corner to the
  right (and mmengine clips what leaves the image): a label that would cross the picture's
  border is moved back inside;
* :func:`class_colours`: mmdet jitters each instance's mask colour at random
  (``jitter_color``), so one class gets other colours in ground truth and prediction; inside
  this context each class keeps its palette colour in every panel;
* :func:`hatch_ignored`: mmseg leaves pixels of no class (255, ``ignore_index``) uncoloured,
  which its blending turns almost black; they are hatched grey instead, with
  :data:`IGNORED_LEGEND` for the picture's legend.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Tuple

import numpy as np

#: The hatching of ignored pixels: light and dark grey stripes, ``STRIPE`` pixels wide.
IGNORED_RGB = ((200, 200, 200), (110, 110, 110))
STRIPE = 3
#: The legend entry of :func:`hatch_ignored`'s pixels (matplotlib ``Patch`` keywords).
IGNORED_LEGEND = (
    'ignored (255): no class, not scored',
    dict(
        facecolor=np.array(IGNORED_RGB[0]) / 255,
        edgecolor=np.array(IGNORED_RGB[1]) / 255,
        hatch='///',
    ),
)


def upscaled_instances(pred, height: int, width: int, scale: int):
    """``pred`` (mmengine ``InstanceData`` of an image ``height`` x ``width``) drawn on the image
    enlarged ``scale`` times: boxes scaled, masks resized bilinearly (then thresholded)."""
    from mmdet.structures.mask import BitmapMasks

    pred = pred.clone()
    if scale == 1:
        return pred
    pred.bboxes = pred.bboxes * scale
    if 'masks' in pred:
        masks = BitmapMasks(np.asarray(pred.masks).astype(np.uint8), height, width)
        big = masks.resize((height * scale, width * scale), interpolation='bilinear')
        pred.masks = big.to_ndarray() > 0
    return pred


def keep_labels_inside(visualizer):
    """Make ``visualizer`` (mmengine's, in place) move each text it draws that would cross
    the picture's border back inside it, with its background box; returns ``visualizer``.

    mmdet's ``_draw_instances`` calls ``draw_texts`` and renders the picture right after
    (``add_datasample`` then replaces the texts with the rendered image), so the texts are
    moved as they are drawn: ``draw_texts`` is wrapped on this instance."""
    if getattr(visualizer, '_hst_mm_labels_inside', False):
        return visualizer
    draw_texts = visualizer.draw_texts

    def draw_texts_inside(*args, **kwargs):
        before = len(visualizer.ax_save.texts)
        result = draw_texts(*args, **kwargs)
        move_inside(visualizer, visualizer.ax_save.texts[before:])
        return result

    visualizer.draw_texts = draw_texts_inside
    visualizer._hst_mm_labels_inside = True
    return visualizer


def move_inside(visualizer, texts) -> int:
    """Shift each of ``texts`` (on ``visualizer.ax_save``) that crosses the picture's border
    back inside it; returns how many were moved."""
    renderer = visualizer.fig_save_canvas.get_renderer()
    ax = visualizer.ax_save
    frame = ax.get_window_extent(renderer)
    moved = 0
    for text in texts:
        box = label_extent(text, renderer)
        dx = max(frame.x0 - box.x0, 0) or min(frame.x1 - box.x1, 0)
        dy = max(frame.y0 - box.y0, 0) or min(frame.y1 - box.y1, 0)
        if dx or dy:
            x, y = ax.transData.transform(text.get_position())
            text.set_position(ax.transData.inverted().transform((x + dx, y + dy)))
            moved += 1
    return moved


def label_extent(text, renderer):
    """The display extent of a matplotlib text with its background box."""
    from matplotlib.transforms import Bbox

    boxes = [text.get_window_extent(renderer)]
    if text.get_bbox_patch() is not None:
        text.update_bbox_position_size(renderer)  # else known only once drawn
        boxes.append(text.get_bbox_patch().get_window_extent(renderer))
    return Bbox.union(boxes)


@contextlib.contextmanager
def class_colours() -> Iterator[None]:
    """mmdet's ``DetLocalVisualizer`` draws masks in their class's palette colour, not in a
    randomly jittered one, while the context lasts."""
    from unittest import mock

    with mock.patch(
        'mmdet.visualization.local_visualizer.jitter_color',
        lambda color: tuple(int(c) for c in color),
    ):
        yield


def hatch_ignored(
    panel: np.ndarray, image: np.ndarray, labels: np.ndarray, num_classes: int, alpha: float
) -> Tuple[np.ndarray, int]:
    """``panel`` (mmseg's drawing of ``labels`` over ``image``, RGB ``(H, W, 3)``) with the
    pixels of no class hatched grey; returns it and how many pixels were hatched.

    mmseg blends ``image * (1 - alpha) + colour * alpha`` and gives labels >= ``num_classes``
    no colour; only pixels left exactly so are hatched, so the class names mmseg writes over
    them stay."""
    ignored = labels >= num_classes
    ignored &= (panel == (image * (1 - alpha)).astype(np.uint8)).all(axis=-1)
    yy, xx = np.indices(labels.shape)
    stripes = ((xx + yy) // STRIPE) % 2
    out = panel.copy()
    for k, rgb in enumerate(IGNORED_RGB):
        out[ignored & (stripes == k)] = rgb
    return out, int(ignored.sum())
