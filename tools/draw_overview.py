#!/usr/bin/env python
"""One picture of a model on its test split: ground truth beside prediction for the first
images, upscaled so that boxes, masks and class names are readable.

    python tools/draw_overview.py CONFIG [CHECKPOINT] --out FILE [--num 6] [--scale 4]
                                  [--split test|val|train] [--score-thr 0.3] [--device cpu]

Without a checkpoint it draws the ground truth alone: a look at the data set (also where
mmseg 1.2.2's ``browse_dataset`` fails). How: :mod:`workshop.overview`.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: workshop, hst_mm

from hst_mm.engine.quiet import quiet_upstream_warnings  # noqa: E402
from workshop.overview import SPLITS, draw_overview  # noqa: E402


def main(argv=None):
    quiet_upstream_warnings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?', help='without one: the ground truth alone')
    parser.add_argument('--out', required=True, help='output image file (.png)')
    parser.add_argument('--num', type=int, default=6, help='number of images')
    parser.add_argument('--scale', type=int, default=4, help='integer upscaling factor')
    parser.add_argument('--split', default='test', choices=SPLITS, help='which data loader')
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
            args.split,
        )
    except Exception as e:
        message = user_error_message(e, args.checkpoint)
        if message is None:
            raise
        sys.exit(f'error: {message}')
    what = 'ground truth | prediction' if args.checkpoint else 'ground truth'
    print(f'wrote {args.out} ({len(rows)} {args.split} images, {what})')


if __name__ == '__main__':
    main()
