"""Check COCO annotation files for what MMDetection would silently drop, mis-train or fail on.

    python tools/check_coco.py ANN_FILE [ANN_FILE ...] [--img-dir DIR] [--classes A B ...]
                               [--no-masks] [--max-report N]

Each problem is named by file, image id and annotation id, with what mmdet 3.3 does with it
(the checks and the verified behaviour: :mod:`hst_mm.datasets.coco_check`). Errors (exit
status 1) are data that is lost, wrong or fatal; warnings are images that training skips.
``tools/train.py`` runs the same checks on the training files of CocoDataset configs.
"""

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from hst_mm.datasets.coco_check import check_coco  # noqa: E402

__all__ = ['check_coco', 'main']


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('ann_files', nargs='+', help='COCO-format annotation json files')
    parser.add_argument(
        '--img-dir',
        help='decode every image in this dir and compare its '
        "size with the annotation's width and height",
    )
    parser.add_argument(
        '--classes',
        nargs='+',
        help="the config's classes (metainfo.classes), in its order "
        "(default: the file's categories)",
    )
    parser.add_argument(
        '--no-masks',
        action='store_true',
        help='the config trains boxes only: do not check segmentations',
    )
    parser.add_argument(
        '--max-report',
        type=int,
        default=50,
        help='print at most this many errors per file (default 50)',
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    failed = False
    for ann_file in args.ann_files:
        report = check_coco(
            ann_file, args.img_dir, classes=args.classes, with_mask=not args.no_masks
        )
        errors, warnings = report.errors, report.warnings
        for msg in errors[: args.max_report]:
            print(f'ERROR {msg}')
        if len(errors) > args.max_report:
            print(f'ERROR {ann_file}: ... and {len(errors) - args.max_report} more errors')
        for msg in warnings:
            print(f'WARNING {msg}')
        print(f'{ann_file}: {len(errors)} errors, {len(warnings)} warnings')
        failed |= bool(errors)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
