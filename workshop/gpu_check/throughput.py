"""Part 2 of the GPU check, run in a worker process: training throughput of HST vs full
fine-tuning.

``model.train_step`` of Mask R-CNN and UperNet, each built from its config in the checkout
(trunk weights not loaded) and trained with the config's own optimizer wrapper on a
synthetic batch; one process per model, so the memory peak is that model's.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Dict, Optional

from ..fixtures import det_batch, seg_batch, shrink_to_tiny

# The checkout: the configs are read from it (the workshop is never installed).
ROOT = Path(__file__).resolve().parents[2]

# task -> (mode -> config), with the full-size input side and batch of each task.
TRAIN_CONFIGS = {
    'detection': {
        'hst': 'configs/hst/mask-rcnn_hst-vit-b_fpn_amp-1x_coco.py',
        'full': 'configs/baselines/mask-rcnn_vit-b-full_fpn_amp-1x_coco.py',
    },
    'segmentation': {
        'hst': 'configs/hst/upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512.py',
        'full': 'configs/baselines/upernet_vit-b-full_8xb2-amp-160k_ade20k-512x512.py',
    },
}
TRAIN_SIZE = {'detection': (1024, 2), 'segmentation': (512, 8)}  # (image side, batch)
SEG_CLASSES = 150  # ADE20K

# --tiny: the tests' tiny trunk and side network (workshop.fixtures); 128 px images, batch 2.
TINY_SIZE, TINY_BATCH = 128, 2
# ... and CPU-sized necks and heads (full-size heads make a tiny CPU step take ~10 s).
TINY_HEADS = {
    'detection': {
        'model.neck.out_channels': 32,
        'model.rpn_head.in_channels': 32,
        'model.rpn_head.feat_channels': 32,
        'model.roi_head.bbox_roi_extractor.out_channels': 32,
        'model.roi_head.bbox_head.in_channels': 32,
        'model.roi_head.bbox_head.fc_out_channels': 64,
        'model.roi_head.mask_roi_extractor.out_channels': 32,
        'model.roi_head.mask_head.in_channels': 32,
        'model.roi_head.mask_head.conv_out_channels': 32,
        'model.train_cfg.rpn_proposal.max_per_img': 100,
        'model.train_cfg.rcnn.sampler.num': 64,
    },
    'segmentation': {'model.decode_head.channels': 32, 'model.auxiliary_head.channels': 16},
}


def _count_params(model) -> Dict[str, int]:
    params = list(model.parameters())
    return {
        'trainable_params': sum(p.numel() for p in params if p.requires_grad),
        'total_params': sum(p.numel() for p in params),
    }


def build_model(task: str, mode: str, tiny: bool, gpu: bool):
    """The model and optimizer-wrapper config of ``task``/``mode``'s config file.

    Trunk weights are not loaded (``pretrained=None``). With ``tiny``, the trunk and side
    network shrink and the neck / heads take their channels. Without a GPU the config's
    ``AmpOptimWrapper`` becomes a float32 ``OptimWrapper`` (mmengine builds AMP only on a
    GPU). Returns ``(model, optim_wrapper_cfg, cfg, note)``.
    """
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import hst_mm  # noqa: F401  (registers HST and ViTPyramid)
    from hst_mm.engine.precision import float32_without_gpu

    cfg = Config.fromfile(str(ROOT / TRAIN_CONFIGS[task][mode]))
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.pretrained = None
    if tiny:
        shrink_to_tiny(cfg)
        cfg.merge_from_dict(TINY_HEADS[task])
    if task == 'segmentation':
        side = TINY_SIZE if tiny else TRAIN_SIZE[task][0]
        cfg.model.data_preprocessor.size = (side, side)
    model = MODELS.build(cfg.model)
    model.init_weights()
    note = float32_without_gpu(cfg.optim_wrapper, gpu=gpu)
    return model, cfg.optim_wrapper, cfg, note


def train_worker(args: argparse.Namespace, task: str, mode: str) -> dict:
    """Time ``args.iters`` ``train_step`` calls of one model after ``args.warmup``."""
    import torch
    from mmengine.optim import build_optim_wrapper

    from workshop.benchmark.measure import current_rss_mb, peak_rss_mb

    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    side, batch = (TINY_SIZE, TINY_BATCH) if args.tiny else TRAIN_SIZE[task]
    torch.manual_seed(0)

    start = time.perf_counter()
    model, optim_cfg, cfg, note = build_model(task, mode, args.tiny, gpu=cuda)
    # What mmengine's Runner would set from the config (mmseg's runtime turns it on).
    torch.backends.cudnn.benchmark = bool(cfg.get('env_cfg', {}).get('cudnn_benchmark', False))
    model = model.to(device)
    optim_wrapper = build_optim_wrapper(model, optim_cfg)
    data = det_batch(batch, side) if task == 'detection' else seg_batch(batch, side, SEG_CLASSES)
    build_s = time.perf_counter() - start
    if cuda:
        torch.cuda.synchronize(device)
        model_mem_mb = torch.cuda.memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    else:
        model_mem_mb = current_rss_mb()

    model.train()
    times, losses = [], []
    for i in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        log_vars = model.train_step(data, optim_wrapper)
        loss = log_vars['loss']  # one host sync per step, as the Runner's logger has
        loss = loss.detach().item() if torch.is_tensor(loss) else float(loss)
        if cuda:
            torch.cuda.synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            losses.append(loss)
    total = sum(times)
    row = {
        'config': TRAIN_CONFIGS[task][mode],
        'img_size': side,
        'batch': batch,
        'iters': args.iters,
        'warmup': args.warmup,
        'it_per_s': args.iters / total,
        'img_per_s': args.iters * batch / total,
        'step_s_median': statistics.median(times),
        'step_s_mean': total / len(times),
        'model_mem_mb': model_mem_mb,
        'peak_mem_mb': (torch.cuda.max_memory_allocated(device) / 2**20 if cuda else peak_rss_mb()),
        'peak_reserved_mb': torch.cuda.max_memory_reserved(device) / 2**20 if cuda else None,
        'memory': (
            'torch.cuda.max_memory_allocated over warm-up and timed steps'
            if cuda
            else "peak RSS (VmHWM) of the model's own process"
        ),
        'optim_wrapper': type(optim_wrapper).__name__,
        # AmpOptimWrapper's autocast dtype (mmengine's default is float16); None: float32.
        'amp_dtype': (
            optim_cfg.get('dtype') or 'float16'
            if type(optim_wrapper).__name__ == 'AmpOptimWrapper'
            else None
        ),
        'cudnn_benchmark': torch.backends.cudnn.benchmark,
        'precision_note': note,
        'build_s': build_s,
        'loss_first': losses[0],
        'loss_last': losses[-1],
        'loss_finite': all(math.isfinite(v) for v in losses),
        'step_times_s': times,
        **_count_params(model),
    }
    return row


def train_ratios(rows: Dict[str, dict]) -> Optional[dict]:
    """HST / full fine-tuning ratios of one task's two rows (None if either failed)."""
    hst, full = rows.get('hst', {}), rows.get('full', {})
    if 'it_per_s' not in hst or 'it_per_s' not in full:
        return None
    return {
        'it_per_s': hst['it_per_s'] / full['it_per_s'],
        'step_time': hst['step_s_mean'] / full['step_s_mean'],
        'peak_mem': hst['peak_mem_mb'] / full['peak_mem_mb'],
    }
