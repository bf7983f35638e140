"""Check a COCO-format annotation file for what MMDetection would silently drop or mis-train on.

    python tools/check_coco.py ANN_FILE [ANN_FILE ...] [--img-dir DIR] [--max-report N]

mmdet 3.3's ``CocoDataset`` and ``LoadAnnotations`` never complain: an annotation whose box
is degenerate, non-finite or outside its image is dropped; an instance whose polygons all
have fewer than 3 points or an odd number of coordinates is kept as an *ignored* box; NaN
polygon coordinates rasterise to a garbage mask; an image without annotations is left out of
training (``filter_empty_gt``). This tool names each such problem by file, image id and
annotation id. Errors (exit status 1) are data that is lost or wrong; warnings are images
that training skips. The toy set passes; run it on any new data set before training.
"""
from __future__ import annotations

import argparse
import json
import math
import os.path as osp
import sys
from collections import Counter
from typing import List, Tuple


def _finite(values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _check_segmentation(seg, img) -> List[str]:
    """Problems of one annotation's ``segmentation`` (polygons or RLE)."""
    if isinstance(seg, dict):                                   # RLE
        if seg.get('counts') is None or not isinstance(seg.get('size'), list):
            return ['RLE segmentation without counts/size (mmdet ignores the instance)']
        if img and list(seg['size']) != [img.get('height'), img.get('width')]:
            return [f'RLE size {seg["size"]} differs from the image\'s '
                    f'[{img.get("height")}, {img.get("width")}]']
        return []
    if not isinstance(seg, list):
        return [f'segmentation is a {type(seg).__name__}, not polygons or RLE']
    problems, usable = [], 0
    for i, poly in enumerate(seg):
        if not isinstance(poly, list):
            problems.append(f'polygon {i} is not a list of coordinates')
        elif not _finite(poly):
            problems.append(f'polygon {i} has non-finite or non-numeric coordinates '
                            f'(mmdet rasterises NaN to an empty mask)')
        elif len(poly) % 2:
            problems.append(f'polygon {i} has an odd number of coordinates ({len(poly)})')
        elif len(poly) < 6:
            problems.append(f'polygon {i} has {len(poly) // 2} points (needs >= 3)')
        else:
            usable += 1
    if problems and not usable:
        problems.append('no usable polygon: mmdet ignores the whole instance')
    return problems


def check_coco(ann_file: str, img_dir: str = None) -> Tuple[List[str], List[str]]:
    """Check one COCO annotation file.

    Args:
        ann_file: the json file.
        img_dir: if given, also check that every image file exists there.

    Returns:
        ``(errors, warnings)``: messages, each naming the file, image id and annotation id.
    """
    where = ann_file
    try:
        with open(ann_file) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        return [f'{where}: cannot be read as JSON ({type(e).__name__}: {e})'], []
    missing = [k for k in ('images', 'annotations', 'categories') if not isinstance(
        data.get(k) if isinstance(data, dict) else None, list)]
    if missing:
        return [f'{where}: no list of {", ".join(missing)} (not a COCO instances file)'], []
    errors, warnings = [], []
    images, cats = {}, {c.get('id') for c in data['categories']}
    for img in data['images']:
        iid = img.get('id')
        if iid in images:
            errors.append(f'{where}: image {iid}: duplicate image id')
        images[iid] = img
        w, h = img.get('width'), img.get('height')
        if not (_finite([w, h]) and w > 0 and h > 0):
            errors.append(f'{where}: image {iid}: width/height {w}x{h} not positive numbers')
        if img_dir and not osp.isfile(osp.join(img_dir, str(img.get('file_name')))):
            errors.append(f'{where}: image {iid}: file {img.get("file_name")} not in {img_dir}')
    seen, usable, listed = set(), Counter(), Counter()
    for ann in data['annotations']:
        aid, iid = ann.get('id'), ann.get('image_id')
        at = f'{where}: image {iid}, annotation {aid}'
        if aid in seen:
            errors.append(f'{at}: duplicate annotation id')
        seen.add(aid)
        img = images.get(iid)
        if img is None:
            errors.append(f'{at}: image id {iid} is not in "images"')
            continue
        listed[iid] += 1
        if ann.get('category_id') not in cats:
            errors.append(f'{at}: category_id {ann.get("category_id")} is not in "categories" '
                          f'(mmdet drops the annotation)')
            continue
        problems = []
        box = ann.get('bbox')
        if not (isinstance(box, list) and len(box) == 4 and _finite(box)):
            problems.append(f'bbox {box} is not 4 finite numbers (mmdet drops the annotation)')
        else:
            x, y, bw, bh = box
            if bw < 1 or bh < 1:
                problems.append(f'bbox {box} is under 1 pixel wide or high (mmdet drops it)')
            elif (min(x + bw, img.get('width', 0)) <= max(x, 0)
                  or min(y + bh, img.get('height', 0)) <= max(y, 0)):
                problems.append(f'bbox {box} lies outside the {img.get("width")}x'
                                f'{img.get("height")} image (mmdet drops it)')
        if 'area' not in ann:
            problems.append("no area (mmdet's CocoDataset fails with KeyError: 'area')")
        elif not (_finite([ann['area']]) and ann['area'] > 0):
            problems.append(f'area {ann["area"]} is not a positive number '
                            f'(mmdet drops the annotation)')
        if ann.get('segmentation') is not None:
            problems += _check_segmentation(ann['segmentation'], img)
        errors += [f'{at}: {p}' for p in problems]
        if not problems and not ann.get('iscrowd', 0) and not ann.get('ignore', False):
            usable[iid] += 1
    small = [i for i, img in images.items() if _finite([img.get('width'), img.get('height')])
             and min(img['width'], img['height']) < 32]
    if small:
        warnings.append(f'{where}: {len(small)} images are under 32 pixels wide or high and are '
                        f'left out of training by mmdet\'s filter_cfg min_size=32: image ids '
                        f'{_ids(small)}')
    empty = [i for i in images if not listed[i]]
    if empty:
        warnings.append(f'{where}: {len(empty)} of {len(images)} images have no annotation and '
                        f'are left out of training (filter_empty_gt): image ids {_ids(empty)}')
    background = [i for i in images if listed[i] and not usable[i]]
    if background:
        warnings.append(f'{where}: {len(background)} images have annotations but no usable '
                        f'instance (broken, crowd or ignored): mmdet trains on them as '
                        f'background only: image ids {_ids(background)}')
    if images and not usable:
        errors.append(f'{where}: no image has a usable annotation: nothing to train on (without '
                      f'any annotation mmengine fails with "need at least one array to '
                      f'concatenate")')
    return errors, warnings


def _ids(found: list) -> str:
    return ', '.join(map(str, found[:10])) + (' ...' if len(found) > 10 else '')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('ann_files', nargs='+', help='COCO-format annotation json files')
    parser.add_argument('--img-dir', help='check that the image files exist in this dir')
    parser.add_argument('--max-report', type=int, default=50,
                        help='print at most this many errors per file (default 50)')
    args = parser.parse_args(argv)
    failed = False
    for ann_file in args.ann_files:
        errors, warnings = check_coco(ann_file, args.img_dir)
        for msg in errors[:args.max_report]:
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
