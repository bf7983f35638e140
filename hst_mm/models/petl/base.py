"""What every PETL method of the baseline trunk provides, and loading a plain ViT's weights
into a trunk that carries PETL modules.

A method adapts a frozen timm ``VisionTransformer`` in place when it is built. Its own
parameters live either in the method module (prompts, adapters, scale/shift vectors, run
through forward hooks on the trunk's modules, so the trunk's keys do not change) or inside the
trunk (LoRA, injected by ``peft``, which renames the wrapped layer's weights to
``<layer>.base_layer.*``). The method module never holds the trunk as a submodule.
"""

from __future__ import annotations

from typing import Dict, Set

import torch
import torch.nn as nn

from ..pretrained import PretrainedMismatchError


class PETLMethod(nn.Module):
    """Base class: a parameter-efficient adaptation of a frozen timm ViT.

    Subclasses adapt ``vit`` in their constructor and override what differs.
    """

    def trunk_parameter_names(self, vit: nn.Module) -> Set[str]:
        """Names (in ``vit.named_parameters()``) of the method's parameters that live inside
        the trunk: they train, every other trunk parameter stays frozen."""
        return set()

    def plain_key(self, key: str) -> str:
        """The key a plain timm ViT's state dict uses for the adapted trunk's ``key``."""
        return key


def load_plain_state_dict(
    vit: nn.Module, method: PETLMethod, state_dict: Dict[str, torch.Tensor], source: str
) -> None:
    """Copy a plain ViT's ``state_dict`` into the adapted trunk ``vit``.

    Every trunk key that is not one of the method's own parameters must come from
    ``state_dict`` (through :meth:`PETLMethod.plain_key`), and every entry of ``state_dict``
    must be used; anything else raises :class:`PretrainedMismatchError` naming the keys. The
    method's parameters keep their initialisation.
    """
    own = vit.state_dict()
    petl_names = method.trunk_parameter_names(vit)
    mapped, missing = {}, []
    for key in own:
        if key in petl_names:
            continue
        src = method.plain_key(key)
        if src in state_dict:
            mapped[key] = state_dict[src]
        else:
            missing.append(src)
    used = {method.plain_key(k) for k in mapped}
    unexpected = sorted(k for k in state_dict if k not in used)
    if missing or unexpected:
        raise PretrainedMismatchError(
            f'{source}: does not fit the {type(method).__name__} trunk; missing keys: '
            f'{missing[:5]}, unexpected keys: {unexpected[:5]}'
        )
    result = vit.load_state_dict(mapped, strict=False)
    # strict=False only because the method's own parameters are not in a plain checkpoint;
    # that they and nothing else were left out is checked here.
    if set(result.missing_keys) != petl_names or result.unexpected_keys:
        raise PretrainedMismatchError(
            f'{source}: loading left out {sorted(set(result.missing_keys) - petl_names)[:5]} '
            f'and did not use {result.unexpected_keys[:5]}'
        )
