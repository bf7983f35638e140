"""What autograd saves for backward during one training forward, per part of the model.

Every tensor autograd keeps for backward passes through ``saved_tensors_hooks``; module
hooks say which part of the model was running when it was saved. Sizes are of whole
storages, each counted once (a view keeps its whole storage alive), parameters excluded,
attributed to the first part, in :func:`part_modules`' order, that saved them (a trunk
block's output, which the T-Bridge and the next block both keep, is the trunk's whichever
runs first). An activation-checkpointed region shows the
inputs its checkpoint keeps, not what it recomputes in backward.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Tuple

import torch
import torch.nn as nn

from hst_mm.models.parts import part_modules


def _marked_blocks(iter_blocks: Callable, stack: List[str]) -> Callable:
    """``iter_blocks`` with ``'trunk'`` on ``stack`` while each of its steps runs, so that
    what a trunk block saves between its modules (e.g. the input of a recomputed MLP) is the
    trunk's, not that of the side network that asked for the block."""

    def marked(*args, **kwargs):
        blocks = iter_blocks(*args, **kwargs)
        while True:
            stack.append('trunk')
            try:
                item = next(blocks)
            except StopIteration:
                return
            finally:
                stack.pop()
            yield item

    return marked


@contextmanager
def tracked_parts(model: nn.Module) -> Iterator[List[str]]:
    """Within the block: a list whose last item names the part of ``model``
    (:func:`~hst_mm.models.parts.part_modules`) that is running now; empty outside every
    part. Module hooks push and pop the names; HST's trunk blocks, which the side network
    runs one at a time (``MetaTokenViT.iter_blocks``), are marked ``'trunk'``."""
    stack: List[str] = []

    def enter(name: str) -> Callable:
        def hook(module, args) -> None:
            stack.append(name)

        return hook

    def leave(module, args, output) -> None:  # returns None: the output stays as it is
        stack.pop()

    handles = []
    for name, module in part_modules(model):
        handles.append(module.register_forward_pre_hook(enter(name)))
        handles.append(module.register_forward_hook(leave))
    trunk = getattr(getattr(model, 'backbone', model), 'trunk', None)
    streamed = trunk is not None and hasattr(trunk, 'iter_blocks')
    if streamed:  # HST: the trunk's blocks run one at a time inside the side network
        trunk.iter_blocks = _marked_blocks(trunk.iter_blocks, stack)
    try:
        yield stack
    finally:
        for h in handles:
            h.remove()
        if streamed:
            del trunk.iter_blocks  # the class's method again


def saved_activation_mb(model: nn.Module, forward_loss: Callable[[], torch.Tensor]) -> Dict:
    """MB that autograd saves for backward in ``forward_loss()``, per part of ``model``.

    ``forward_loss`` runs a training forward and returns the loss; its backward is run
    afterwards so that nothing stays alive. Returns ``{'parts': {part: MB}, 'total': MB}``
    (``other``: saved outside every part, e.g. by the loss).
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    order = [n for n, _ in part_modules(model)] + ['other']
    rank = {n: order.index(n) for n in order}
    seen: Dict[int, Tuple[str, int]] = {}

    with tracked_parts(model) as stack:

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            part = stack[-1] if stack else 'other'
            if ptr not in params and storage.nbytes():
                if ptr not in seen or rank[part] < rank[seen[ptr][0]]:
                    seen[ptr] = (part, storage.nbytes())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = forward_loss()
    loss.backward()
    model.zero_grad(set_to_none=True)
    parts: Dict[str, float] = {}
    for part, nbytes in seen.values():
        parts[part] = parts.get(part, 0.0) + nbytes / 2**20
    # A part under 0.05 MB is left out (e.g. the bridge of the lean trunk, whose inputs are
    # views of the trunk's block outputs, counted as the trunk's).
    parts = {n: round(parts[n], 1) for n in dict.fromkeys(order) if round(parts.get(n, 0), 1)}
    return {'parts': parts, 'total': round(sum(parts.values()), 1)}
