"""Generate small, deterministic, *learnable* toy datasets for hst_mm.

From a checkout, ``python tools/make_toy_data.py`` (a thin wrapper around
:func:`main`); ``python -m workshop.toy_data`` does the same. With no arguments
it writes ``<repo>/data/toy`` (the path comes from this file's location, not
the CWD)::

    python tools/make_toy_data.py [--out DIR] [--seed 0]
                                  [--num-train 64] [--num-val 16] [--force]
                                  [--no-trunk-weights]

The output folder is made whole or not at all: everything is generated into a
new temporary folder next to it, then renamed into place. A user's files are
never deleted or overwritten:

* no ``DIR``, or an empty one: it is generated;
* ``DIR`` holds the toy data these parameters give (``meta.json`` written by
  this module with the same parameters, every listed file there with the
  SHA-256 it records): it is reused, and the script says so;
* ``DIR`` holds anything else (toy data of other parameters or changed since,
  a user's folder): :class:`ToyDataError` names it and nothing is touched. With
  ``--force``, a folder that ``meta.json`` marks as toy data is first renamed
  to ``DIR.old-N`` (kept, never deleted); any other folder is still refused.

The toy trunk's weights (``vit_tiny_patch16_224.random.pth``) are then added to
the folder if no file of that name is there.

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
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cv2
import numpy as np

VERSION = 1
IMG_SIZE = 128  # all images are IMG_SIZE x IMG_SIZE

COCO_CLASSES = ('circle', 'square', 'triangle')
SEG_CLASSES = ('background', 'circle', 'square', 'triangle')
# RGB palette for SEG_CLASSES (indices after reduce_zero_label).
SEG_PALETTE = [[120, 120, 120], [220, 20, 60], [0, 200, 0], [30, 80, 230]]

# Hue family (OpenCV hue units, 0..179) for each shape class.
_CLASS_HUE = {'circle': 0, 'square': 60, 'triangle': 115}

# <repo>/data/toy: workshop/ sits at the repository root.
DEFAULT_OUT = Path(__file__).resolve().parent.parent / 'data' / 'toy'

# meta.json's "generator": marks a folder as toy data written by this module (also under
# the module's earlier name, hst_mm.toy_data, which wrote the same files).
GENERATOR = 'workshop.toy_data'
_GENERATORS = (GENERATOR, 'hst_mm.toy_data')
_MAX_LISTED = 10  # problems named in an error message


class ToyDataError(RuntimeError):
    """The output folder exists and is not the toy data asked for; nothing was changed."""


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


def _params(seed, num_train, num_val):
    """The parameters that decide every byte of the output, as meta.json records them."""
    return dict(
        version=VERSION,
        seed=int(seed),
        num_train=int(num_train),
        num_val=int(num_val),
        image_size=IMG_SIZE,
    )


def _read_meta(out):
    """``out/meta.json`` as a dict if this module wrote it, else None."""
    try:
        meta = json.loads((out / 'meta.json').read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get('generator') in _GENERATORS else None


def _problems(out, meta, params):
    """Why the folder ``out`` is not the toy data of ``params``: a list, empty if it is.

    It is when ``meta`` (its meta.json, from :func:`_read_meta`) has these parameters and
    every file it lists is there, a regular file with the SHA-256 it records. Other files
    in the folder do not matter (they are left alone).
    """
    if meta is None:
        return [f'{out / "meta.json"} is missing or was not written by {GENERATOR}']
    old = {k: meta.get(k) for k in params}
    if old != params:
        diff = ', '.join(
            f'{k} {old[k]} (asked for {params[k]})' for k in params if old[k] != params[k]
        )
        return [f'it holds toy data made with other parameters: {diff}']
    files = meta.get('files')
    if not isinstance(files, dict) or sorted(files) != _planned_files(
        params['num_train'], params['num_val']
    ):
        return ['its meta.json does not list the files these parameters give']
    return [
        f'{rel}: missing or changed since it was generated'
        for rel, digest in sorted(files.items())
        if (out / rel).is_symlink() or not (out / rel).is_file() or _sha256(out / rel) != digest
    ]


def _refusal(out, problems, marked):
    """The ToyDataError for an existing ``out`` that is not the toy data asked for."""
    lines = [
        f'refusing to write the toy data to {out}: it exists and is not the toy data asked for:'
    ]
    lines += [f'  {p}' for p in problems[:_MAX_LISTED]]
    if len(problems) > _MAX_LISTED:
        lines.append(f'  ... and {len(problems) - _MAX_LISTED} more')
    if marked:
        lines.append(
            f'Nothing was changed: pass --force to keep it as {out.name}.old-N and '
            'regenerate, or pass another --out.'
        )
    else:
        lines.append('Nothing was changed: move it away, or pass another --out.')
    return ToyDataError('\n'.join(lines))


def _move_aside(out):
    """Rename ``out`` to the first free ``<out>.old-N``; returns the new path."""
    n = 1
    while os.path.lexists(out.with_name(f'{out.name}.old-{n}')):
        n += 1
    kept = out.with_name(f'{out.name}.old-{n}')
    os.rename(out, kept)
    return kept


def _generate(out, params):
    """Write the data sets and meta.json into a new folder next to ``out``, then rename it
    to ``out``. Returns False, keeping what is there, if ``out`` appeared meanwhile holding
    the same toy data (another run finished first); raises ToyDataError if it holds
    anything else."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', suffix='.tmp', dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0o700 would stay with the data
        _write_datasets(tmp, params['seed'], params['num_train'], params['num_val'])
        files = {
            rel: _sha256(tmp / rel)
            for rel in _planned_files(params['num_train'], params['num_val'])
        }
        meta = dict(params, generator=GENERATOR, complete=True, files=files)
        (tmp / 'meta.json').write_text(json.dumps(meta, indent=2) + '\n')
        try:
            # A folder is renamed onto nothing or an empty folder only: whatever appeared
            # at ``out`` since the check stays as it is.
            os.rename(tmp, out)
            return True
        except OSError:
            if not os.path.isdir(out):
                raise
        problems = _problems(out, _read_meta(out), params)
        if problems:
            raise _refusal(out, problems, marked=False)
        return False
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)  # this run's own temporary folder


def make_toy_data(out_dir=DEFAULT_OUT, seed=0, num_train=64, num_val=16, force=False):
    """Create the toy datasets as the folder ``out_dir``; return a dict of paths.

    The dict also holds ``generated`` (False if existing data was reused) and ``kept``
    (where ``--force`` moved the previous toy data, else None). Raises
    :class:`ToyDataError`, changing nothing, when ``out_dir`` exists and is not the toy
    data of these parameters (with ``force``: and is not toy data at all).
    """
    out = Path(out_dir).resolve()
    params = _params(seed, num_train, num_val)
    kept = None
    # An empty folder holds nothing to lose: the rename replaces it.
    if os.path.lexists(out) and not (out.is_dir() and not any(out.iterdir())):
        if not out.is_dir():
            raise ToyDataError(f'{out} exists and is not a folder; nothing was changed')
        meta = _read_meta(out)
        problems = _problems(out, meta, params)
        if not problems and not force:
            return dict(_paths(out), generated=False, kept=None)
        if not force or meta is None:
            raise _refusal(out, problems, marked=meta is not None)
        kept = _move_aside(out)
    generated = _generate(out, params)
    return dict(_paths(out), generated=generated, kept=kept)


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
    # A new file under a unique name, then linked into place: a file that appeared at
    # ``path`` meanwhile makes the link fail instead of being overwritten.
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
    try:
        with open(tmp, 'xb') as f:
            torch.save(state, f)
        os.link(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
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
    p.add_argument(
        '--force',
        action='store_true',
        help='regenerate; toy data already at --out is kept as <out>.old-N',
    )
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
    if res['kept']:
        print(f'  the previous toy data: kept as {res["kept"]}')
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
