"""torch's random state carried across a resume, and left untouched by validation."""

from __future__ import annotations

import random
from typing import Optional

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def rng_state_problem(state) -> Optional[str]:
    """What is wrong with a checkpoint's ``torch_rng_state`` entry, or None."""
    if not isinstance(state, dict):
        return f'is a {type(state).__name__}, not a dict'
    for key in ('cpu', 'cuda'):
        value = state.get(key)
        if value is None and key == 'cuda':
            continue
        if not (torch.is_tensor(value) and value.dtype == torch.uint8 and value.dim() == 1):
            return f"['{key}'] is not a 1-d uint8 tensor (torch's generator state)"
    if state['cpu'].numel() != torch.get_rng_state().numel():
        return f"['cpu'] has {state['cpu'].numel()} bytes, not {torch.get_rng_state().numel()}"
    if not isinstance(state.get('iter'), (int, type(None))):
        return "['iter'] is not an iteration number"
    return None


@HOOKS.register_module()
class TorchRNGStateHook(Hook):
    """Save torch's random state in each checkpoint and restore it on resume, so that a
    resumed run draws the same dropout masks, RoI samples, ... as an uninterrupted one.

    What mmengine already restores on ``resume``: weights, optimizer, schedulers, the
    message hub, the iteration, and the data position: ``IterBasedTrainLoop`` replays
    (loads and discards) the batches already trained, so the sampler (seeded by
    ``randomness.seed``) and the numpy / python random state used by the data pipeline
    end up where they were. What it does not: torch's generator, which the model consumes
    (dropout in the decode heads, mmdet's RoI samplers). Without this hook a resumed run
    continues with the generator as it was right after model initialisation.

    The state saved with a checkpoint is the one after that iteration, i.e. the one the
    next iteration starts from; it is restored in ``before_train_iter`` of the first
    iteration after resuming (after the data replay, which does not touch torch's
    generator). It is restored only in single-process runs: the checkpoint holds rank 0's
    state, and giving it to every rank would change a multi-process run, not resume it.

    Validation runs after the checkpoint of its iteration is saved and draws from the
    generators too (a data loader draws a seed when it starts), so this hook also makes
    validation leave torch's, numpy's and python's random states as it found them: training
    then draws the same numbers whether or not, and wherever, it validated.
    """

    priority = 'VERY_HIGH'
    KEY = 'torch_rng_state'

    def __init__(self) -> None:
        self._pending: Optional[dict] = None
        self._before_val: Optional[tuple] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = {'cpu': torch.get_rng_state(), 'iter': checkpoint['meta'].get('iter')}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state()  # the current device's
        checkpoint[self.KEY] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Also called by plain `load_from`; before_train_iter tells the two apart.
        state = checkpoint.get(self.KEY) if isinstance(checkpoint, dict) else None
        if state is not None:
            problem = rng_state_problem(state)
            if problem:
                from .checkpoint_fit import CheckpointMismatchError, loaded_checkpoint_path

                path = loaded_checkpoint_path(runner) or 'the checkpoint'
                raise CheckpointMismatchError(
                    f"{path}: '{self.KEY}' {problem}; it was not written by "
                    f'TorchRNGStateHook: delete the entry to resume without it'
                )
        self._pending = state

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        state, self._pending = self._pending, None
        # Only when training continues exactly where the checkpoint was saved (a resume),
        # not after `load_from` (which starts at iteration 0).
        if state is None or state.get('iter') != runner.iter or get_world_size() > 1:
            return
        torch.set_rng_state(state['cpu'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state['cuda'])

    def before_val(self, runner) -> None:
        cuda = (
            torch.cuda.get_rng_state()
            if torch.cuda.is_available() and torch.cuda.is_initialized()
            else None
        )
        self._before_val = (torch.get_rng_state(), cuda, np.random.get_state(), random.getstate())

    def after_val(self, runner) -> None:
        if self._before_val is None:
            return
        cpu, cuda, np_state, py_state = self._before_val
        self._before_val = None
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)
        np.random.set_state(np_state)
        random.setstate(py_state)
