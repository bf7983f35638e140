"""One picture of a model on its test split: ground truth beside prediction for the first
images, upscaled so that boxes, masks and class names are readable.

Its command line is ``tools/draw_overview.py``; ``make demo`` (``tools/run_demo.py``) draws
its pictures with :func:`draw_overview`.

Without a checkpoint it draws the ground truth alone: a look at the data set (also where
mmseg 1.2.2's ``browse_dataset`` fails). The config's ``default_scope`` decides: mmdet
configs draw boxes and masks (mmdet's ``DetLocalVisualizer``), mmseg configs the class map
with its class names (mmseg's ``SegLocalVisualizer``). The images and annotations come from
the data set of the config's ``<split>_dataloader``, loaded by mmdet's / mmseg's own
``LoadAnnotations``; predictions are made on the original image and enlarged with it (boxes
scaled, masks and class maps resized), so the picture shows what the evaluation scored.
matplotlib lays out the grid.
"""

import contextlib
import io
import os
import os.path as osp
from typing import List, Optional, Tuple

import numpy as np

from .drawing import (
    IGNORED_LEGEND,
    class_colours,
    hatch_ignored,
    keep_labels_inside,
    upscaled_instances,
)

# (image file name, ground-truth panel, prediction panel or None), panels RGB (H, W, 3)
Row = Tuple[str, np.ndarray, Optional[np.ndarray]]
SPLITS = ('test', 'val', 'train')


def _dataset(cfg, registry, split: str):
    from mmengine.registry import init_default_scope

    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    init_default_scope(cfg.get('default_scope'))
    # pycocotools prints its progress ('loading annotations into memory...') to stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        dataset = registry.build(cfg[f'{split}_dataloader'].dataset)
    if len(dataset) == 0:
        raise ValueError(f'{cfg.filename}: {split}_dataloader.dataset has no images')
    return dataset


def _visualizer(cfg, registry, meta: dict, text_zoom: float = 1.0):
    """The config's visualizer without storage back-ends (the grid is saved by matplotlib).

    ``text_zoom``: mmengine draws on a matplotlib figure one pixel per image pixel, with text
    sizes in points; a higher figure dpi keeps the pixels and enlarges the text (mmdet labels
    every box under about 175x175 px with 6.5-point text).
    """
    visualizer = registry.build(
        dict(cfg.visualizer, vis_backends=None, name=f'hst_mm_overview_{id(meta)}')
    )
    visualizer.dataset_meta = meta
    keep_labels_inside(visualizer)
    if text_zoom != 1.0:
        visualizer.dpi = visualizer.fig_save.get_dpi() * text_zoom
        visualizer.fig_save.set_dpi(visualizer.dpi)
    return visualizer


def _panels(visualizer, image, sample, predicted: bool, **kwargs) -> List[np.ndarray]:
    """[ground truth, prediction], or [ground truth], drawn by ``visualizer``: a class in
    the same colour in both, box labels inside the picture."""
    panels = []
    for draw_gt in (True, False) if predicted else (True,):
        with class_colours():
            visualizer.add_datasample(
                'overview', image, sample, draw_gt=draw_gt, draw_pred=not draw_gt, **kwargs
            )
        panels.append(visualizer.get_image())
    return panels


def detection_rows(
    config: str,
    checkpoint: Optional[str],
    num: int,
    scale: int,
    score_thr: float = 0.3,
    device: str = 'cpu',
    split: str = 'test',
) -> List[Row]:
    """Boxes, masks and class names on the first ``num`` images of ``split``: the ground
    truth, and with a checkpoint the mmdet model's prediction."""
    import mmcv
    from mmdet.apis import inference_detector, init_detector
    from mmdet.datasets.transforms import LoadAnnotations
    from mmdet.registry import DATASETS, VISUALIZERS
    from mmdet.structures import DetDataSample
    from mmengine.config import Config
    from mmengine.structures import InstanceData

    from hst_mm.engine.inference import init_fitting

    cfg = Config.fromfile(config)
    dataset = _dataset(cfg, DATASETS, split)
    model = None
    if checkpoint:
        model = init_fitting(init_detector, config, checkpoint, device)
    meta = model.dataset_meta if model else dataset.metainfo
    visualizer = _visualizer(cfg, VISUALIZERS, meta, text_zoom=2.0)
    load_gt = LoadAnnotations(with_bbox=True, with_mask=True)
    rows = []
    for i in range(min(num, len(dataset))):
        info = dataset.get_data_info(i)
        image = mmcv.imread(info['img_path'], channel_order='rgb')
        h, w = image.shape[:2]
        big_shape = (h * scale, w * scale)
        gt = load_gt(dict(info, ori_shape=(h, w)))  # as LoadImageFromFile would set
        sample = DetDataSample(
            gt_instances=InstanceData(
                bboxes=gt['gt_bboxes'].tensor * scale,
                labels=gt['gt_bboxes_labels'],
                masks=gt['gt_masks'].resize(big_shape),
            )
        )
        if model is not None:
            pred = inference_detector(model, info['img_path']).pred_instances.cpu()
            sample.pred_instances = upscaled_instances(pred, h, w, scale)
        big = mmcv.imrescale(image, scale, interpolation='bilinear')
        panels = _panels(visualizer, big, sample, model is not None, pred_score_thr=score_thr)
        rows.append((osp.basename(info['img_path']), panels[0], panels[1] if model else None))
    return rows


def segmentation_rows(
    config: str,
    checkpoint: Optional[str],
    num: int,
    scale: int,
    device: str = 'cpu',
    split: str = 'test',
    ignored: Optional[List[int]] = None,
) -> List[Row]:
    """Class maps with class names on the first ``num`` images of ``split``: the ground
    truth, and with a checkpoint the mmseg model's prediction. Pixels of no class (255) are
    hatched grey (:func:`workshop.drawing.hatch_ignored`); their count per panel is appended
    to ``ignored`` if given."""
    import mmcv
    import torch
    from mmengine.config import Config
    from mmengine.structures import PixelData
    from mmseg.apis import inference_model, init_model
    from mmseg.datasets.transforms import LoadAnnotations
    from mmseg.registry import DATASETS, VISUALIZERS
    from mmseg.structures import SegDataSample

    from hst_mm.engine.inference import init_fitting

    cfg = Config.fromfile(config)
    dataset = _dataset(cfg, DATASETS, split)
    model = None
    if checkpoint:
        model = init_fitting(init_model, config, checkpoint, device)
    meta = model.dataset_meta if model else dataset.metainfo
    visualizer = _visualizer(cfg, VISUALIZERS, meta)
    # reduce_zero_label=None: the data set's own setting (in its data infos) applies.
    load_gt = LoadAnnotations()

    def big_map(labels: np.ndarray) -> PixelData:
        labels = mmcv.imrescale(labels.astype(np.uint8), scale, interpolation='nearest')
        return PixelData(data=torch.from_numpy(labels.astype(np.int64))[None])

    rows = []
    for i in range(min(num, len(dataset))):
        info = dataset.get_data_info(i)
        image = mmcv.imread(info['img_path'], channel_order='rgb')
        truth = load_gt(dict(info, seg_fields=[]))['gt_seg_map']
        sample = SegDataSample(gt_sem_seg=big_map(truth))
        if model is not None:
            pred = inference_model(model, info['img_path']).pred_sem_seg.cpu().data[0].numpy()
            sample.pred_sem_seg = big_map(pred)
        big = mmcv.imrescale(image, scale, interpolation='bilinear')
        panels = _panels(visualizer, big, sample, model is not None)
        for k, labels in enumerate((sample.gt_sem_seg, sample.get('pred_sem_seg'))[: len(panels)]):
            panels[k], n = hatch_ignored(
                panels[k], big, labels.data[0].numpy(), len(meta['classes']), visualizer.alpha
            )
            if ignored is not None:
                ignored.append(n)
        rows.append((osp.basename(info['img_path']), panels[0], panels[1] if model else None))
    return rows


def grid_figure(rows: List[Row], title: str, pred_title: str = 'prediction', legend=()):
    """The matplotlib figure of :func:`save_grid` (Agg), not yet saved: (ground truth |
    prediction) panels, one image a row, pixels shown 1:1; without predictions, ground-truth
    panels two to a row. ``legend``: ``(label, matplotlib patch keywords)`` pairs shown under
    the panels (e.g. the look of ignored pixels)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    panels = []
    for name, truth, pred in rows:
        panels.append((truth, f'{name}: ground truth'))
        if pred is not None:
            panels.append((pred, f'{name}: {pred_title}'))
    if len(panels) % 2:
        panels.append((None, ''))
    dpi = 100
    h, w = rows[0][1].shape[:2]
    n_rows = len(panels) // 2
    extra = 0.9 if legend else 0.6  # inches for the title (and the legend under the grid)
    # constrained layout reserves the figure title's height above the panels' titles (and
    # the legend's below them); tight_layout ignored the figure title and let them overlap.
    fig, axes = plt.subplots(
        n_rows,
        2,
        figsize=(2 * w / dpi + 0.4, n_rows * (h / dpi + 0.5) + extra),
        dpi=dpi,
        layout='constrained',
    )
    for (panel, label), ax in zip(panels, np.asarray(axes).reshape(-1)):
        if panel is not None:
            ax.imshow(panel)

            # two lines where one would run into the next panel's title, then a smaller
            # font where a line is still wider than the panel (about 0.6 em a character)
            def points(text: str) -> float:
                return w / (0.6 * max(map(len, text.splitlines())) * dpi / 72)

            if points(label) < 11:
                label = label.replace(': ', '\n', 1)
            ax.set_title(label, fontsize=max(6.0, min(11.0, points(label))))
        ax.axis('off')
    width = fig.get_figwidth() * dpi
    fig.suptitle(title, fontsize=max(6.0, min(13.0, width / (0.6 * len(title) * dpi / 72))))
    if legend:
        fig.legend(
            handles=[Patch(label=label, **style) for label, style in legend],
            loc='outside lower center',
            ncols=len(legend),
            fontsize=10,
            frameon=False,
        )
    return fig


def save_grid(
    rows: List[Row], out: str, title: str, pred_title: str = 'prediction', legend=()
) -> None:
    """Write :func:`grid_figure` to ``out``."""
    import matplotlib.pyplot as plt

    fig = grid_figure(rows, title, pred_title, legend)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=fig.get_dpi())
    plt.close(fig)


def draw_overview(
    config: str,
    checkpoint: Optional[str],
    out: str,
    num: int = 6,
    scale: int = 4,
    score_thr: float = 0.3,
    device: str = 'cpu',
    title: str = '',
    split: str = 'test',
) -> List[Row]:
    """Draw the overview of ``config`` (and ``checkpoint``) to ``out``; returns its rows."""
    from mmengine.config import Config

    for path, what in ((config, 'config file'), (checkpoint, 'checkpoint')):
        if path is not None and not osp.isfile(path):
            raise FileNotFoundError(f'{what} not found: {path}')
    if num < 1 or scale < 1:
        raise ValueError(f'--num and --scale must be >= 1, got {num} and {scale}')
    scope = Config.fromfile(config).get('default_scope', 'mmdet')
    legend = []
    if scope == 'mmseg':
        ignored: List[int] = []
        rows = segmentation_rows(config, checkpoint, num, scale, device, split, ignored)
        pred_title = 'prediction'
        legend = [IGNORED_LEGEND] if any(ignored) else []
    elif scope == 'mmdet':
        rows = detection_rows(config, checkpoint, num, scale, score_thr, device, split)
        pred_title = f'prediction (score >= {score_thr})'
    else:
        raise ValueError(f'{config}: default_scope {scope!r} is neither mmdet nor mmseg')
    save_grid(rows, out, title or osp.basename(config), pred_title, legend)
    return rows
