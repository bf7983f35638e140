"""Generate small, deterministic, *learnable* toy datasets for hst_mm.

From a checkout, ``python tools/make_toy_data.py`` (a thin wrapper around
:func:`main`); ``python -m hst_mm.toy_data`` does the same. With no arguments
it writes ``<repo>/data/toy`` (the path comes from this file's location, not
the CWD)::

    python tools/make_toy_data.py [--out DIR] [--seed 0]
                                  [--num-train 64] [--num-val 16] [--force]
                                  [--no-trunk-weights]

If the output already holds data made with the same parameters (checked
through ``meta.json``), the script says so and exits at once; ``--force``
regenerates, and so does a change of parameters.

What a regeneration may delete: only files this module provably wrote.
``meta.json`` is the marker: ``"generator": "hst_mm.toy_data"`` and, under
``"files"``, every file written under ``coco/`` and ``ade/`` with its SHA-256.
Before anything is removed, every entry under ``DIR/coco`` and ``DIR/ade`` is
checked against it. If ``meta.json`` is missing while ``coco/`` or ``ade/``
exists, if ``meta.json`` was not written by this module, or if those folders
hold anything not in the list (a file of someone else's, an extra folder, a
symlink, a listed file changed since), it refuses: :class:`ToyDataError` (a
``RuntimeError``) naming the folder and the entries, exit status 1 on the
command line, nothing touched. Files are then removed one by one and folders
only once empty (never a recursive delete). Apart from ``coco/``, ``ade/``
and ``meta.json`` (replaced atomically), the output folder is left alone: the
toy trunk's weights file is written only if missing, temporary files get new
names (so they never overwrite anything) and are renamed into place, and
nothing else there is changed or deleted. A ``meta.json`` from before this
marker existed (no ``"generator"`` field) is accepted only if ``coco/`` and
``ade/`` are byte-identical to what its parameters produce now; an
interrupted run leaves ``"complete": false`` and the list of files it was
about to write, so the next run can clean up after it.

Layout::

    data/toy/
      meta.json                                   # parameters + marker
      coco/train/000001.png ...                   # RGB 128x128
      coco/val/000001.png ...
      coco/annotations/instances_train.json       # COCO instances format
      coco/annotations/instances_val.json
      ade/images/training/000001.png ...          # RGB 128x128
      ade/images/validation/000001.png ...
      ade/annotations/training/000001.png ...     # uint8 label maps, same stem
      ade/annotations/validation/000001.png ...

1. COCO instance set (Mask R-CNN): categories 1 ``circle``, 2 ``square``,
   3 ``triangle`` (``COCO_CLASSES``); 1-3 non-overlapping instances per image,
   24-60 px, polygon segmentations, on textured low-saturation backgrounds.
2. ADE20K-style semantic set (MMSeg with ``reduce_zero_label=True``): label
   0 = unlabeled/other (-> 255 ignore), 1 ``background``, 2 ``circle``,
   3 ``square``, 4 ``triangle`` (``SEG_CLASSES``, in the order used after
   reducing the zero label). 1-4 shapes of 30-70 px may overlap; each shape
   gets a thin unlabeled (0) rim and some images hold a dull "other" blob that
   is labeled 0.

Shapes are solid, saturated colours; each class has its own hue family
(circle reddish, square greenish, triangle bluish, with jitter) so a short
training run can learn them, while the textured backgrounds, random rotation
and pixel noise keep the task from being trivial.

Same seed => byte-identical images, label PNGs and annotation JSON (on the
same numpy/OpenCV versions). Only numpy, OpenCV and the stdlib are used; torch
and timm are imported only to write the toy trunk's weights.
"""

import argparse
import hashlib
import json
import os
import stat
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from hst_mm.atomic_write import atomic_path, atomic_write_text

VERSION = 1
IMG_SIZE = 128  # all images are IMG_SIZE x IMG_SIZE

COCO_CLASSES = ('circle', 'square', 'triangle')
SEG_CLASSES = ('background', 'circle', 'square', 'triangle')
# RGB palette for SEG_CLASSES (indices after reduce_zero_label).
SEG_PALETTE = [[120, 120, 120], [220, 20, 60], [0, 200, 0], [30, 80, 230]]

# Hue family (OpenCV hue units, 0..179) for each shape class.
_CLASS_HUE = {'circle': 0, 'square': 60, 'triangle': 115}

# <repo>/data/toy: hst_mm/ sits at the repository root (checkout or editable install).
DEFAULT_OUT = Path(__file__).resolve().parent.parent / 'data' / 'toy'

# meta.json's "generator": marks an output folder as written by this module.
GENERATOR = 'hst_mm.toy_data'
# Every folder the generator makes, relative to the output folder; parents first.
_OWN_DIRS = (
    'coco',
    'coco/annotations',
    'coco/train',
    'coco/val',
    'ade',
    'ade/images',
    'ade/annotations',
    'ade/images/training',
    'ade/images/validation',
    'ade/annotations/training',
    'ade/annotations/validation',
)
_PARAM_KEYS = ('version', 'seed', 'num_train', 'num_val', 'image_size')
_MAX_LISTED = 10  # entries named in an error message


class ToyDataError(RuntimeError):
    """The output folder holds something this module did not write.

    Raised before anything is changed, except in one race: if something
    appears in ``coco/`` or ``ade/`` while the previous output is being
    removed, the removal stops there (the generator's own files already
    removed stay removed; the newcomer and ``meta.json`` are kept).
    """


# --------------------------------------------------------------------------
# Drawing helpers
# --------------------------------------------------------------------------
def _background(rng, size=IMG_SIZE):
    """Textured low-saturation background: smoothed noise + stripes + ramp."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(70, 190) + rng.uniform(-20, 20, size=3)  # greyish
    img = np.empty((size, size, 3), np.float32)
    # Shared (luminance-like) texture so the colour stays unsaturated.
    low = rng.normal(0, 1, (rng.integers(4, 12),) * 2).astype(np.float32)
    noise = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    theta, freq = rng.uniform(0, np.pi), rng.uniform(3, 12)
    stripes = np.sin(2 * np.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy))
    ramp = rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy
    texture = rng.uniform(8, 20) * noise + rng.uniform(0, 15) * stripes + rng.uniform(10, 30) * ramp
    for c in range(3):
        img[..., c] = base[c] + texture * rng.uniform(0.8, 1.2)
    return img


def _shape_polygon(rng, kind, size, cx, cy):
    """Polygon (N, 2) float in COCO pixel-edge coordinates for one shape.

    ``size`` is roughly the shape's extent in pixels.
    """
    rot = rng.uniform(0, 2 * np.pi)
    if kind == 'circle':
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        r = np.full_like(t, size / 2)
    elif kind == 'square':
        t = rot + np.arange(4) * np.pi / 2 + np.pi / 4
        r = np.full_like(t, size / 2 * 0.9)  # half-diagonal ~ size/2
    else:  # triangle: roughly equilateral with some vertex jitter
        t = rot + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.15, 0.15, 3)
        r = size / 2 * rng.uniform(0.9, 1.05, 3)
    poly = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
    return np.round(poly, 2)


def _poly_mask(poly, size=IMG_SIZE):
    """Rasterise a COCO-coordinate polygon: pixel (r, c) covers
    [c, c+1) x [r, r+1) and is inside if its centre is (even-odd rule).
    This matches pycocotools' polygon rasterisation closely."""
    px = np.arange(size) + 0.5
    x, y = px[None, :], px[:, None]
    inside = np.zeros((size, size), bool)
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for a, b, c, d in zip(x0, y0, x1, y1):
        if b == d:
            continue  # horizontal edges never cross a horizontal ray
        crosses = (b > y) != (d > y)  # edge spans this row's centre line
        x_at = a + (y - b) * (c - a) / (d - b)
        inside ^= crosses & (x < x_at)
    return inside


def _shape_colour(rng, kind):
    """Saturated BGR colour from the class's hue family."""
    hue = (_CLASS_HUE[kind] + rng.integers(-10, 11)) % 180
    hsv = np.uint8([[[hue, rng.integers(150, 256), rng.integers(140, 256)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _finish(rng, img):
    """Add pixel noise and convert to uint8."""
    img = img + rng.normal(0, 4, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _place(rng, size_range, max_tries=50, margin=2, avoid=None):
    """Sample (kind, size, cx, cy, poly, mask) fully inside the image.

    With ``avoid`` (bool mask), reject placements whose mask, dilated by
    ``margin``, touches it. Returns None if no placement is found.
    """
    for _ in range(max_tries):
        kind = COCO_CLASSES[rng.integers(len(COCO_CLASSES))]
        size = rng.uniform(*size_range)
        lo, hi = size / 2 + margin, IMG_SIZE - size / 2 - margin
        cx, cy = rng.uniform(lo, hi, 2)
        poly = _shape_polygon(rng, kind, size, cx, cy)
        if poly.min() < margin or poly.max() > IMG_SIZE - margin:
            continue
        mask = _poly_mask(poly)
        if avoid is not None:
            grown = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8))
            if (grown.astype(bool) & avoid).any():
                continue
        return kind, poly, mask
    return None


# --------------------------------------------------------------------------
# Dataset writers
# --------------------------------------------------------------------------
def _coco_split(root, split, n, seed):
    """Write COCO images for one split; return the annotation dict."""
    img_dir = root / split
    img_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(1, n + 1):
        # Per-image generator: image i does not depend on the split size.
        rng = np.random.default_rng([seed, 1, int(split == 'val'), i])
        img = _background(rng)
        occupied = np.zeros((IMG_SIZE, IMG_SIZE), bool)
        for _ in range(rng.integers(1, 4)):  # 1-3 instances
            placed = _place(rng, (24, 60), avoid=occupied)
            if placed is None:
                continue
            kind, poly, mask = placed
            occupied |= mask
            img[mask] = _shape_colour(rng, kind)
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            anns.append(
                dict(
                    id=len(anns) + 1,
                    image_id=i,
                    category_id=COCO_CLASSES.index(kind) + 1,
                    segmentation=[[round(float(v), 2) for v in poly.ravel()]],
                    area=float(mask.sum()),
                    bbox=[round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                    iscrowd=0,
                )
            )
        name = f'{i:06d}.png'
        cv2.imwrite(str(img_dir / name), _finish(rng, img))
        images.append(dict(id=i, file_name=name, width=IMG_SIZE, height=IMG_SIZE))
    cats = [dict(id=k + 1, name=c, supercategory='shape') for k, c in enumerate(COCO_CLASSES)]
    return dict(
        info=dict(description='hst_mm toy shapes', version=VERSION),
        licenses=[],
        images=images,
        annotations=anns,
        categories=cats,
    )


def _ade_split(root, split, n, seed):
    """Write ADE20K-style image/label pairs for one split."""
    img_dir = root / 'images' / split
    ann_dir = root / 'annotations' / split
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    ring_kernel = np.ones((5, 5), np.uint8)  # -> 2 px unlabeled rim
    for i in range(1, n + 1):
        rng = np.random.default_rng([seed, 2, int(split == 'validation'), i])
        img = _background(rng)
        label = np.ones((IMG_SIZE, IMG_SIZE), np.uint8)  # 1 = background
        # Sometimes a dull irregular "other" object, labeled 0 (ignored).
        if rng.random() < 0.5:
            k = 7
            t = np.sort(rng.uniform(0, 2 * np.pi, k))
            r = rng.uniform(5, 12, k)
            c = rng.uniform(15, IMG_SIZE - 15, 2)
            blob = _poly_mask(c + np.stack([r * np.cos(t), r * np.sin(t)], 1))
            img[blob] = img[blob] * 0.5 + rng.uniform(60, 160)
            label[blob] = 0
        for _ in range(rng.integers(1, 5)):  # 1-4 shapes, may overlap
            placed = _place(rng, (30, 70))
            if placed is None:
                continue
            kind, _, mask = placed
            rim = cv2.dilate(mask.astype(np.uint8), ring_kernel).astype(bool)
            label[rim & ~mask] = 0
            label[mask] = SEG_CLASSES.index(kind) + 1  # 2..4
            img[mask] = _shape_colour(rng, kind)
        name = f'{i:06d}.png'
        cv2.imwrite(str(img_dir / name), _finish(rng, img))
        cv2.imwrite(str(ann_dir / name), label)


# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------
def _paths(out):
    coco, ade = out / 'coco', out / 'ade'
    return dict(
        root=out,
        meta=out / 'meta.json',
        coco_root=coco,
        coco_train_img=coco / 'train',
        coco_val_img=coco / 'val',
        coco_train_ann=coco / 'annotations' / 'instances_train.json',
        coco_val_ann=coco / 'annotations' / 'instances_val.json',
        ade_root=ade,
        ade_train_img=ade / 'images' / 'training',
        ade_val_img=ade / 'images' / 'validation',
        ade_train_ann=ade / 'annotations' / 'training',
        ade_val_ann=ade / 'annotations' / 'validation',
    )


def _planned_files(num_train, num_val):
    """Relative (POSIX) paths of every file written for these counts, sorted."""
    files = ['coco/annotations/instances_train.json', 'coco/annotations/instances_val.json']
    for n, coco_split, ade_split in (
        (num_train, 'train', 'training'),
        (num_val, 'val', 'validation'),
    ):
        for i in range(1, n + 1):
            name = f'{i:06d}.png'
            files += [
                f'coco/{coco_split}/{name}',
                f'ade/images/{ade_split}/{name}',
                f'ade/annotations/{ade_split}/{name}',
            ]
    return sorted(files)


def _sha256(path):
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _write_datasets(out, seed, num_train, num_val):
    """Write ``coco/`` and ``ade/`` under ``out``, which must hold neither."""
    # No exist_ok: writing into a folder that is still there would mix outputs.
    (out / 'coco' / 'annotations').mkdir(parents=True)
    for split, n in (('train', num_train), ('val', num_val)):
        coco = _coco_split(out / 'coco', split, n, seed)
        ann_file = out / 'coco' / 'annotations' / f'instances_{split}.json'
        with open(ann_file, 'w') as f:
            json.dump(coco, f)
    _ade_split(out / 'ade', 'training', num_train, seed)
    _ade_split(out / 'ade', 'validation', num_val, seed)


def _write_meta(out, meta):
    """Replace ``out/meta.json`` atomically."""
    atomic_write_text(out / 'meta.json', json.dumps(meta, indent=2) + '\n')


def _scan(out):
    """Every entry under ``out/coco`` and ``out/ade``: {relative path: kind}.

    ``kind`` is 'dir', 'file', 'symlink' or 'other'. Symlinks are reported,
    never followed, so nothing outside the two folders is ever looked at.
    """

    def unreadable(err):
        raise ToyDataError(f'cannot read {err.filename} ({err.strerror}); nothing was changed')

    found = {}
    for top in ('coco', 'ade'):
        root = out / top
        kind = _kind(root)
        if kind is not None:
            found[top] = kind
        if kind != 'dir':
            continue
        for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                found[path.relative_to(out).as_posix()] = _kind(path)
    return found


def _kind(path):
    """'dir', 'file', 'symlink', 'other' or None (absent) for ``path``.

    Links are not followed.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(mode):
        return 'symlink'
    if stat.S_ISDIR(mode):
        return 'dir'
    return 'file' if stat.S_ISREG(mode) else 'other'


def _refusal(out, reason, entries=()):
    """A ToyDataError saying why ``out`` is left alone, listing some entries.

    ``entries``: relative paths, or (relative path, why) pairs.
    """
    lines = [f'refusing to write the toy data in {out}: {reason}']
    for entry in entries[:_MAX_LISTED]:
        rel, why = entry if isinstance(entry, tuple) else (entry, '')
        lines.append(f'  {rel}' + (f'  ({why})' if why else ''))
    if len(entries) > _MAX_LISTED:
        lines.append(f'  ... and {len(entries) - _MAX_LISTED} more')
    lines.append('Nothing was changed: move these away, or pass another --out.')
    return ToyDataError('\n'.join(lines))


def _tops(out, rels, singular, plural):
    """'DIR/coco holds', 'DIR/coco and DIR/ade hold', ...: where ``rels`` lie,
    with the verb that fits."""
    tops = [t for t in ('coco', 'ade') if t in {r.split('/', 1)[0] for r in rels}]
    names = ' and '.join(str(out / t) for t in tops)
    return f'{names} {plural if len(tops) > 1 else singular}'


def _listing(found):
    """What the scanned folders hold, for an error message (folders end in /)."""
    entries = [
        (rel + '/' if kind == 'dir' else rel, '' if kind in ('dir', 'file') else kind)
        for rel, kind in sorted(found.items())
        if '/' in rel or kind != 'dir'
    ]  # not the bare coco/ and ade/
    return entries or [('(nothing: empty folders)', '')]


def _params(meta):
    """The generation parameters recorded in a meta.json dict, or None."""
    params = {k: meta.get(k) for k in _PARAM_KEYS}
    ok = all(type(v) is int for v in params.values())
    return params if ok and min(params['num_train'], params['num_val']) >= 0 else None


def _read_marker(out):
    """What ``out/meta.json`` says the generator wrote, after checking it is ours.

    Returns None when there is no meta.json, else a dict: ``params``,
    ``complete`` and ``files`` ({relative path: SHA-256, or None where the
    hash is not known}). ``legacy`` marks a meta.json from before the marker
    existed, whose hashes must be recomputed. Raises ToyDataError when
    meta.json was not written by this module.
    """
    meta_file = out / 'meta.json'
    if not os.path.lexists(meta_file):
        return None
    if _kind(meta_file) != 'file':
        raise _refusal(out, f'{meta_file} is not a regular file')
    try:
        text = meta_file.read_text()
        meta = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        text = meta = None
    params = _params(meta) if isinstance(meta, dict) else None
    if params and meta.get('generator') == GENERATOR:
        return _own_marker(out, meta, params)
    # The generator before the marker wrote exactly these bytes (and its only
    # version and size); anything else is someone else's file.
    if (
        params
        and text == json.dumps(params, indent=2) + '\n'
        and (params['version'], params['image_size']) == (1, IMG_SIZE)
    ):
        planned = _planned_files(params['num_train'], params['num_val'])
        return dict(params=params, complete=True, legacy=True, files=dict.fromkeys(planned))
    found = _scan(out)
    reason = (
        f'{meta_file} was not written by {GENERATOR} (it has no '
        f'"generator": "{GENERATOR}" field) and would be overwritten'
    )
    if found:
        reason += f'; nothing proves that {_tops(out, found, "holds", "hold")} generated data:'
    raise _refusal(out, reason, _listing(found) if found else ())


def _own_marker(out, meta, params):
    """Check a marker written by this module against its own parameters."""
    planned = _planned_files(params['num_train'], params['num_val'])
    files, complete = meta.get('files'), meta.get('complete')
    # The names follow from the parameters, so a damaged or edited list can
    # never make a path outside the planned ones count as ours.
    ok = (
        isinstance(files, dict)
        and sorted(files) == planned
        and complete in (True, False)
        and all(
            (isinstance(h, str) and len(h) == 64) if complete else h is None for h in files.values()
        )
    )
    if not ok:
        raise _refusal(
            out,
            f'{out / "meta.json"} names {GENERATOR} but its '
            'list of files is damaged; delete coco/, ade/ and '
            'meta.json yourself if they are only toy data',
        )
    return dict(params=params, complete=complete, legacy=False, files=files)


def _legacy_hashes(params):
    """SHA-256 of every file the given parameters produce, made in a temp dir."""
    with tempfile.TemporaryDirectory(prefix='hst_mm_toy_') as tmp:
        tmp = Path(tmp)
        _write_datasets(tmp, params['seed'], params['num_train'], params['num_val'])
        return {
            rel: _sha256(tmp / rel)
            for rel in _planned_files(params['num_train'], params['num_val'])
        }


def _check_owned(out, marker):
    """Raise ToyDataError unless everything under coco/ and ade/ is ours.

    Ours: the folders the generator makes and the files in the marker's list,
    unchanged where their hash is known. Files of the list that are missing
    are fine (an interrupted run or removal).
    """
    found = _scan(out)
    if not found:
        return
    if marker is None:
        raise _refusal(
            out,
            f'{_tops(out, found, "exists", "exist")} without '
            f'{out / "meta.json"}, the marker {GENERATOR} writes, '
            'so nothing proves that it is generated data:',
            _listing(found),
        )
    foreign = []
    for rel, kind in sorted(found.items()):
        if kind == 'dir' and rel not in _OWN_DIRS:
            foreign.append((rel + '/', f'a folder {GENERATOR} does not make'))
        elif kind in ('symlink', 'other'):
            foreign.append((rel, f'a {kind}, not a file {GENERATOR} writes'))
        elif kind == 'file' and rel not in marker['files']:
            foreign.append((rel, f'not written by {GENERATOR}'))
    if foreign:
        where = _tops(out, [r for r, _ in foreign], 'holds', 'hold')
        raise _refusal(out, f'{where} entries that {GENERATOR} did not write:', foreign)
    expected = marker['files']
    if marker['legacy'] and 'file' in found.values():
        expected = _legacy_hashes(marker['params'])
    changed = [
        (rel, f'changed since {GENERATOR} wrote it')
        for rel, kind in sorted(found.items())
        if kind == 'file' and expected[rel] is not None and _sha256(out / rel) != expected[rel]
    ]
    if changed:
        where = _tops(out, [r for r, _ in changed], 'holds', 'hold')
        raise _refusal(out, f'{where} files that differ from what {GENERATOR} wrote:', changed)


def _remove_owned(out, marker):
    """Delete a checked previous output: listed files, then our empty folders.

    Files go one by one and folders with ``rmdir``, so anything that appeared
    after the check makes this fail instead of being deleted with the rest.
    meta.json stays until it is replaced, so an interruption here leaves a
    marker that still covers whatever is left.
    """
    if marker is None:
        return
    for rel in marker['files']:
        if _kind(out / rel) == 'file':
            (out / rel).unlink()
    for rel in reversed(_OWN_DIRS):
        path = out / rel
        if _kind(path) is None:
            continue
        try:
            path.rmdir()
        except OSError as err:
            raise ToyDataError(
                f'cannot remove {path} ({err.strerror}): something was added '
                'there while the previous toy data were being removed; it was '
                'left alone, and so was meta.json'
            ) from None


def make_toy_data(out_dir=DEFAULT_OUT, seed=0, num_train=64, num_val=16, force=False):
    """Create the toy datasets under ``out_dir``; return a dict of paths.

    The dict also holds ``generated`` (False if existing data was reused).
    Raises :class:`ToyDataError`, before changing anything, when ``coco/``,
    ``ade/`` or ``meta.json`` there were not all written by this module.
    """
    out = Path(out_dir).resolve()
    paths = _paths(out)
    params = dict(
        version=VERSION,
        seed=int(seed),
        num_train=int(num_train),
        num_val=int(num_val),
        image_size=IMG_SIZE,
    )
    planned = _planned_files(params['num_train'], params['num_val'])
    if _kind(out) not in (None, 'dir'):
        raise ToyDataError(f'{out} exists and is not a folder; nothing was changed')
    marker = _read_marker(out)  # raises if meta.json is someone else's
    up_to_date = (
        marker is not None
        and marker['complete']
        and not force
        and marker['params'] == params
        and all(_kind(out / rel) == 'file' for rel in planned)
    )
    if up_to_date and not marker['legacy']:
        return dict(paths, generated=False)

    _check_owned(out, marker)  # raises, touching nothing, unless all is ours
    if up_to_date:  # a checked pre-marker output: record it, keep the data
        _write_meta(
            out,
            dict(
                params,
                generator=GENERATOR,
                complete=True,
                files={rel: _sha256(out / rel) for rel in planned},
            ),
        )
        return dict(paths, generated=False)

    _remove_owned(out, marker)
    out.mkdir(parents=True, exist_ok=True)
    # Record the files about to be written before writing them, so that an
    # interrupted run leaves a marker the next run can clean up after.
    _write_meta(
        out, dict(params, generator=GENERATOR, complete=False, files=dict.fromkeys(planned))
    )
    _write_datasets(out, params['seed'], params['num_train'], params['num_val'])
    _write_meta(
        out,
        dict(
            params,
            generator=GENERATOR,
            complete=True,
            files={rel: _sha256(out / rel) for rel in planned},
        ),
    )
    return dict(paths, generated=True)


# The toy configs' trunk: a *randomly initialised* timm ViT-Ti saved locally (no model hub
# here), so that training goes through HST's real pretrained-weights loading path.
TOY_TRUNK = 'vit_tiny_patch16_224'
TOY_TRUNK_FILE = f'{TOY_TRUNK}.random.pth'


def ensure_toy_trunk_weights(path, seed=0):
    """Write the toy trunk's weights to ``path`` unless they are there already.

    The weights are timm's random initialisation under ``torch.manual_seed(seed)``
    (what ``tools/save_trunk_weights.py MODEL OUT`` writes without ``--pretrained``).
    """
    path = Path(path)
    if path.exists():
        return path
    import timm  # heavy imports only when the weights are actually needed
    import torch

    torch.manual_seed(seed)
    state = timm.create_model(TOY_TRUNK, pretrained=False).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    print(f'[toy] wrote randomly initialised {TOY_TRUNK} weights to {path}')
    return path


def main(argv=None):
    """Command line (``tools/make_toy_data.py``); returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument(
        '--out', default=str(DEFAULT_OUT), help='output folder (default: <repo>/data/toy)'
    )
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--num-train', type=int, default=64, help='training images per dataset')
    p.add_argument('--num-val', type=int, default=16, help='validation images per dataset')
    p.add_argument('--force', action='store_true', help='regenerate even if matching data exists')
    p.add_argument(
        '--no-trunk-weights',
        action='store_true',
        help=f'do not write {TOY_TRUNK_FILE} (needs torch and timm)',
    )
    a = p.parse_args(argv)
    t0 = time.time()
    try:
        res = make_toy_data(a.out, a.seed, a.num_train, a.num_val, a.force)
    except ToyDataError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    if not a.no_trunk_weights:
        ensure_toy_trunk_weights(Path(a.out) / TOY_TRUNK_FILE, a.seed)
    if not res['generated']:
        print(
            f'[toy] {res["root"]} already up to date '
            f'(seed={a.seed}, train={a.num_train}, val={a.num_val}); '
            'use --force to regenerate'
        )
        return 0
    n_ann = {
        s: len(json.loads(res[f'coco_{s}_ann'].read_text())['annotations'])
        for s in ('train', 'val')
    }
    print(f'[toy] wrote {res["root"]} in {time.time() - t0:.1f}s (seed={a.seed})')
    print(
        f'  coco: {a.num_train} train / {a.num_val} val images, '
        f'{n_ann["train"]} / {n_ann["val"]} instances, '
        f'classes {COCO_CLASSES}'
    )
    print(f'        {res["coco_train_ann"]}')
    print(
        f'  ade : {a.num_train} training / {a.num_val} validation pairs, '
        f'classes {SEG_CLASSES} (+0 = ignore)'
    )
    print(f'        {res["ade_root"]}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
