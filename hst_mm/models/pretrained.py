"""Loading pretrained weights into the frozen trunk, through timm's own loaders.

Three sources: a local file (``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors`` state dicts,
read by timm and adapted by timm's ViT checkpoint filter, which resamples the position
embeddings; Google ``.npz`` files, read by timm's JAX reader), or a timm pretrained tag
such as ``'augreg_in21k'`` (fetched from the model hub by timm).

Nothing is hidden: keys the trunk does not have, or lacks, are named in the error.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Dict, List, Optional

import timm
import torch
import torch.nn as nn
from timm.models import eva, load_state_dict, vision_transformer

CHECKPOINT_SUFFIXES = ('.pth', '.pt', '.bin', '.ckpt', '.safetensors', '.npz')
# Parts of a ViT checkpoint that HST does not use (the classifier, the final norm, Perception
# Encoder's attention pooling).
UNUSED_PREFIXES = ('head.', 'fc_norm.', 'norm.', 'head_drop.', 'attn_pool.')


class PretrainedMismatchError(ValueError):
    """A pretrained source that does not fit the trunk (names the file and the keys)."""


HUB_PREFIXES = ('timm/', 'hf-hub:', 'hf_hub:')


def is_path(source: str) -> bool:
    """A file path has a checkpoint suffix, a directory separator (``ckpts/vit``), an
    explicit start or exists; anything else (``'augreg_in21k'``,
    ``'timm/vit_base_patch16_224.augreg_in21k'``, ``'hf-hub:org/name'``) is a timm tag: a
    mistyped path is then named as a missing file, never sent to the model hub."""
    return (
        source.endswith(CHECKPOINT_SUFFIXES)
        or source.startswith(('/', '.', '~'))
        or (('/' in source or os.sep in source) and not source.startswith(HUB_PREFIXES))
        or os.path.exists(source)
    )


class PretrainedNotFoundError(FileNotFoundError):
    """``pretrained`` names a file that does not exist (names it and the setting)."""


def _first(keys: List[str], n: int = 5) -> str:
    more = f' (+{len(keys) - n} more)' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


def adapt_state_dict(
    state_dict: Dict[str, torch.Tensor], vit: nn.Module
) -> Dict[str, torch.Tensor]:
    """Pure function: a ViT checkpoint -> the keys and shapes of HST's trunk.

    timm's filter of the trunk's family (``VisionTransformer`` or ``Eva``) converts foreign
    layouts (CLIP, DINOv2, the DINOv3 / EVA-02 / PE originals, ...) and resamples position
    embeddings; then the classifier and final norm, unused by HST, are dropped.
    """
    family = eva if isinstance(vit, eva.Eva) else vision_transformer
    state_dict = family.checkpoint_filter_fn(state_dict, vit)
    return {k: v for k, v in state_dict.items() if not k.startswith(UNUSED_PREFIXES)}


def unpickling_error(exc: BaseException):
    """The ``pickle.UnpicklingError`` that caused ``exc`` (or is ``exc``), else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, pickle.UnpicklingError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def refusal_reason(exc: BaseException) -> str:
    """The reason ``torch.load(weights_only=True)`` refused a file, in one line.

    torch wraps it in a paragraph that suggests ``weights_only=False``, the one thing not to
    do with a file that tries to run code. The refused global is named in torch's own words
    as ``GLOBAL module.name`` (torch 2.6 to 2.14 at least, blocked module or not); other
    refusals are the line that is not part of that paragraph.
    """
    text = re.sub(r'\x1b\[[0-9;]*m', '', str(exc))
    found = re.search(r'GLOBAL ([\w.]+)', text)
    if found:
        return f'it names the Python object {found.group(1)}, which is not allowed'
    marker = 'WeightsUnpickler error:'
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [
        ln.strip()
        for ln in text.strip().splitlines()
        if ln.strip() and not re.search(_TORCH_ADVICE, ln.strip())
    ]
    return lines[0] if lines else type(exc).__name__


# torch's paragraph around the reason (advice to switch the safety off, links)
_TORCH_ADVICE = (
    r'^(Weights only load failed|\(1\)|\(2\)|Check the documentation|Re-running)'
    r'|weights_only` (set to|argument)'
)


def load_trunk_file(vit: nn.Module, path: str) -> None:
    """Load a local checkpoint into a timm ViT, raising a named error on any mismatch."""
    if not os.path.isfile(path):
        raise PretrainedNotFoundError(
            f'pretrained trunk checkpoint not found: {path} (model.backbone.pretrained; a '
            f'relative path starts at {os.getcwd()})'
        )
    if path.endswith('.npz'):
        try:
            with torch.no_grad():
                vit.load_pretrained(path)
        except Exception as e:  # timm's reader raises KeyError/ValueError/RuntimeError
            raise PretrainedMismatchError(
                f'{path}: not a ViT .npz checkpoint that fits trunk '
                f'{type(vit).__name__}(embed_dim={vit.embed_dim}, depth={len(vit.blocks)}): '
                f'{type(e).__name__}: {e}'
            ) from e
        return
    try:
        state_dict = load_state_dict(path, use_ema=False)
    except Exception as e:
        refused = unpickling_error(e)  # timm wraps it in a RuntimeError
        if refused is not None:
            raise PretrainedMismatchError(
                f'{path}: refused by the safe checkpoint loader (torch.load '
                f'weights_only=True): {refusal_reason(refused)}'
            ) from e
        raise PretrainedMismatchError(
            f'{path}: could not be read as a checkpoint ({type(e).__name__}: {e})'
        ) from e
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise PretrainedMismatchError(f'{path}: does not hold a state dict of tensors')
    try:
        state_dict = adapt_state_dict(state_dict, vit)
    except Exception as e:
        raise PretrainedMismatchError(
            f'{path}: is not a ViT checkpoint timm can adapt ({type(e).__name__}: {e}); '
            f'first keys: {_first(list(state_dict))}'
        ) from e
    own = vit.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f'{k} {tuple(v.shape)} vs trunk {tuple(own[k].shape)}'
        for k, v in state_dict.items()
        if k in own and v.shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        problems = [
            f'{name}: {_first(keys)}'
            for name, keys in (
                ('missing keys', missing),
                ('unexpected keys', unexpected),
                ('shape mismatches', mismatched),
            )
            if keys
        ]
        raise PretrainedMismatchError(
            f'{path}: does not fit trunk {type(vit).__name__}(embed_dim={vit.embed_dim}, '
            f'depth={len(vit.blocks)}); ' + '; '.join(problems)
        )
    vit.load_state_dict(state_dict, strict=True)


def load_trunk_tag(vit: nn.Module, model_name: str, tag: str, **timm_kwargs) -> None:
    """Load timm's pretrained weights ``model_name.tag`` (needs the model hub)."""
    name = tag if '.' in tag or '/' in tag else f'{model_name.split(".")[0]}.{tag}'
    try:
        src = timm.create_model(name, pretrained=True, num_classes=0, **timm_kwargs)
    except Exception as e:
        raise RuntimeError(
            f"could not fetch timm pretrained weights '{name}' "
            f'(is the model hub reachable? pass a local file instead): {e}'
        ) from e
    state_dict = {k: v for k, v in src.state_dict().items() if not k.startswith(UNUSED_PREFIXES)}
    vit.load_state_dict(state_dict, strict=True)


def trunk_pixel_stats(trunk: str, pretrained: Optional[str] = None) -> Dict[str, List[float]]:
    """The input normalisation the trunk's weights were trained with, for a data preprocessor.

    timm's pretrained config of ``trunk`` with the tag ``pretrained`` (a file or None: timm's
    default tag of the model) gives mean and std in [0, 1]; OpenMMLab's preprocessors take
    them in pixel values. E.g. ``('vit_base_patch16_224', 'augreg_in21k')`` ->
    ``{'mean': [127.5] * 3, 'std': [127.5] * 3}``; DINOv2 / DINOv3: ImageNet's; EVA-02: CLIP's.
    Configs call it, so the statistics are never typed by hand.
    """
    arch = trunk.split('.')[0]
    tag = None if not pretrained or is_path(pretrained) else pretrained
    if tag and tag.startswith(HUB_PREFIXES):
        raise ValueError(f'{tag}: a model hub address has no timm pretrained config to read')
    name = tag if tag and '.' in tag else f'{arch}.{tag}' if tag else arch
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise ValueError(f"trunk '{name}' has no timm pretrained config (mean / std)")
    return {key: [round(255 * v, 6) for v in getattr(cfg, key)] for key in ('mean', 'std')}


def load_trunk_weights(vit: nn.Module, model_name: str, source: str, **timm_kwargs) -> None:
    """Load ``source`` (a file path or a timm tag) into the trunk ``vit``."""
    if is_path(source):
        load_trunk_file(vit, os.path.expanduser(source))
    else:
        load_trunk_tag(vit, model_name, source, **timm_kwargs)
