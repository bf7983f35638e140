"""Where one row's time goes, per part of the model: an inference call, and a training
step's forward, backward and optimizer step.

The parts are those of :func:`hst_mm.models.parts.part_modules` (HST: ``trunk`` blocks,
``bridge``, ``side`` and ``side stage s``; the simple pyramid: ``trunk``, ``pyramid``),
tracked as :func:`.saved.tracked_parts` tracks them, plus ``other`` for what runs outside
every part (the loss).

* Forward: a ``TorchFunctionMode`` times every torch call made at the top level (a call
  inside another torch call is part of it) and charges it to the part running then.
* Backward: every autograd node the training forward creates gets a pre-hook and a hook,
  and the time between them is charged to the part whose call created it. A recomputed
  region (``recompute=...``, ``with_cp``) recomputes inside the node that needs it: its
  cost is that part's.
* ``rest``: the wall time of the phase minus its parts: Python between the torch calls,
  and the cost of the profiling itself, which makes each phase slower than unprofiled
  (compare parts with parts, not the wall with the unprofiled step).
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer
from torch.overrides import TorchFunctionMode

from .saved import tracked_parts

# The report's columns: each part of part_modules, merged.
COLUMNS = ('trunk', 'bridge', 'side', 'pyramid', 'other', 'rest')


def column(part: str) -> str:
    """The report's column of ``part``: ``side stage 3`` -> ``side``; neck and heads ->
    ``other``."""
    if part.startswith('side'):
        return 'side'
    return part if part in COLUMNS else 'other'


class _PartClock(TorchFunctionMode):
    """Times each top-level torch call, charged to ``stack[-1]``; with ``tag``, marks the
    autograd nodes a call creates with that part and times their backward."""

    def __init__(self, stack, times: Dict[str, float], backward: Optional[Dict[str, float]]):
        super().__init__()
        self.stack, self.times, self.backward = stack, times, backward

    def __torch_function__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        part = self.stack[-1] if self.stack else 'other'
        self.times[part] = self.times.get(part, 0.0) + time.perf_counter() - start
        if self.backward is not None:
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor) and t.grad_fn is not None:
                    self._tag(t.grad_fn, part)
        return out

    def _tag(self, node, part: str) -> None:
        """``node`` and the untagged nodes it reaches (made inside the same call, e.g. by a
        composite op) are ``part``'s: each gets a clock around its backward."""
        todo = [node]
        while todo:
            n = todo.pop()
            if n is None or 'part' in n.metadata:
                continue
            n.metadata['part'] = part
            start = [0.0]

            def pre(grad_outputs, start=start):
                start[0] = time.perf_counter()

            def post(grad_inputs, grad_outputs, start=start, part=part):
                self.backward[part] = self.backward.get(part, 0.0) + time.perf_counter() - start[0]

            n.register_prehook(pre)
            n.register_hook(post)
            todo.extend(f for f, _ in n.next_functions)


def _phase(parts: Dict[str, float], wall: float) -> Dict[str, object]:
    """``{'parts': {part: s}, 'rest_s', 'wall_s'}`` of one profiled phase."""
    return {'parts': dict(parts), 'rest_s': wall - sum(parts.values()), 'wall_s': wall}


def profile_parts(
    model: nn.Module,
    infer: Callable[[], None],
    loss: Optional[Callable[[], torch.Tensor]] = None,
    optimizer_step: Optional[Callable[[], None]] = None,
) -> Dict[str, Dict]:
    """One profiled call of ``infer()`` (eval mode) and, with ``loss``, one training step:
    ``loss()`` (train mode), its backward, ``optimizer_step()``.

    Returns ``{phase: {'parts': {part: s}, 'rest_s': s, 'wall_s': s}}`` for the phases
    ``inference``, ``train forward``, ``train backward`` and ``optimizer`` (the last three
    only with ``loss``; ``optimizer`` only with ``optimizer_step``: all of it ``other``).
    """
    out: Dict[str, Dict] = {}
    model.eval()
    with tracked_parts(model) as stack:
        if isinstance(model, VisionTransformer):
            # the bare trunk row runs forward_features, which no module hook sees
            stack.append('trunk')
        times: Dict[str, float] = {}
        start = time.perf_counter()
        with _PartClock(stack, times, None):
            infer()
        out['inference'] = _phase(times, time.perf_counter() - start)
        if loss is None:
            return out
        model.train()
        fwd: Dict[str, float] = {}
        bwd: Dict[str, float] = {}
        start = time.perf_counter()
        with _PartClock(stack, fwd, bwd):
            value = loss()
        out['train forward'] = _phase(fwd, time.perf_counter() - start)
    start = time.perf_counter()
    value.backward()
    out['train backward'] = _phase(bwd, time.perf_counter() - start)
    if optimizer_step is None:
        model.zero_grad(set_to_none=True)
        return out
    start = time.perf_counter()
    optimizer_step()
    wall = time.perf_counter() - start
    out['optimizer'] = _phase({'other': wall}, wall)
    return out
