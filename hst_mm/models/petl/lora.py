"""LoRA (Hu et al., 2022) on the trunk's attention projections, through Hugging Face ``peft``.

``peft.inject_adapter_in_model`` replaces each targeted ``nn.Linear`` (timm's fused ``qkv``,
(D -> 3D), and optionally ``proj``, (D -> D)) by a LoRA layer:
``y = W x + b + (alpha / r) * B A x`` with ``A`` (r, D_in) kaiming-uniform and ``B``
(D_out, r) zero, so at initialisation the trunk computes exactly what the frozen one does.
The frozen weights move to ``<layer>.base_layer.weight`` / ``.bias``; :meth:`LoRA.plain_key`
maps them back to a plain ViT's keys for pretrained loading.
"""

from __future__ import annotations

from typing import Sequence, Set

import torch.nn as nn

from ...extras import import_extra
from .base import PETLMethod

ADAPTER = 'default'  # peft's adapter name; it appears in the parameter names


class LoRA(PETLMethod):
    """LoRA of rank ``rank`` on every block's ``targets`` (attention Linear layers).

    Args:
        vit: the frozen timm ViT, adapted in place.
        rank: r, the inner width of ``B A``.
        alpha: LoRA's alpha; the update is scaled by ``alpha / rank``.
        targets: names of the attention Linear layers to adapt (``qkv``, ``proj``).
        dropout: dropout on the LoRA branch's input.

    Trainable parameters: ``rank * (D_in + D_out)`` per adapted layer; ViT-B, rank 16 on
    ``qkv``: 16 * (768 + 2304) * 12 = 589,824.
    """

    def __init__(
        self,
        vit: nn.Module,
        rank: int = 16,
        alpha: float = 16,
        targets: Sequence[str] = ('qkv',),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        peft = import_extra('peft', 'lora', 'LoRA')  # an extra: not in the default install

        known = ('qkv', 'proj')
        if not targets or any(t not in known for t in targets):
            raise ValueError(f'LoRA targets {list(targets)}: choose from {list(known)}')
        self.rank, self.alpha, self.targets = rank, alpha, tuple(targets)
        # A regular expression on full module names: only the attention projections of the
        # blocks, never e.g. an MLP layer that happened to share a name.
        pattern = r'blocks\.\d+\.attn\.(' + '|'.join(self.targets) + ')'
        config = peft.LoraConfig(
            r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern, bias='none'
        )
        peft.inject_adapter_in_model(config, vit, adapter_name=ADAPTER)
        if not self.trunk_parameter_names(vit):
            raise ValueError(f'LoRA found no attention layers {list(targets)} in the trunk')

    def trunk_parameter_names(self, vit: nn.Module) -> Set[str]:
        return {n for n, _ in vit.named_parameters() if '.lora_' in n}

    def plain_key(self, key: str) -> str:
        return key.replace('.base_layer.', '.')

    def extra_repr(self) -> str:
        return f'rank={self.rank}, alpha={self.alpha}, targets={self.targets}'
