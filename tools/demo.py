"""Draw a model's predictions on an image, with mmdet's / mmseg's own inference APIs and
visualizers.

    python tools/demo.py IMAGE CONFIG CHECKPOINT --out FILE [--score-thr 0.3] [--scale S]
                         [--device cpu]

The config's ``default_scope`` decides: mmdet configs draw boxes and masks, mmseg configs
overlay the segmentation. ``--scale S`` draws on the image enlarged S times (the model still
sees the original), so that class names on a small image are readable; a box label that
would cross the picture's border is moved inside (:mod:`workshop.drawing`).
"""

import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import mmcv  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402

import hst_mm  # noqa: E402,F401  registers HST, allow-lists checkpoint types
from hst_mm.engine.errors import user_error_message  # noqa: E402
from hst_mm.engine.inference import init_fitting  # noqa: E402
from hst_mm.engine.quiet import quiet_upstream_warnings  # noqa: E402
from workshop.drawing import keep_labels_inside, upscaled_instances  # noqa: E402


def draw_detection(image, config, checkpoint, out, score_thr=0.3, device='cpu', scale=1):
    """Boxes and masks of an mmdet model on ``image`` (enlarged ``scale`` times) -> ``out``;
    returns the DetDataSample (of the original image)."""
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS
    from mmdet.structures import DetDataSample

    model = init_fitting(init_detector, config, checkpoint, device)
    result = inference_detector(model, image)
    picture = mmcv.imread(image, channel_order='rgb')
    h, w = picture.shape[:2]
    drawn = DetDataSample(
        pred_instances=upscaled_instances(result.pred_instances.cpu(), h, w, scale)
    )
    # No storage back-ends: the picture goes to ``out``.
    visualizer = VISUALIZERS.build(
        dict(model.cfg.visualizer, vis_backends=None, name='hst_mm_demo_det')
    )
    visualizer.dataset_meta = model.dataset_meta
    keep_labels_inside(visualizer)
    visualizer.add_datasample(
        'prediction',
        mmcv.imrescale(picture, scale, interpolation='bilinear') if scale != 1 else picture,
        drawn,
        draw_gt=False,
        pred_score_thr=score_thr,
        out_file=out,
    )
    return result


def draw_segmentation(image, config, checkpoint, out, device='cpu', scale=1):
    """Segmentation overlay of an mmseg model on ``image`` (enlarged ``scale`` times) ->
    ``out``; returns the SegDataSample (of the original image)."""
    from mmseg.apis import inference_model, init_model, show_result_pyplot
    from mmseg.structures import SegDataSample

    model = init_fitting(init_model, config, checkpoint, device)
    result = inference_model(model, image)
    picture, drawn = mmcv.imread(image, channel_order='rgb'), result
    if scale != 1:
        labels = result.pred_sem_seg.cpu().data[0].numpy().astype('uint8')
        big = mmcv.imrescale(labels, scale, interpolation='nearest')
        drawn = SegDataSample(
            pred_sem_seg=PixelData(data=result.pred_sem_seg.data.new_tensor(big)[None])
        )
        picture = mmcv.imrescale(picture, scale, interpolation='bilinear')
    show_result_pyplot(model, picture, drawn, show=False, draw_gt=False, out_file=out)
    return result


def main(argv=None):
    quiet_upstream_warnings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', required=True, help='output image file')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection score threshold')
    parser.add_argument(
        '--scale', type=int, default=1, help='draw on the image enlarged this many times'
    )
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error(f'--scale must be >= 1, got {args.scale}')
    for path, what in (
        (args.image, 'image'),
        (args.config, 'config file'),
        (args.checkpoint, 'checkpoint'),
    ):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} not found: {path}')
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    scope = Config.fromfile(args.config).get('default_scope', 'mmdet')
    if scope not in ('mmdet', 'mmseg'):
        raise ValueError(f'{args.config}: default_scope {scope!r} is neither mmdet nor mmseg')
    try:
        if scope == 'mmseg':
            draw_segmentation(
                args.image, args.config, args.checkpoint, args.out, args.device, args.scale
            )
        else:
            draw_detection(
                args.image,
                args.config,
                args.checkpoint,
                args.out,
                args.score_thr,
                args.device,
                args.scale,
            )
    except Exception as e:
        message = user_error_message(e, args.checkpoint)
        if message is None:
            raise
        sys.exit(f'error: {message}')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
