"""Check a COCO instances file for what MMDetection 3.3 would silently lose, mis-train or
fail on later, and say what mmdet does with each problem.

mmdet's ``CocoDataset`` and ``LoadAnnotations`` never name a bad entry. Verified on mmdet 3.3
(``tests/test_check_coco.py`` builds the toy config's dataset on each case):

* an annotation whose box is non-finite, under 1 pixel wide or high (negative widths too),
  outside its image, whose ``area`` is not positive or whose ``category_id`` is not one of
  the classes is **dropped**; an infinite width or height is kept;
* an instance whose polygons all have fewer than 3 points or an odd number of coordinates
  becomes an *ignored* box; NaN polygon coordinates rasterise to an empty mask, and so do
  polygons lying entirely outside the image: mmdet **trains** the instance on that mask;
* an RLE mask (pycocotools) whose runs add up to less than height x width is decoded with
  the other pixels left **uninitialised** and trained on; more, or a run over
  2**32 - 1, fails with ``Invalid RLE mask representation`` (or ``OverflowError``) when
  training reaches the image, naming no file;
* an image with no annotation of the classes (none at all, or only unknown categories) is
  **left out** of training (``filter_empty_gt``), as is one under ``min_size`` pixels; an
  image whose annotations of the classes are all dropped is **trained on as background**;
* a missing ``bbox``, ``area``, ``file_name`` or ``id``, a box or size of the wrong type, an
  entry that is not an object, or an instance without ``segmentation`` in a config that
  loads masks **fails** with a bare ``KeyError`` / ``TypeError``, at start-up or when
  training reaches the image; so does an image file that cannot be decoded;
* the labels follow the order of the file's ``categories`` (``get_cat_ids``), not the
  config's ``classes``: a class missing from the file, or another order, gives every
  prediction another class's name;
* a file left with no image fails with mmengine's ``need at least one array to
  concatenate``; JSON nested deeper than Python's recursion limit with ``RecursionError``.

Errors are data that is lost, wrong or fatal; warnings are images that training skips and
degenerate parts with nothing to learn from (a box under one pixel wide or high, a polygon
part under 3 points beside a usable one), which COCO train2017 itself holds. Only the
standard library is needed, and cv2 (and PIL, if installed) for ``img_dir``.
"""

from __future__ import annotations

import json
import math
import os.path as osp
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

#: What mmdet's COCO base configs set (``mmdet::_base_/datasets/coco_instance.py``).
MMDET_COCO_FILTER = dict(filter_empty_gt=True, min_size=32)
ERROR, WARNING = 'error', 'warning'
FATAL = 'fatal'  # kind of a file-level error that leaves nothing to train on


@dataclass
class Problem:
    """One finding: ``where`` names the entry (``image 3, annotation 7``), ``id`` is what a
    one-line summary lists for it (``annotation 7``), ``kind`` groups findings there."""

    severity: str
    kind: str
    message: str
    where: str = ''
    id: object = None


@dataclass
class CocoReport:
    """The findings for one annotation file."""

    ann_file: str
    problems: List[Problem] = field(default_factory=list)

    def add(
        self, severity: str, kind: str, message: str, where: str = '', id: object = None
    ) -> None:
        self.problems.append(Problem(severity, kind, message, where, id))

    def _lines(self, severity: str) -> List[str]:
        return [
            f'{self.ann_file}: {p.where + ": " if p.where else ""}{p.message}'
            for p in self.problems
            if p.severity == severity
        ]

    @property
    def errors(self) -> List[str]:
        """Each error as ``FILE: image I, annotation A: what (what mmdet does)``."""
        return self._lines(ERROR)

    @property
    def warnings(self) -> List[str]:
        """Each warning (images training skips, with their count and first ids)."""
        return self._lines(WARNING)

    def summary(self, max_ids: int = 3) -> Optional[str]:
        """All errors in one line, ``FILE: N entries ...: 2 x KIND (annotations 7, 9), ...``;
        None if there is no error.

        File-level errors (unreadable, not COCO, nothing to train on) come first, in full.
        """
        errors = [p for p in self.problems if p.severity == ERROR]
        if not errors:
            return None
        parts = [p.message for p in errors if p.kind == FATAL]
        entries = [p for p in errors if p.kind != FATAL]
        if entries:
            kinds = ', '.join(_grouped(entries, max_ids).values())
            parts.append(
                f'{len(entries)} entries that mmdet would lose, mis-train or fail on: {kinds}'
            )
        return f'{self.ann_file}: ' + '; '.join(parts)

    def warning_summary(self, max_ids: int = 5) -> List[str]:
        """The warnings with their counts and first ids, one line per kind: the image-level
        ones as they are, the per-annotation ones grouped."""
        warnings = [p for p in self.problems if p.severity == WARNING]
        lines = [f'{self.ann_file}: {p.message}' for p in warnings if p.id is None]
        grouped = _grouped([p for p in warnings if p.id is not None], max_ids)
        return lines + [f'{self.ann_file}: {line}' for line in grouped.values()]


def _grouped(problems: List[Problem], max_ids: int) -> Dict[str, str]:
    """``{kind: 'N x KIND (annotations 7, 9 ...)'}`` for the problems that name an entry."""
    by_kind: Dict[str, List[Problem]] = defaultdict(list)
    for p in problems:
        by_kind[p.kind].append(p)
    return {
        kind: f'{len(ps)} x {kind} ({_named_ids([p.id for p in ps], max_ids)})'
        for kind, ps in by_kind.items()
    }


def _ids(found: Sequence, limit: int = 10) -> str:
    return ', '.join(map(str, found[:limit])) + (' ...' if len(found) > limit else '')


def _named_ids(found: Sequence[str], limit: int) -> str:
    """``['annotation 2', 'annotation 5']`` -> ``'annotations 2, 5'``; mixed nouns as they are."""
    nouns = {str(f).split(' ', 1)[0] for f in found}
    if len(nouns) == 1 and all(' ' in str(f) for f in found):
        plural = 's' if len(found) > 1 else ''
        return f'{nouns.pop()}{plural} ' + _ids([str(f).split(' ', 1)[1] for f in found], limit)
    return _ids(found, limit)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(values) -> bool:
    return all(_number(v) and math.isfinite(v) for v in values)


def _valid_id(v) -> bool:
    """Ids are dictionary keys in mmdet's COCO index: an int or a string."""
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def _id_problem(entry: dict, key: str) -> Optional[str]:
    """What is wrong with ``entry[key]`` as an id, and what mmdet does about it; None if
    nothing."""
    if key not in entry:
        return f'no {key} (mmdet fails with KeyError: {key!r})'
    v = entry[key]
    if _valid_id(v):
        return None
    try:
        hash(v)
    except TypeError:
        return f'{key} {v!r:.40} is not an integer (mmdet fails with TypeError: unhashable)'
    return f'{key} {v!r:.40} is not an integer or string id'


def _bbox_problem(ann: dict) -> Optional[str]:
    """What is wrong with the type of ``ann['bbox']``, and how mmdet fails; None if it is 4
    numbers."""
    if 'bbox' not in ann:
        return "no bbox (mmdet fails with KeyError: 'bbox')"
    box = ann['bbox']
    if isinstance(box, (list, tuple)) and len(box) == 4 and all(map(_number, box)):
        return None
    how = 'ValueError' if isinstance(box, (list, tuple)) and len(box) != 4 else 'TypeError'
    return f'bbox {box!r:.60} is not 4 numbers (mmdet fails with {how})'


#: A file whose JSON nests deeper than Python's recursion limit (mmengine's loader, and so
#: mmdet, stop with a ``RecursionError`` traceback that names no file).
_TOO_DEEP = (
    'holds JSON nested too deeply to be read (lists or objects inside each other beyond '
    "Python's recursion limit; mmdet fails with RecursionError): not a COCO instances file"
)


def load_coco(rep: CocoReport) -> Optional[dict]:
    """The parsed file, or None after adding a fatal error (unreadable, not JSON, not a COCO
    instances file)."""
    try:
        with open(rep.ann_file, encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        rep.add(ERROR, FATAL, f'cannot be read as JSON ({type(e).__name__}: {e})')
        return None
    except RecursionError:
        rep.add(ERROR, FATAL, _TOO_DEEP)
        return None
    if not isinstance(data, dict):
        rep.add(
            ERROR,
            FATAL,
            f'holds a JSON {type(data).__name__}, not an object with '
            f'"images", "annotations" and "categories"',
        )
        return None
    keys = ('images', 'annotations', 'categories')
    bad = [k for k in keys if not isinstance(data.get(k), list)]
    if bad:
        what = ', '.join(
            f'"{k}"' + ('' if k not in data else f' (found: {type(data[k]).__name__})') for k in bad
        )
        rep.add(
            ERROR,
            FATAL,
            f'no list of {what}: not a COCO instances file (mmdet fails '
            f'with KeyError or "need at least one array to concatenate")',
        )
        return None
    return data


def check_categories(
    rep: CocoReport, cats: list, classes: Optional[Sequence[str]]
) -> Optional[Dict[object, str]]:
    """``{category id: name}`` of the valid entries, or None after an error that makes mmdet
    fail (an entry that is not an object, a missing id or name). Duplicates and a mismatch
    with the config's ``classes`` are errors too."""
    names: Dict[object, str] = {}
    for k, cat in enumerate(cats):
        problem = (
            f'a {type(cat).__name__}, not an object (mmdet fails with TypeError)'
            if not isinstance(cat, dict)
            else _id_problem(cat, 'id')
            or (
                None
                if isinstance(cat.get('name'), str)
                else f'name {cat.get("name")!r:.40} is not a string (mmdet fails with '
                f'KeyError or TypeError)'
            )
        )
        if problem:
            rep.add(ERROR, 'bad category entry', problem, f'categories[{k}]', f'categories[{k}]')
            return None
        if cat['id'] in names:
            rep.add(
                ERROR,
                'duplicate category id',
                f'category id {cat["id"]} is listed twice (mmdet gives it two labels)',
                id=f'category {cat["id"]}',
            )
        names[cat['id']] = cat['name']
    for name, n in Counter(names.values()).items():
        if n > 1:
            rep.add(
                ERROR,
                'duplicate category name',
                f'category name {name!r} has {n} ids '
                f"(mmdet gives each a label: every later class gets another's name)",
                id=f'category {name!r}',
            )
    if classes is not None:
        _check_classes(rep, list(names.values()), list(classes))
    return names


def _check_classes(rep: CocoReport, file_names: List[str], classes: List[str]) -> None:
    """mmdet numbers the labels in the order of the file's categories that the config's
    ``classes`` name (``get_cat_ids``), not in the order of ``classes``."""
    missing = [c for c in classes if c not in file_names]
    if missing:
        rep.add(
            ERROR,
            FATAL,
            f"the config's classes {_ids(missing)} are not among the file's "
            f"categories: mmdet numbers the labels by the file's categories, "
            f"so the classes after them would carry other classes' names",
        )
        return
    used = [n for n in file_names if n in classes]
    if used != classes:
        rep.add(
            ERROR,
            FATAL,
            f'the file lists the categories in another order ({_ids(used)}) '
            f"than the config's classes ({_ids(classes)}): mmdet numbers the "
            f"labels in the file's order, so predictions would carry other "
            f"classes' names",
        )


def check_images(rep: CocoReport, images: list, img_dir: Optional[str]) -> Dict[object, dict]:
    """``{image id: entry}`` of the entries mmdet can index; errors for the others, for
    duplicate ids, bad sizes, missing file names and (with ``img_dir``) image files."""
    found: Dict[object, dict] = {}
    for k, img in enumerate(images):
        problem = (
            f'a {type(img).__name__}, not an object (mmdet fails with TypeError)'
            if not isinstance(img, dict)
            else _id_problem(img, 'id')
        )
        if problem:
            rep.add(ERROR, 'bad image entry', problem, f'images[{k}]', f'images[{k}]')
            continue
        iid, where = img['id'], f'image {img["id"]}'
        if iid in found:
            rep.add(
                ERROR,
                'duplicate image id',
                'duplicate image id (mmdet keeps the later entry only)',
                where,
                where,
            )
        found[iid] = img
        w, h = img.get('width'), img.get('height')
        if not (_number(w) and _number(h)):
            rep.add(
                ERROR,
                'width/height not numbers',
                f'width/height {w!r}x{h!r} are not numbers (mmdet fails with TypeError)',
                where,
                where,
            )
        elif not (_finite([w, h]) and w > 0 and h > 0):
            rep.add(
                ERROR,
                'width/height not positive',
                f'width/height {w}x{h} are not positive (mmdet drops every box of the image)',
                where,
                where,
            )
        if not isinstance(img.get('file_name'), str):
            rep.add(
                ERROR,
                'no file_name',
                f'file_name {img.get("file_name")!r} is not a '
                f'string (mmdet fails with KeyError or TypeError)',
                where,
                where,
            )
        elif img_dir is not None:
            _check_image_file(rep, img, img_dir)
    return found


def _check_image_file(rep: CocoReport, img: dict, img_dir: str) -> None:
    """Decode the image as mmdet's ``LoadImageFromFile`` does (cv2, colour, EXIF orientation
    applied) and compare its size with the entry's width and height."""
    where = f'image {img["id"]}'
    path = osp.join(img_dir, img['file_name'])
    if not osp.isfile(path):
        rep.add(
            ERROR,
            'image file missing',
            f'file {img["file_name"]} is not in {img_dir} '
            f'(training fails with FileNotFoundError when it reaches it)',
            where,
            where,
        )
        return
    shape, reason = decode_image(path)
    if shape is None:
        rep.add(
            ERROR,
            'image file corrupt or truncated',
            f'{path} cannot be decoded '
            f'({reason}): training stops with "failed to load image" when it reaches '
            f'it',
            where,
            where,
        )
        return
    if reason:
        rep.add(
            ERROR,
            'image file truncated',
            f'{path}: {reason}; cv2 decodes it, so mmdet '
            f'trains on what the decoder made of the missing part',
            where,
            where,
        )
    w, h = img.get('width'), img.get('height')
    if _number(w) and _number(h) and shape != (h, w):
        turned = ' (turned by its EXIF orientation?)' if shape == (w, h) else ''
        rep.add(
            ERROR,
            'image size differs from width/height',
            f'{path} decodes as '
            f'{shape[1]}x{shape[0]}{turned}, the annotation says {w}x{h}: mmdet places '
            f'the boxes and masks on the image as it decodes, i.e. misplaced',
            where,
            where,
        )


def decode_image(path: str):
    """``((height, width), problem)`` of the image as mmcv decodes it (``cv2.imdecode``,
    colour), with ``problem`` a truncation PIL finds (or ''); ``(None, reason)`` if it
    cannot be decoded."""
    import cv2
    import numpy as np

    with open(path, 'rb') as f:
        data = f.read()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    pil = _pil_problem(path)
    if img is None:
        return None, pil or ('empty file' if not data else 'cv2 cannot decode it')
    return img.shape[:2], pil


def _pil_problem(path: str) -> str:
    """What PIL finds wrong when it decodes the whole file ('' if nothing, or no PIL)."""
    try:
        from PIL import Image
    except ImportError:  # optional: cv2 alone decides then
        return ''
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as e:  # noqa: BLE001  (any decoder error is the finding)
        return f'PIL: {e}'
    return ''


class _Counts:
    """Per image: annotations mmdet indexes, those of the classes, instances it keeps; and
    the annotations of the file's categories that the config's classes leave out."""

    def __init__(self) -> None:
        self.listed, self.in_classes, self.kept = Counter(), Counter(), Counter()
        self.other: list = []


def check_annotations(
    rep: CocoReport,
    anns: list,
    images: Dict[object, dict],
    names: Dict[object, str],
    class_ids: set,
    with_mask: bool,
) -> _Counts:
    """Check every annotation; return what mmdet keeps of each image."""
    counts, seen = _Counts(), set()
    for k, ann in enumerate(anns):
        if not isinstance(ann, dict):
            rep.add(
                ERROR,
                'annotation entry not an object',
                f'a {type(ann).__name__}, not an object (mmdet fails with TypeError)',
                f'annotations[{k}]',
                f'annotations[{k}]',
            )
            continue
        aid, iid = ann.get('id'), ann.get('image_id')
        where = f'image {iid}, annotation {aid}'
        problems = [
            p for p in (_id_problem(ann, key) for key in ('id', 'image_id', 'category_id')) if p
        ]
        if problems:
            rep.add(
                ERROR,
                'bad annotation id, image_id or category_id',
                '; '.join(problems),
                f'annotations[{k}]',
                f'annotations[{k}]',
            )
            continue
        if aid in seen:
            rep.add(
                ERROR,
                'duplicate annotation id',
                'duplicate annotation id (mmdet stops with "Annotation ids ... are not unique")',
                where,
                f'annotation {aid}',
            )
        seen.add(aid)
        img = images.get(iid)
        if img is None:
            rep.add(
                ERROR,
                'image_id not in "images"',
                f'image id {iid} is not in "images" (mmdet never loads the annotation)',
                where,
                f'annotation {aid}',
            )
            continue
        counts.listed[iid] += 1
        counts.in_classes[iid] += ann['category_id'] in class_ids  # filter_empty_gt's test
        fate = _check_one(rep, ann, img, names, class_ids, with_mask, where)
        counts.kept[iid] += fate == 'kept'
        if fate == 'other':
            counts.other.append(aid)
    return counts


def _check_one(
    rep: CocoReport,
    ann: dict,
    img: dict,
    names: Dict[object, str],
    class_ids: set,
    with_mask: bool,
    where: str,
) -> str:
    """Problems of one annotation, in the order mmdet's ``parse_data_info`` tests them;
    returns what mmdet does with it: ``'kept'``, ``'ignored'`` (crowd, unusable mask),
    ``'dropped'``, or ``'other'`` (dropped: a category the config's classes leave out)."""
    aid = ann['id']

    def error(kind: str, message: str, severity: str = ERROR) -> None:
        rep.add(severity, kind, message, where, f'annotation {aid}')

    if ann.get('ignore', False):
        return 'dropped'  # marked so by the data set: intended
    cat = ann['category_id']
    if cat not in names:
        error(
            'category_id not in "categories"',
            f'category_id {cat} is not in "categories" (mmdet drops the annotation)',
        )
    problem = _bbox_problem(ann)
    if problem:
        error('bbox missing or not 4 numbers', problem)
        return 'dropped'
    if _box_fate(error, ann['bbox'], ann, img) == 'dropped':
        return 'dropped'
    if cat not in class_ids:
        return 'other' if cat in names else 'dropped'
    # LoadAnnotations reads the mask of every instance, crowd ones too
    fate = _mask_fate(error, ann.get('segmentation'), img) if with_mask else 'kept'
    return 'ignored' if fate == 'kept' and ann.get('iscrowd', False) else fate


def _box_fate(error, box, ann: dict, img: dict) -> str:
    """mmdet's box tests, in its order: no overlap with the image, then a missing or
    non-positive area, then a side under one pixel -> dropped; an infinite side is kept.
    Returns ``'kept'`` or ``'dropped'``.

    A negative side is an error (the box is not [x, y, w, h]: data wrong); a side from 0 to
    1 pixel only a warning: such an object has nothing to learn from, and COCO train2017
    itself holds two (height 0, annotations 918 and 2206849, reported in
    cocodataset/cocoapi#355), which mmdet drops.
    """
    x, y, w, h = box
    W, H = img.get('width'), img.get('height')
    if not (_number(W) and _number(H)):
        return 'dropped'  # the image's error says mmdet fails
    # mmdet's own overlap arithmetic: NaN compares false and ends up as 0
    overlap = max(0, min(x + w, W) - max(x, 0)) * max(0, min(y + h, H) - max(y, 0))
    if overlap == 0:
        if any(map(math.isnan, box)):
            error('bbox not finite', f'bbox {box} has NaN (mmdet drops the annotation)')
        elif w < 1 or h < 1:
            _small_box(error, box)
        else:
            error(
                'bbox outside the image',
                f'bbox {box} lies outside the {W}x{H} image (mmdet drops the annotation)',
            )
        return 'dropped'
    if 'area' not in ann or not _number(ann['area']):
        error(
            'area missing or not a number',
            f'area {ann.get("area")!r} is missing or not a '
            f"number (mmdet fails with KeyError: 'area' or TypeError)",
        )
        return 'dropped'
    if not ann['area'] > 0:
        error(
            'area not positive', f'area {ann["area"]} is not positive (mmdet drops the annotation)'
        )
        return 'dropped'
    if w < 1 or h < 1:
        _small_box(error, box)
        return 'dropped'
    if not _finite(box):
        error(
            'bbox not finite',
            f'bbox {box} is infinite (mmdet keeps it: the box runs to the image border)',
        )
    return 'kept'


def _small_box(error, box) -> None:
    """A box under one pixel wide or high: negative (error) or degenerate (warning)."""
    if box[2] < 0 or box[3] < 0:
        error(
            'bbox with a negative width or height',
            f'bbox {box} has a negative width or '
            f'height, so it is not [x, y, width, height] (mmdet drops the annotation)',
        )
    else:
        error(
            'degenerate bbox (under 1 pixel wide or high), dropped by mmdet',
            f'bbox {box} is under 1 pixel wide or high (mmdet drops the annotation)',
            WARNING,
        )


def _mask_fate(error, seg, img: dict) -> str:
    """mmdet's ``LoadAnnotations(with_mask=True)`` on one instance's ``segmentation``:
    returns ``'kept'`` or ``'ignored'`` (no usable polygon, RLE without counts/size)."""
    if not seg:
        error(
            'no segmentation',
            f'segmentation {seg!r} is empty or missing (a config that '
            f"loads masks fails with KeyError: 'mask' when training reaches the image)",
        )
        return 'dropped'
    if isinstance(seg, dict):  # RLE
        if seg.get('counts') is None or not isinstance(seg.get('size'), list):
            error(
                'RLE without counts/size',
                'RLE segmentation without counts/size (mmdet ignores the instance)',
            )
            return 'ignored'
        if list(seg['size']) != [img.get('height'), img.get('width')]:
            error(
                'RLE size differs from the image',
                f'RLE size {seg["size"]!r:.40} differs from '
                f"the image's [{img.get('height')}, {img.get('width')}]",
            )
        _check_rle(error, seg)
        return 'kept'  # by mmdet's index, even when decoding it fails later
    if not isinstance(seg, list):
        error(
            'segmentation not polygons or RLE',
            f'segmentation is a {type(seg).__name__}, '
            f'not polygons or RLE (mmdet fails with TypeError)',
        )
        return 'dropped'
    usable, fragments, outside = 0, [], []
    for i, poly in enumerate(seg):
        if not isinstance(poly, list):
            error(
                'polygon not a list',
                f'polygon {i} is not a list of coordinates (mmdet fails with TypeError)',
            )
        elif not _finite(poly):
            error(
                'polygon not finite',
                f'polygon {i} has non-finite or non-numeric '
                f'coordinates (mmdet rasterises NaN to an empty mask)',
            )
        elif len(poly) % 2:
            error(
                'polygon with an odd number of coordinates',
                f'polygon {i} has an odd number of coordinates ({len(poly)})',
            )
        elif len(poly) < 6:
            fragments.append(f'polygon {i} has {len(poly) // 2} points (needs >= 3)')
        elif _outside(poly, img):
            outside.append(i)
        else:
            usable += 1
    # a part under 3 points has no area: beside a usable polygon nothing is lost
    for message in fragments:
        error('polygon under 3 points', message, WARNING if usable else ERROR)
    # a part outside the image adds no pixel; with no part inside, mmdet trains the instance
    # (its box) on an empty mask
    for i in outside:
        error(
            'polygon outside the image',
            f'polygon {i} lies entirely outside the {img["width"]}x{img["height"]} image ('
            + (
                'the mask loses nothing inside the image)'
                if usable
                else 'mmdet trains the instance on an empty mask)'
            ),
            WARNING if usable else ERROR,
        )
    if outside and not usable:
        return 'kept'  # mmdet keeps it: its own polygon tests pass
    if not usable:
        error('no usable polygon', 'no usable polygon: mmdet ignores the whole instance')
        return 'ignored'
    return 'kept'


def _outside(poly: list, img: dict) -> bool:
    """The polygon ``[x0, y0, x1, y1, ...]`` has no area inside the image (all its points on
    or beyond one edge), so pycocotools rasterises it to no pixel."""
    W, H = img.get('width'), img.get('height')
    if not (_number(W) and _number(H)):
        return False  # the image's own error says mmdet fails
    xs, ys = poly[0::2], poly[1::2]
    return max(xs) <= 0 or min(xs) >= W or max(ys) <= 0 or min(ys) >= H


#: pycocotools keeps run lengths as C ``uint`` (32 bits).
_MAX_RUN = 2**32 - 1


def _check_rle(error, seg: dict) -> None:
    """mmdet decodes an RLE mask with pycocotools, which checks neither the run lengths nor
    their sum: runs adding up to less than height x width leave the rest of the mask as
    uninitialised memory (trained on); more, or a run over 2**32 - 1, fail when training
    reaches the image."""
    counts, size = seg['counts'], seg['size']
    runs, problem = _rle_runs(counts)
    if problem:
        error('RLE counts not run lengths', f'RLE counts: {problem}')
        return
    if not (
        len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)
    ):
        error(
            'RLE size not [height, width]',
            f'RLE size {size!r:.40} is not [height, width] (mmdet fails with TypeError or '
            f'"Invalid RLE mask representation")',
        )
        return
    h, w = size
    total = sum(runs)
    if total < h * w:
        error(
            'RLE runs shorter than the mask',
            f'RLE runs add up to {total} pixels, not the {h}x{w} = {h * w} of its size '
            f'(pycocotools leaves the other pixels of the mask uninitialised: mmdet trains '
            f'on whatever memory held)',
        )
        return
    if total > h * w:
        longest = max(runs)
        error(
            'RLE runs longer than the mask',
            f'RLE runs add up to {total} pixels, more than the {h}x{w} = {h * w} of its size'
            + (f', one run alone is {longest}' if longest > h * w else '')
            + ' (training fails with "Invalid RLE mask representation", naming no file)',
        )


def _rle_runs(counts) -> tuple:
    """``(run lengths, '')`` of uncompressed (a list) or compressed (a string) RLE counts,
    read as pycocotools reads them, without decoding the mask; ``(None, problem)`` if they
    are not run lengths."""
    if isinstance(counts, list):
        for i, run in enumerate(counts):
            if not (_number(run) and run == int(run) and 0 <= run <= _MAX_RUN):
                return None, (
                    f'counts[{i}] = {run!r:.40} is not a run length (an integer from 0 to '
                    f'2**32 - 1; mmdet fails with TypeError or OverflowError, or truncates '
                    f'a fraction)'
                )
        return [int(run) for run in counts], ''
    if isinstance(counts, str):
        return _rle_string_runs(counts)
    return None, (
        f'a {type(counts).__name__}, not a list of run lengths or a compressed string '
        f'(mmdet fails with TypeError)'
    )


def _rle_string_runs(s: str) -> tuple:
    """The run lengths of a compressed RLE string (pycocotools' ``rleFrString``: 5 bits a
    character from '0', a continuation bit, runs after the second stored as differences)."""
    runs: List[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p == len(s):
                return None, f'the compressed string ends inside run {len(runs)} (truncated)'
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                return None, (
                    f'character {s[p]!r} at {p} is not in a compressed RLE string '
                    f"('0' to 'o'; mmdet decodes garbage or fails)"
                )
            x |= (c & 0x1F) << 5 * k
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << 5 * k  # negative: sign-extended
        if len(runs) > 2:
            x += runs[-2]
        if not 0 <= x <= _MAX_RUN:
            return None, (
                f'run {len(runs)} of the compressed string is {x}, not a run length '
                f'(pycocotools wraps it to {x % 2**32})'
            )
        runs.append(x)
    return runs, ''


def check_filtering(
    rep: CocoReport, images: Dict[object, dict], counts: _Counts, filter_cfg: Optional[dict]
) -> None:
    """Which images mmdet's ``filter_data`` leaves out (warnings) and which it trains on as
    background only; an error when nothing is left to train on."""
    filter_cfg = filter_cfg or {}
    empty_gt = filter_cfg.get('filter_empty_gt', False)
    min_size = filter_cfg.get('min_size', 0)
    skipped_empty = [i for i in images if empty_gt and not counts.listed[i]]
    skipped_cats = [i for i in images if empty_gt and counts.listed[i] and not counts.in_classes[i]]
    sized = [i for i, img in images.items() if _finite([img.get('width'), img.get('height')])]
    small = [
        i
        for i in sized
        if i not in skipped_empty
        and i not in skipped_cats
        and min(images[i]['width'], images[i]['height']) < min_size
    ]
    trained = [i for i in sized if i not in skipped_empty + skipped_cats + small]
    background = [i for i in trained if counts.listed[i] and not counts.kept[i]]
    n = len(images)
    if skipped_empty:
        rep.add(
            WARNING,
            'skipped',
            f'{len(skipped_empty)} of {n} images have no annotation '
            f'and are left out of training (filter_empty_gt): image ids '
            f'{_ids(skipped_empty)}',
        )
    if skipped_cats:
        rep.add(
            WARNING,
            'skipped',
            f'{len(skipped_cats)} of {n} images have annotations of '
            f'unknown or other categories only and are left out of training '
            f'(filter_empty_gt): image ids {_ids(skipped_cats)}',
        )
    if small:
        rep.add(
            WARNING,
            'skipped',
            f'{len(small)} of {n} images are under {min_size} pixels '
            f'wide or high and are left out of training (filter_cfg min_size): image '
            f'ids {_ids(small)}',
        )
    if background:
        rep.add(
            WARNING,
            'background',
            f'{len(background)} of {n} images have annotations '
            f'but no usable instance (dropped, crowd or ignored): mmdet trains on them '
            f'as background only: image ids {_ids(background)}',
        )
    _check_something_left(rep, images, counts, trained)


def _check_something_left(
    rep: CocoReport, images: Dict[object, dict], counts: _Counts, trained: list
) -> None:
    """The fatal error when no image, or no instance, is left to train on."""
    tail = (
        'mmdet leaves out every image, and mmengine then fails with "need at least one '
        'array to concatenate"'
    )
    if not images:
        rep.add(ERROR, FATAL, f'no images: nothing to train on ({tail})')
    elif not sum(counts.listed.values()):
        rep.add(
            ERROR,
            FATAL,
            f'none of its {len(images)} images has an annotation: nothing to train on ({tail})',
        )
    elif not trained:
        rep.add(
            ERROR,
            FATAL,
            f'none of its {len(images)} images is left for training (see the '
            f'warnings): nothing to train on ({tail})',
        )
    elif not sum(counts.kept[i] for i in trained):
        rep.add(
            ERROR,
            FATAL,
            f'none of its {len(images)} images has a usable instance: '
            f'nothing to train on but background',
        )


def check_coco(
    ann_file: str,
    img_dir: Optional[str] = None,
    classes: Optional[Sequence[str]] = None,
    filter_cfg: Optional[dict] = MMDET_COCO_FILTER,
    with_mask: bool = True,
) -> CocoReport:
    """Check one COCO instances file as mmdet 3.3's ``CocoDataset`` would load it.

    Args:
        ann_file: the json file.
        img_dir: if given, decode every image there and compare its size with the entry's.
        classes: the config's class names (``metainfo.classes``); default: every category
            of the file, in its order.
        filter_cfg: the data set's ``filter_cfg`` (default: mmdet's COCO configs'; None:
            no image is left out).
        with_mask: the config loads masks (``LoadAnnotations(with_mask=True)``): check
            ``segmentation``.

    Returns:
        the :class:`CocoReport`; ``.errors``, ``.warnings`` and ``.summary()`` name each
        problem by file, image id and annotation id.
    """
    rep = CocoReport(ann_file)
    try:
        _check(rep, img_dir, classes, filter_cfg, with_mask)
    except RecursionError:  # an entry nested deeper than its checks (repr) can follow
        rep.add(ERROR, FATAL, _TOO_DEEP)
    return rep


def _check(
    rep: CocoReport,
    img_dir: Optional[str],
    classes: Optional[Sequence[str]],
    filter_cfg: Optional[dict],
    with_mask: bool,
) -> None:
    data = load_coco(rep)
    if data is None:
        return
    names = check_categories(rep, data['categories'], classes)
    if names is None:
        return
    wanted = set(names.values()) if classes is None else set(classes)
    class_ids = {cid for cid, name in names.items() if name in wanted}
    images = check_images(rep, data['images'], img_dir)
    counts = check_annotations(rep, data['annotations'], images, names, class_ids, with_mask)
    if counts.other:  # training on a subset of the categories is a choice
        rep.add(
            WARNING,
            'other categories',
            f'{len(counts.other)} annotations are of '
            f"categories that the config's classes leave out and are not trained on: "
            f'annotation ids {_ids(counts.other)}',
        )
    check_filtering(rep, images, counts, filter_cfg)
