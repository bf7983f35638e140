"""Mixed-precision configs on a machine without a GPU.

The COCO and ADE20K configs train with mmengine's ``AmpOptimWrapper`` (float16 or bfloat16
autocast), which refuses to be built without CUDA (or NPU/MLU/MUSA). On such a machine the
tools train the same config in float32 and say so, instead of failing at the first step.
"""

from __future__ import annotations

from typing import Optional

AMP_ONLY_KEYS = ('loss_scale', 'dtype', 'use_fsdp')


def float32_without_gpu(optim_wrapper: dict, gpu: Optional[bool] = None) -> Optional[str]:
    """Turn an ``AmpOptimWrapper`` config into a plain ``OptimWrapper`` when no GPU is present.

    Changes ``optim_wrapper`` in place; returns a note for the user, or None if nothing changed.
    """
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    kind = optim_wrapper.get('type', 'OptimWrapper')
    if gpu or kind not in ('AmpOptimWrapper', 'mmengine.AmpOptimWrapper'):
        return None
    dtype = optim_wrapper.get('dtype', 'float16')
    optim_wrapper['type'] = 'OptimWrapper'
    for key in AMP_ONLY_KEYS:
        optim_wrapper.pop(key, None)
    return (
        f'no GPU: training in float32 (the config asks for AmpOptimWrapper with {dtype}, '
        f'which mmengine builds only on a GPU)'
    )
