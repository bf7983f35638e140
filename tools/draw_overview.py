"""One picture of a model on its test split: ground truth beside prediction for the first
images, upscaled so that boxes, masks and class names are readable.

    python tools/draw_overview.py CONFIG CHECKPOINT --out FILE [--num 6] [--scale 4]
                                  [--score-thr 0.3] [--device cpu]

The config's ``default_scope`` decides: mmdet configs draw boxes and masks (mmdet's
``DetLocalVisualizer``), mmseg configs the class map with its class names (mmseg's
``SegLocalVisualizer``). The images and annotations come from the config's
``test_dataloader`` data set, loaded by mmdet's / mmseg's own ``LoadAnnotations``; predictions
are made on the original image and enlarged with it (boxes scaled, masks and class maps
resized), so the picture shows what the evaluation scored. matplotlib lays out the grid.
"""

import argparse
import os
import os.path as osp
import sys
from typing import List, Tuple

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from hst_mm.engine.quiet import quiet_upstream_warnings  # noqa: E402

# (image file name, ground-truth panel, prediction panel), panels RGB (H, W, 3)
Row = Tuple[str, np.ndarray, np.ndarray]


def _test_dataset(cfg, registry):
    from mmengine.registry import init_default_scope

    init_default_scope(cfg.get('default_scope'))
    dataset = registry.build(cfg.test_dataloader.dataset)
    if len(dataset) == 0:
        raise ValueError(f'{cfg.filename}: test_dataloader.dataset has no images')
    return dataset


def _visualizer(cfg, registry, model):
    """The config's visualizer without storage back-ends (the grid is saved by matplotlib)."""
    visualizer = registry.build(
        dict(cfg.visualizer, vis_backends=None, name=f'hst_mm_overview_{id(model)}')
    )
    visualizer.dataset_meta = model.dataset_meta
    return visualizer


def detection_rows(
    config: str, checkpoint: str, num: int, scale: int, score_thr: float, device: str
) -> List[Row]:
    """Boxes, masks and class names of an mmdet model on the first ``num`` test images."""
    import mmcv
    from mmdet.apis import inference_detector, init_detector
    from mmdet.datasets.transforms import LoadAnnotations
    from mmdet.registry import DATASETS, VISUALIZERS
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.config import Config
    from mmengine.structures import InstanceData

    from tools.demo import refuse_unfitting

    cfg = Config.fromfile(config)
    refuse_unfitting(init_detector, config, checkpoint)
    model = init_detector(cfg, checkpoint, device=device)
    dataset = _test_dataset(cfg, DATASETS)
    visualizer = _visualizer(cfg, VISUALIZERS, model)
    load_gt = LoadAnnotations(with_bbox=True, with_mask=True)
    rows = []
    for i in range(min(num, len(dataset))):
        info = dataset.get_data_info(i)
        image = mmcv.imread(info['img_path'], channel_order='rgb')
        h, w = image.shape[:2]
        big_shape = (h * scale, w * scale)
        gt = load_gt(dict(info, ori_shape=(h, w)))  # as LoadImageFromFile would set
        truth = InstanceData(
            bboxes=gt['gt_bboxes'].tensor * scale,
            labels=gt['gt_bboxes_labels'],
            masks=gt['gt_masks'].resize(big_shape),
        )
        pred = inference_detector(model, info['img_path']).pred_instances.cpu()
        pred.bboxes = pred.bboxes * scale
        if 'masks' in pred:
            masks = BitmapMasks(pred.masks.numpy().astype(np.uint8), h, w)
            pred.masks = masks.resize(big_shape, interpolation='bilinear').to_ndarray() > 0
        sample = DetDataSample(gt_instances=truth, pred_instances=pred)
        big = mmcv.imrescale(image, scale, interpolation='bilinear')
        panels = []
        for draw_gt in (True, False):
            visualizer.add_datasample(
                'overview',
                big,
                sample,
                draw_gt=draw_gt,
                draw_pred=not draw_gt,
                pred_score_thr=score_thr,
            )
            panels.append(visualizer.get_image())
        rows.append((osp.basename(info['img_path']), *panels))
    return rows


def segmentation_rows(config: str, checkpoint: str, num: int, scale: int, device: str) -> List[Row]:
    """Class maps with class names of an mmseg model on the first ``num`` test images."""
    import mmcv
    import torch
    from mmengine.config import Config
    from mmengine.structures import PixelData
    from mmseg.apis import inference_model, init_model
    from mmseg.datasets.transforms import LoadAnnotations
    from mmseg.registry import DATASETS, VISUALIZERS
    from mmseg.structures import SegDataSample

    from tools.demo import refuse_unfitting

    cfg = Config.fromfile(config)
    refuse_unfitting(init_model, config, checkpoint)
    model = init_model(cfg, checkpoint, device=device)
    dataset = _test_dataset(cfg, DATASETS)
    visualizer = _visualizer(cfg, VISUALIZERS, model)
    # reduce_zero_label=None: the data set's own setting (in its data infos) applies.
    load_gt = LoadAnnotations()
    rows = []
    for i in range(min(num, len(dataset))):
        info = dataset.get_data_info(i)
        image = mmcv.imread(info['img_path'], channel_order='rgb')
        truth = load_gt(dict(info, seg_fields=[]))['gt_seg_map']
        pred = inference_model(model, info['img_path']).pred_sem_seg.cpu().data[0].numpy()

        def big_map(labels: np.ndarray) -> PixelData:
            labels = mmcv.imrescale(labels.astype(np.uint8), scale, interpolation='nearest')
            return PixelData(data=torch.from_numpy(labels.astype(np.int64))[None])

        sample = SegDataSample(gt_sem_seg=big_map(truth), pred_sem_seg=big_map(pred))
        big = mmcv.imrescale(image, scale, interpolation='bilinear')
        panels = []
        for draw_gt in (True, False):
            visualizer.add_datasample(
                'overview', big, sample, draw_gt=draw_gt, draw_pred=not draw_gt
            )
            panels.append(visualizer.get_image())
        rows.append((osp.basename(info['img_path']), *panels))
    return rows


def save_grid(rows: List[Row], out: str, title: str, pred_title: str = 'prediction') -> None:
    """Rows of (ground truth | prediction) panels in one figure, pixels shown 1:1."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    dpi = 100
    h, w = rows[0][1].shape[:2]
    fig, axes = plt.subplots(
        len(rows),
        2,
        figsize=(2 * w / dpi + 0.4, len(rows) * (h / dpi + 0.3) + 0.6),
        dpi=dpi,
        squeeze=False,
    )
    for (name, truth, pred), (ax_gt, ax_pred) in zip(rows, axes):
        for ax, panel, label in ((ax_gt, truth, 'ground truth'), (ax_pred, pred, pred_title)):
            ax.imshow(panel)
            ax.set_title(f'{name}: {label}', fontsize=11)
            ax.axis('off')
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)


def draw_overview(
    config: str,
    checkpoint: str,
    out: str,
    num: int = 6,
    scale: int = 4,
    score_thr: float = 0.3,
    device: str = 'cpu',
    title: str = '',
) -> List[Row]:
    """Draw the overview of ``config`` + ``checkpoint`` to ``out``; returns its rows."""
    from mmengine.config import Config

    for path, what in ((config, 'config file'), (checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} not found: {path}')
    if num < 1 or scale < 1:
        raise ValueError(f'--num and --scale must be >= 1, got {num} and {scale}')
    scope = Config.fromfile(config).get('default_scope', 'mmdet')
    if scope == 'mmseg':
        rows = segmentation_rows(config, checkpoint, num, scale, device)
        pred_title = 'prediction'
    elif scope == 'mmdet':
        rows = detection_rows(config, checkpoint, num, scale, score_thr, device)
        pred_title = f'prediction (score >= {score_thr})'
    else:
        raise ValueError(f'{config}: default_scope {scope!r} is neither mmdet nor mmseg')
    save_grid(rows, out, title or osp.basename(config), pred_title)
    return rows


def main(argv=None):
    quiet_upstream_warnings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', required=True, help='output image file (.png)')
    parser.add_argument('--num', type=int, default=6, help='number of test images (rows)')
    parser.add_argument('--scale', type=int, default=4, help='integer upscaling factor')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection score threshold')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--title', default='', help='figure title (default: the config name)')
    args = parser.parse_args(argv)
    from hst_mm.engine.errors import user_error_message

    try:
        rows = draw_overview(
            args.config,
            args.checkpoint,
            args.out,
            args.num,
            args.scale,
            args.score_thr,
            args.device,
            args.title,
        )
    except Exception as e:
        message = user_error_message(e, args.checkpoint)
        if message is None:
            raise
        sys.exit(f'error: {message}')
    print(f'wrote {args.out} ({len(rows)} test images, ground truth | prediction)')


if __name__ == '__main__':
    main()
