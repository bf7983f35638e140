"""Trainable-only checkpoints: what a run learned, without the frozen trunk it started from.

    python tools/export_trainable.py CKPT OUT [--config CONFIG] [--no-hash] [--force]

A checkpoint of mmengine's Runner holds the whole model, the optimizer state and the
training state. HST trains about a quarter of a ViT-B Mask R-CNN (side network, T-Bridge,
meta tokens, the trunk's LayerNorms, neck, heads); the frozen trunk is the pretrained file
the run started from. The export keeps the model's weights except the frozen trunk weights
its ``pretrained`` source restores (:mod:`hst_mm.engine.frozen_trunk`), keeps ``meta``
(config text, classes) and marks it ``meta['trainable_only']``: the left-out keys with a
digest of each, and the trunk and source that restore them. Optimizer, scheduler and
message-hub state are dropped.

As mmdet's ``tools/model_converters/publish_model.py`` names a published model, the file
written is ``OUT`` with the first 8 hex digits of its sha256 before ``.pth``
(``hst_maskrcnn.pth`` -> ``hst_maskrcnn-1a2b3c4d.pth``), so a download can be checked
against its name; ``--no-hash`` keeps ``OUT`` as given. An existing file is never replaced
unless ``--force``.

``load_from=OUT``, ``tools/test.py CONFIG OUT`` and ``tools/demo.py`` load an export: the
``CheckpointFitHook`` accepts exactly the listed keys as missing, loads the trunk from
``model.backbone.pretrained`` where training's ``init_weights()`` has not, and refuses
trunk weights whose digests differ. An export cannot resume training.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import importlib
import io
import os
import os.path as osp
import pickle
import sys
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from ..atomic_write import atomic_path
from ..version import __version__
from .checkpoint_safety import refused_checkpoint_message
from .config_data import ConfigDataError, config_from_text
from .frozen_trunk import (
    EXPORT_FORMAT,
    EXPORT_KEY,
    export_info,
    pretrained_trunks,
    restorable_frozen_keys,
    tensor_digest,
)
from .hooks.checkpoint_fit import CheckpointMismatchError, check_checkpoint_fits


class ExportError(ValueError):
    """A checkpoint that cannot be exported (names the file and the reason)."""


def load_checkpoint_safely(path: str) -> dict:
    """``torch.load(weights_only=True)`` with mmengine's training state allow-listed
    (``import hst_mm`` installs the allow-list); a refused file raises :class:`ExportError`."""
    if not osp.isfile(path):
        raise ExportError(f'checkpoint not found: {path}')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        raise ExportError(refused_checkpoint_message(path, e)) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ExportError(f'{path}: not a readable torch checkpoint ({e})') from None
    if not isinstance(checkpoint, dict):
        raise ExportError(f'{path}: holds a {type(checkpoint).__name__}, not a checkpoint dict')
    return checkpoint


def checkpoint_config(checkpoint: dict, path: str, config: Optional[str] = None) -> Config:
    """``config`` if given, else the config text mmengine saved in ``meta['cfg']``, read as
    data (:mod:`hst_mm.engine.config_data`): a checkpoint's text is never run."""
    if config is not None:
        if not osp.isfile(config):
            raise ExportError(f'config file not found: {config}')
        return Config.fromfile(config)
    text = (checkpoint.get('meta') or {}).get('cfg')
    if not isinstance(text, str):
        raise ExportError(
            f"{path}: no config in meta['cfg'] (not saved by mmengine's Runner); "
            f'pass the config it was trained with: --config CONFIG'
        )
    try:
        return config_from_text(text, f"{path}: meta['cfg']")
    except ConfigDataError as e:
        raise ExportError(f'{e}; pass the config it was trained with: --config CONFIG') from None


def build_model(cfg: Config) -> torch.nn.Module:
    """``cfg.model`` built in its framework's registry, as the Runner builds it (no weights
    are loaded: the backbones load ``pretrained`` in ``init_weights()``)."""
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    model = importlib.import_module(f'{scope}.registry').MODELS.build(cfg.model)
    return model.train()  # some modules settle what trains in train()


def trainable_checkpoint(checkpoint: dict, model: torch.nn.Module, path: str) -> dict:
    """The export of ``checkpoint`` (a full checkpoint of ``model``): pure, writes nothing."""
    if export_info(checkpoint) is not None:
        raise ExportError(f'{path}: already a trainable-only export')
    if 'state_dict' not in checkpoint:
        raise ExportError(f"{path}: no 'state_dict' (not a checkpoint of mmengine's Runner)")
    try:
        check_checkpoint_fits(model, checkpoint, path)
    except CheckpointMismatchError as e:
        raise ExportError(str(e)) from None
    state_dict = checkpoint['state_dict']
    prefix = 'module.' if all(k.startswith('module.') for k in state_dict) else ''
    omitted = restorable_frozen_keys(model)
    left_out = {prefix + k for k in omitted}
    kept = {k: v for k, v in state_dict.items() if k not in left_out}
    trunks = pretrained_trunks(model)
    meta = dict(checkpoint.get('meta') or {})
    meta[EXPORT_KEY] = dict(
        format=EXPORT_FORMAT,
        hst_mm_version=__version__,
        omitted={k: tensor_digest(state_dict[prefix + k]) for k in omitted},
        pretrained={t['module']: t['source'] for t in trunks.values()},
        trunk={t['module']: t['trunk'] for t in trunks.values()},
        source_checkpoint=osp.basename(path),
    )
    return dict(meta=meta, state_dict=kept)


def serialized(obj: dict) -> bytes:
    """The bytes ``torch.save`` writes for ``obj`` (hashed before the file gets its name)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def hashed_name(out: str, data: bytes) -> str:
    """``OUT`` with ``-<sha256[:8]>`` before ``.pth``, as mmdet's ``publish_model.py`` names
    a published model (``a.pth`` -> ``a-1a2b3c4d.pth``; another suffix gets ``.pth`` added)."""
    root = out[: -len('.pth')] if out.endswith('.pth') else out
    return f'{root}-{hashlib.sha256(data).hexdigest()[:8]}.pth'


def _refuse_existing(out: str, force: bool) -> None:
    if osp.exists(out) and not force:
        raise ExportError(f'{out} exists; pass --force to overwrite it')


def save_atomically(obj, out: str, force: bool = False) -> None:
    """Write ``obj`` (a dict for ``torch.save``, or its bytes) to a temporary file beside
    ``out``, then rename: a kill or a full disk never leaves a partial ``out``. An existing
    ``out`` is refused unless ``force``."""
    _refuse_existing(out, force)
    data = obj if isinstance(obj, bytes) else serialized(obj)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    try:
        with atomic_path(out) as tmp:
            # written through a Python file: a full disk raises OSError(ENOSPC), not torch's
            # "PytorchStreamWriter failed writing file" (which names neither cause nor path)
            with open(tmp, 'wb') as f:
                f.write(data)
    except OSError as e:
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        raise ExportError(
            f'{out}: '
            + (
                'disk full (no space left on device)'
                if full
                else f'could not be written ({type(e).__name__}: {str(e).splitlines()[0]})'
            )
            + '; nothing was written there; free space or choose another OUT'
        ) from None


def export_trainable(
    checkpoint_path: str,
    out: str,
    config: Optional[str] = None,
    force: bool = False,
    hash_name: bool = True,
) -> dict:
    """Write the trainable-only export of ``checkpoint_path`` to ``out`` (with ``hash_name``:
    to :func:`hashed_name` of it); returns a summary (parameter counts, file sizes, and
    ``out``: the path written)."""
    if not hash_name:
        _refuse_existing(out, force)  # before the (slow) loading and building
    checkpoint = load_checkpoint_safely(checkpoint_path)
    model = build_model(checkpoint_config(checkpoint, checkpoint_path, config))
    export = trainable_checkpoint(checkpoint, model, checkpoint_path)
    data = serialized(export)
    if hash_name:
        out = hashed_name(out, data)
    if osp.abspath(out) == osp.abspath(checkpoint_path):
        raise ExportError(f'{out}: the export would replace the checkpoint it is made from')
    save_atomically(data, out, force)
    params = dict(model.named_parameters())
    kept = [k for k in export['state_dict'] if k.removeprefix('module.') in params]
    return dict(
        out=out,
        omitted_keys=len(export['meta'][EXPORT_KEY]['omitted']),
        kept_keys=len(export['state_dict']),
        kept_params=sum(params[k.removeprefix('module.')].numel() for k in kept),
        trainable_params=sum(p.numel() for p in params.values() if p.requires_grad),
        total_params=sum(p.numel() for p in params.values()),
        checkpoint_mb=osp.getsize(checkpoint_path) / 2**20,
        export_mb=osp.getsize(out) / 2**20,
        pretrained=export['meta'][EXPORT_KEY]['pretrained'],
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description='Write the trainable weights of an mmengine checkpoint (no frozen trunk, '
        'no optimizer state)'
    )
    parser.add_argument('checkpoint', help='a full checkpoint saved by the Runner')
    parser.add_argument(
        'out',
        help='the trainable-only checkpoint to write; the file gets the first 8 hex digits of '
        "its sha256 before .pth (OUT-1a2b3c4d.pth), as mmdet's publish_model.py names it",
    )
    parser.add_argument(
        '--config', help="the model's config (default: the one saved in the checkpoint)"
    )
    parser.add_argument(
        '--no-hash', action='store_true', help='write OUT as given, without the sha256 suffix'
    )
    parser.add_argument(
        '--force', action='store_true', help='overwrite the file written if it exists'
    )
    args = parser.parse_args(argv)
    try:
        s = export_trainable(
            args.checkpoint, args.out, args.config, args.force, hash_name=not args.no_hash
        )
    except ExportError as e:
        sys.exit(f'error: {e}')
    print(
        f'wrote {s["out"]}: {s["kept_keys"]} tensors, {s["kept_params"] / 1e6:.2f}M of '
        f'{s["total_params"] / 1e6:.2f}M parameters ({s["trainable_params"] / 1e6:.2f}M '
        f'trainable); {s["export_mb"]:.1f} MB (checkpoint {s["checkpoint_mb"]:.1f} MB)'
    )
    if s['omitted_keys']:
        sources = ', '.join(f'{m or "model"}: {p}' for m, p in s['pretrained'].items())
        print(f'{s["omitted_keys"]} frozen trunk tensors left out; they load from {sources}')
    else:
        print('nothing left out: the model has no frozen weights that a pretrained source restores')
    return s
