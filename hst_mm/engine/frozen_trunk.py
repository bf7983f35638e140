"""The frozen trunk of a model: which weights a pretrained source restores, and restoring
them under a trainable-only checkpoint.

A backbone with a ``pretrained`` source (``type='HST'``, ``type='ViTPyramid'``) loads its
timm ViT from that source in ``init_weights()``. The weights of that ViT which never train
(``requires_grad=False``; buffers of modules whose parameters are all frozen) are the same
in every checkpoint of a run, so a trainable-only export
(:mod:`hst_mm.engine.trainable_export`) leaves them out and records, under
``meta['trainable_only']``, their names, a digest of each, and the source that restores
them. Everything else, frozen or not, stays in the file: a weight that no pretrained source
restores cannot be left out.
"""

from __future__ import annotations

import hashlib
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.model import BaseTTAModel, is_model_wrapper

from ..models.parts import VIT_PATH, rename_old_keys, trunk_vit
from ..registration import PretrainedOnInit
from .checkpoint_weights import CheckpointMismatchError, checkpoint_state_dict

# The key under the checkpoint's ``meta`` that marks a trainable-only export.
EXPORT_KEY = 'trainable_only'
EXPORT_FORMAT = 1


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP and test-time-augmentation wrappers (mmengine loads into it)."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def pretrained_trunks(model: nn.Module) -> Dict[str, dict]:
    """``{prefix of the loaded ViT: {'module', 'source', 'trunk'}}`` for every backbone of
    ``model`` that loads a pretrained source, e.g. ``'backbone.trunk.vit'``."""
    found = {}
    for name, module in unwrap(model).named_modules():
        loads = isinstance(module, PretrainedOnInit) and trunk_vit(module) is not None
        if not (loads and module.pretrained):
            continue
        prefix = f'{name}.{VIT_PATH}' if name else VIT_PATH
        found[prefix] = dict(module=name, source=module.pretrained, trunk=module.trunk_name)
    return found


def restorable_frozen_keys(model: nn.Module) -> List[str]:
    """State-dict keys of ``model`` that do not train and that a pretrained source restores:
    frozen parameters of a loaded ViT, and the buffers of its modules whose parameters are
    all frozen (a frozen trunk runs in eval mode: its BatchNorm statistics, if any, never
    change). In state-dict order."""
    model = unwrap(model)
    keys = []
    for prefix in pretrained_trunks(model):
        vit = model.get_submodule(prefix)
        for mod_name, module in vit.named_modules():
            own = list(module.named_parameters(recurse=False))
            frozen_module = bool(own) and not any(p.requires_grad for _, p in own)
            for p_name, p in own:
                if not p.requires_grad:
                    keys.append(_join(prefix, mod_name, p_name))
            if frozen_module:
                persistent = set(module.state_dict(keep_vars=True)) - {n for n, _ in own}
                keys += [_join(prefix, mod_name, b) for b in sorted(persistent) if '.' not in b]
    order = {k: i for i, k in enumerate(model.state_dict(keep_vars=True))}
    return sorted(set(keys) & set(order), key=order.__getitem__)


def _join(*parts: str) -> str:
    return '.'.join(p for p in parts if p)


def tensor_digest(tensor: torch.Tensor) -> str:
    """A short SHA-256 of a tensor's dtype, shape and bytes (equal iff bit-identical)."""
    t = tensor.detach().cpu().contiguous().reshape(-1)
    h = hashlib.sha256(f'{t.dtype}{tuple(tensor.shape)}'.encode())
    h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def export_info(checkpoint: dict) -> Optional[dict]:
    """The ``meta['trainable_only']`` record of a trainable-only export, else None."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    info = meta.get(EXPORT_KEY) if isinstance(meta, dict) else None
    return info if isinstance(info, dict) else None


def check_export_fits(model: nn.Module, info: dict, path: Optional[str]) -> List[str]:
    """The keys a trainable-only export may lack in ``model``: exactly those it says it
    left out, each of which ``model`` must restore from its pretrained source.

    Raises :class:`CheckpointMismatchError` if the export left out a weight that this
    model trains or cannot restore (another config, or no ``pretrained`` set).
    """
    if not isinstance(info.get('omitted', {}), dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in info.get('omitted', {}).items()
    ):
        raise CheckpointMismatchError(
            f"{path or 'the checkpoint'}: meta['{EXPORT_KEY}']['omitted'] is a "
            f'{type(info["omitted"]).__name__}, not the mapping of left-out weight names to '
            f'digests that tools/export_trainable.py writes; export the full checkpoint again'
        )
    omitted = list(rename_old_keys(model, info.get('omitted', {})))
    restorable = set(restorable_frozen_keys(model))
    not_restorable = [k for k in omitted if k not in restorable]
    if not_restorable:
        sources = pretrained_trunks(model)
        where = (
            'its pretrained source (' + ', '.join(v['source'] for v in sources.values()) + ')'
            if sources
            else 'no pretrained source (model.backbone.pretrained is not set)'
        )
        raise CheckpointMismatchError(
            f'{path or "the checkpoint"}: a trainable-only export without '
            f"{len(not_restorable)} weights that this config's model trains or does not "
            f'restore from {where}, e.g. {", ".join(not_restorable[:3])}. Load it into the '
            f"config it was exported from, with the trunk's pretrained weights available."
        )
    return omitted


def restore_frozen_trunk(model: nn.Module, checkpoint: dict, path: Optional[str]) -> None:
    """Give ``model`` the frozen trunk weights a trainable-only export left out.

    Each backbone's ``pretrained`` source is loaded unless its ``init_weights()`` already
    ran (training: the Runner calls it before loading ``load_from``), the export's own
    weights inside that trunk (the tuned LayerNorms) are copied back over it, and every
    left-out weight is compared with the digest the export recorded: a different trunk is
    refused, since it would not reproduce the exported model's outputs.
    """
    model = unwrap(model)
    info = export_info(checkpoint)
    if info is None:
        return
    omitted = check_export_fits(model, info, path)
    theirs = rename_old_keys(model, checkpoint_state_dict(checkpoint))
    for prefix, trunk in pretrained_trunks(model).items():
        backbone = model.get_submodule(trunk['module']) if trunk['module'] else model
        backbone.load_pretrained_once()  # unless init_weights() has loaded it already
        vit = model.get_submodule(prefix)
        own = {k[len(prefix) + 1 :]: v for k, v in theirs.items() if k.startswith(prefix + '.')}
        # the export's own weights in this trunk (tuned LayerNorms); the hook's caller
        # copies them again afterwards, tools/demo.py has copied them already. strict=False
        # only because the left-out keys are missing here: check_export_fits has named every
        # key of the export against the model already, and the digests below check the rest.
        result = vit.load_state_dict(own, strict=False)
        if result.unexpected_keys:  # keys the trunk lacks would otherwise be dropped unseen
            raise CheckpointMismatchError(
                f"{path or 'the checkpoint'}: weights under {prefix} that this model's trunk "
                f'does not have: {result.unexpected_keys[:5]}; export from a checkpoint of '
                f'this config'
            )
    state = model.state_dict()
    differ = [k for k in omitted if tensor_digest(state[k]) != info['omitted'][k]]
    if differ:
        sources = ', '.join(sorted({t['source'] for t in pretrained_trunks(model).values()}))
        raise CheckpointMismatchError(
            f'{path or "the checkpoint"}: the trunk weights from {sources} are not the ones '
            f'this trainable-only export was made with ({len(differ)} of {len(omitted)} '
            f'left-out weights differ, e.g. {", ".join(differ[:3])}), so it would not '
            f'reproduce the exported model; the export names {info.get("pretrained")}. Point '
            f'model.backbone.pretrained at the weights the model was trained with.'
        )
