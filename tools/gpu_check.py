#!/usr/bin/env python
"""Check hst_mm on a CUDA machine in a few minutes: operators, training speed, benchmark.

Three parts, each in its own subprocess with a time limit (a part that fails or times out
is reported and the others still run):

1. ``parity``: mmcv's operators as this project installs them (``mmcv._ext``, source
   ``mmcv_ext/_ext.py``), called through mmcv's public wrappers on the device under test:
   ``roi_align`` forward and backward (aligned True/False, sampling_ratio 0/2, output 7/14;
   float32, and float16 / bfloat16 under ``torch.autocast``), ``nms`` (offset 0/1) and
   ``sigmoid_focal_loss`` (values and gradients). References: the same wrappers on the CPU
   in float64, and for NMS also a greedy float64 NMS written here. On CUDA the device's
   float32 results are also compared with the CPU's float32 results. With ``--device cpu``
   the device under test is the CPU itself, so the check measures float32 / autocast
   against float64 only (the operators' CPU semantics are tested against independent
   references in ``tests/test_mmcv_ext.py``).
2. ``train``: ``model.train_step`` throughput of HST vs full fine-tuning for Mask R-CNN
   (1024x1024, batch 2) and UperNet (512x512, batch 8), each model built from its config
   (trunk weights not loaded) and trained with the config's own optimizer wrapper (AMP:
   float16 for detection, bfloat16 for segmentation) on a synthetic batch. One process per
   model, so ``torch.cuda.max_memory_allocated`` is that model's peak.
3. ``benchmark``: ``tools/analysis/benchmark.py --device cuda --amp bf16 --img-size 1024
   --batch 2`` (the backbones alone), its JSON included in the report.

Usage::

    python tools/gpu_check.py                         # on a CUDA machine, about 5 minutes
    python tools/gpu_check.py --skip benchmark --iters 20
    python tools/gpu_check.py --device cpu --tiny --iters 2 --warmup 1   # smoke run on a CPU

Writes every number to ``--out`` (JSON, default ``work_dirs/gpu_check.json``; rewritten
after each part) and exits 1 if any part failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import itertools
import json
import math
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

# The parent process imports torch only to ask whether CUDA exists; everything that
# allocates device memory runs in the workers (this script re-invoked with --_worker).

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK = ROOT / 'tools' / 'analysis' / 'benchmark.py'
PARTS = ('parity', 'train', 'benchmark')

# task -> (mode -> config), with the full-size input side and batch of each task.
TRAIN_CONFIGS = {
    'detection': {
        'hst': 'configs/hst/mask-rcnn_hst-vit-b_fpn_1x_coco.py',
        'full': 'configs/baselines/mask-rcnn_vit-b-full_fpn_1x_coco.py',
    },
    'segmentation': {
        'hst': 'configs/hst/upernet_hst-vit-b_8xb2-160k_ade20k-512x512.py',
        'full': 'configs/baselines/upernet_vit-b-full_8xb2-160k_ade20k-512x512.py',
    },
}
TRAIN_SIZE = {'detection': (1024, 2), 'segmentation': (512, 8)}  # (image side, batch)
SEG_CLASSES = 150  # ADE20K

# --tiny: a 4-block, 32-wide ViT/16 and a small side network; 128 px images, batch 2.
TINY_TRUNK = dict(
    trunk='vit_tiny_patch16_224', trunk_kwargs=dict(depth=4, embed_dim=32, num_heads=2)
)
TINY_SIDE = dict(embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 3, 4))
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
# The benchmark's tiny trunk is 64 wide (tests/test_benchmark.py explains why).
TINY_BENCH_ARGS = [
    '--trunk',
    'vit_tiny_patch16_224',
    '--trunk-kwargs',
    json.dumps({'depth': 4, 'embed_dim': 64, 'num_heads': 2}),
    '--embed-dims',
    '16',
    '32',
    '48',
    '64',
    '--num-heads',
    '1',
    '2',
    '3',
    '4',
    '--img-size',
    '64',
    '--batch',
    '2',
    '--iters',
    '1',
    '--warmup',
    '1',
]

# Parity tolerances: the largest |result - reference| allowed, relative to max |reference|.
# Low-precision results are rounded once to their dtype (the operators compute in float32),
# so 4 units of that dtype's roundoff (2^-11 float16, 2^-8 bfloat16) leave a margin.
# float32 results carry float32's rounding of the sampling coordinates (RoIAlign: ~5e-6 here)
# and of 1 - sigmoid(x) for large logits (focal loss, as in mmcv's kernel): 10x margin.
PARITY_TOL = {'float32': 5e-5, 'float16': 2e-3, 'bfloat16': 1.6e-2}
# NMS boxes are made so that no pair's IoU lies within this of a tested threshold: kept
# indices must then agree exactly in every precision (no ties for rounding to break).
NMS_IOU_MARGIN = 1e-4
NMS_THRESHOLDS = (0.5, 0.7)

# The project's targets for HST vs full fine-tuning (README "Benchmark"): reported with the
# training rows for information; they do not decide the exit status.
TARGETS = {'step_time': 0.8, 'peak_mem': 0.6}

DEFAULT_BUDGET_S = 420  # the whole default run, so it ends well inside 8 minutes
DEFAULT_TIMEOUT_S = 240  # one subprocess at most
MIN_PART_S = 10  # a subprocess is not started with less time left than this


# ---- command line --------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected an integer >= 1, got {text}')
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'expected an integer >= 0, got {text}')
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f'expected a number > 0, got {text}')
    return value


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description='Check hst_mm on a CUDA machine: mmcv operator parity (CUDA vs CPU), '
        'training throughput of HST vs full fine-tuning (Mask R-CNN, UperNet), '
        'and the backbone benchmark.'
    )
    p.add_argument(
        '--device',
        choices=('cuda', 'cpu'),
        default='cuda',
        help='device under test (default cuda; cpu for a smoke run, with --tiny)',
    )
    p.add_argument(
        '--tiny',
        action='store_true',
        help=f'tiny models for a quick run: {TINY_TRUNK["trunk"]} with '
        f'{TINY_TRUNK["trunk_kwargs"]}, HST {TINY_SIDE}, 32-channel necks '
        f'and heads, {TINY_SIZE} px images, batch {TINY_BATCH}; the '
        f'benchmark on a 64-wide 4-block ViT at 64 px',
    )
    p.add_argument(
        '--iters',
        type=_positive_int,
        default=50,
        help='timed training iterations per model (default 50)',
    )
    p.add_argument(
        '--warmup',
        type=_non_negative_int,
        default=5,
        help='untimed training iterations first (default 5)',
    )
    p.add_argument(
        '--skip',
        nargs='+',
        choices=PARTS,
        default=[],
        action='extend',
        metavar='PART',
        help=f'parts not to run: {", ".join(PARTS)}',
    )
    p.add_argument(
        '--budget',
        type=_positive_float,
        default=DEFAULT_BUDGET_S,
        help=f'seconds for the whole run; no subprocess outlives it (default {DEFAULT_BUDGET_S})',
    )
    p.add_argument(
        '--timeout',
        type=_positive_float,
        default=DEFAULT_TIMEOUT_S,
        help=f'seconds for one subprocess at most (default {DEFAULT_TIMEOUT_S})',
    )
    p.add_argument(
        '--out',
        default='work_dirs/gpu_check.json',
        help='JSON with every number (default work_dirs/gpu_check.json)',
    )
    p.add_argument('--_worker', default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---- small helpers -------------------------------------------------------------------------
def _version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _load_benchmark_module():
    """The benchmark's pieces this check reuses: synthetic batches and memory probes."""
    import types

    from hst_mm.benchmark import cli, measure, workloads

    return types.SimpleNamespace(
        detector_batch=workloads.detector_batch,
        current_rss_mb=measure.current_rss_mb,
        peak_rss_mb=measure.peak_rss_mb,
        parse_args=cli.parse_args,
    )


def _finite_numbers(value) -> bool:
    """Whether every float inside ``value`` (nested dicts / lists) is finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite_numbers(v) for v in value)
    return True


# ---- part 1: operator parity (worker) ------------------------------------------------------
def _diff(test, ref, cpu32=None) -> Dict[str, Optional[float]]:
    """Max |test - ref| (absolute and relative to max |ref|), and max |test - cpu32|."""
    test, ref = test.detach().double().cpu(), ref.detach().double().cpu()
    max_abs = (test - ref).abs().max().item() if ref.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 0.0
    out = {
        'max_abs': max_abs,
        'max_ref': scale,
        'rel': max_abs / scale if scale > 0 else max_abs,
        'max_abs_vs_cpu_float32': None,
    }
    if cpu32 is not None:
        out['max_abs_vs_cpu_float32'] = (
            (test - cpu32.detach().double().cpu()).abs().max().item() if ref.numel() else 0.0
        )
    return out


def _roi_inputs(torch, gen):
    """Features ``(2, 16, 48, 64)`` at stride 4 and rois ``(64, 5)`` in image pixels.

    Boxes from under one feature pixel to 120 px, some crossing the border, to reach the
    adaptive sampling grid, ``aligned=False``'s minimum size and the edge rules.
    """
    feats = torch.randn(2, 16, 48, 64, generator=gen, dtype=torch.float64)
    k = 64
    xy = torch.rand(k, 2, generator=gen, dtype=torch.float64) * torch.tensor([264.0, 200.0]) - 8
    wh = torch.rand(k, 2, generator=gen, dtype=torch.float64) * 118 + 2
    batch_idx = torch.randint(0, 2, (k, 1), generator=gen).double()
    rois = torch.cat([batch_idx, xy, xy + wh], 1)
    return feats, rois


def _run_case(meta: dict, compute: Callable[[], dict]) -> dict:
    """``meta`` plus what ``compute()`` measured; an exception fails this case only."""
    try:
        return {**meta, **compute()}
    except Exception as exc:  # noqa: BLE001  one broken case must not hide the others
        return {**meta, 'error': f'{type(exc).__name__}: {exc}', 'pass': False}


def _value_and_grad_checks(device, dtype, run, value_name: str) -> dict:
    """Compare ``run`` on ``device`` in ``dtype`` (autocast unless float32) with the CPU.

    ``run(device, dtype, autocast) -> (value, grad_input)``. The reference is the CPU in
    float64; on CUDA, float32 results are also compared with the CPU in float32.
    """
    import torch

    cpu = torch.device('cpu')
    low = dtype != torch.float32
    value, grad = run(device, dtype, low)
    ref_value, ref_grad = run(cpu, torch.float64, False)
    cpu_value = cpu_grad = None
    if device.type == 'cuda' and not low:
        cpu_value, cpu_grad = run(cpu, torch.float32, False)
    checks = {
        value_name: _diff(value, ref_value, cpu_value),
        'grad_input': _diff(grad, ref_grad, cpu_grad),
    }
    tol = PARITY_TOL[str(dtype).split('.')[-1]]
    # Results must come back in the caller's dtype (mmcv allocates them so).
    ok = (
        value.dtype == dtype
        and grad.dtype == dtype
        and all(c['rel'] <= tol for c in checks.values())
    )
    return {'checks': checks, 'tol_rel': tol, 'pass': ok}


def _autocast(torch, device, dtype, enabled: bool):
    return (
        torch.autocast(device.type, dtype=dtype)
        if enabled
        else torch.autocast(device.type, enabled=False)
    )


def parity_roi_align(device, torch, ops, gen) -> List[dict]:
    """RoIAlign forward and backward on ``device`` vs the CPU in float64 (24 cases)."""
    feats64, rois64 = _roi_inputs(torch, gen)
    cases = []
    for dtype, aligned, sampling_ratio, out_size in itertools.product(
        (torch.float32, torch.float16, torch.bfloat16), (True, False), (0, 2), (7, 14)
    ):
        # Inputs and output gradient rounded to the dtype under test, for the reference
        # too: the difference then measures the operator, not the rounding of its inputs.
        feats, rois = feats64.to(dtype), rois64.to(dtype)
        grad_out = torch.randn(
            rois.size(0), feats.size(1), out_size, out_size, generator=gen, dtype=torch.float64
        ).to(dtype)
        kwargs = dict(
            output_size=(out_size, out_size),
            spatial_scale=0.25,
            sampling_ratio=sampling_ratio,
            pool_mode='avg',
            aligned=aligned,
        )

        def run(
            dev,
            cast,
            autocast,
            feats=feats,
            rois=rois,
            grad_out=grad_out,
            kwargs=kwargs,
            dtype=dtype,
        ):
            x = feats.detach().to(dev, cast).requires_grad_()
            with _autocast(torch, dev, dtype, autocast):
                out = ops.roi_align(x, rois.to(dev, cast), **kwargs)
            (out.double() * grad_out.to(dev, torch.float64)).sum().backward()
            return out, x.grad

        meta = {
            'op': 'roi_align',
            'dtype': str(dtype).split('.')[-1],
            'autocast': dtype != torch.float32,
            'params': {
                'aligned': aligned,
                'sampling_ratio': sampling_ratio,
                'output_size': out_size,
                'spatial_scale': 0.25,
                'features': list(feats.shape),
                'rois': rois.size(0),
            },
        }
        cases.append(
            _run_case(
                meta,
                lambda run=run, dtype=dtype: _value_and_grad_checks(device, dtype, run, 'output'),
            )
        )
    return cases


def _iou_matrix(boxes, offset: int):
    """Pairwise IoU ``(N, N)`` of float64 boxes ``(N, 4)`` with mmcv's ``offset``."""
    import torch

    wh = (boxes[:, 2:] - boxes[:, :2] + offset).clamp(min=0)
    area = wh[:, 0] * wh[:, 1]
    lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter_wh = (rb - lt + offset).clamp(min=0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    return inter / (area[:, None] + area[None, :] - inter)


def _nms_boxes(torch, gen, n: int = 600):
    """``(M, 4)`` float32 boxes in clusters (many overlaps) and distinct scores ``(M,)``.

    Boxes whose IoU with another box lies within ``NMS_IOU_MARGIN`` of a tested threshold,
    for either offset, are dropped, so float32 and float64 arithmetic keep the same boxes.
    """
    centres = torch.rand(12, 2, generator=gen, dtype=torch.float64) * 400 + 50
    pick = torch.randint(0, 12, (n,), generator=gen)
    xy = centres[pick] + torch.randn(n, 2, generator=gen, dtype=torch.float64) * 12
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 60 + 20
    boxes = torch.cat([xy, xy + wh], 1).float().double()  # exactly float32 values
    keep = torch.ones(n, dtype=torch.bool)
    for offset in (0, 1):
        iou = _iou_matrix(boxes, offset)
        iou.fill_diagonal_(-1.0)
        for thr in NMS_THRESHOLDS:
            near = (iou - thr).abs() < NMS_IOU_MARGIN
            for i, j in near.nonzero().tolist():
                if keep[i] and keep[j]:
                    keep[max(i, j)] = False
    boxes = boxes[keep].float()
    scores = (torch.randperm(boxes.size(0), generator=gen).float() + 1) / (boxes.size(0) + 1)
    return boxes, scores


def reference_nms(boxes, scores, iou_threshold: float, offset: int) -> List[int]:
    """Greedy NMS in float64: highest score first, drop boxes with IoU > threshold."""
    import torch

    iou = _iou_matrix(boxes.double(), offset)
    order = torch.argsort(scores.double(), descending=True).tolist()
    removed = torch.zeros(len(order), dtype=torch.bool)
    kept = []
    for i in order:
        if removed[i]:
            continue
        kept.append(i)
        removed |= iou[i] > iou_threshold
    return kept


def parity_nms(device, torch, ops, gen) -> List[dict]:
    """NMS on ``device`` vs the CPU and the float64 greedy reference: same kept indices."""
    boxes, scores = _nms_boxes(torch, gen)
    cases = []
    for offset, thr in itertools.product((0, 1), NMS_THRESHOLDS):

        def compare(offset=offset, thr=thr) -> dict:
            dets, inds = ops.nms(boxes.to(device), scores.to(device), thr, offset=offset)
            cpu_inds = ops.nms(boxes, scores, thr, offset=offset)[1].tolist()
            ref = reference_nms(boxes, scores, thr, offset)
            inds = inds.cpu().tolist()
            # dets: the kept boxes and their scores, exactly.
            dets_ok = torch.equal(dets.cpu(), torch.cat([boxes[inds], scores[inds, None]], 1))
            return {
                'kept': len(inds),
                'kept_cpu': len(cpu_inds),
                'kept_reference': len(ref),
                'same_as_cpu': inds == cpu_inds,
                'same_as_reference': inds == ref,
                'dets_match_boxes': dets_ok,
                'pass': inds == cpu_inds == ref and dets_ok,
            }

        meta = {
            'op': 'nms',
            'dtype': 'float32',
            'autocast': False,
            'params': {'offset': offset, 'iou_threshold': thr, 'boxes': boxes.size(0)},
        }
        cases.append(_run_case(meta, compare))
    return cases


def parity_focal_loss(device, torch, ops, gen) -> List[dict]:
    """sigmoid_focal_loss values and gradients on ``device`` vs CPU float64 (12 cases)."""
    n, c = 256, 80
    # Logits about -9 to 7: beyond that, float32's 1 - sigmoid(x) (mmcv's formula) loses
    # more digits than the tolerance allows, on every device alike.
    logits64 = torch.randn(n, c, generator=gen, dtype=torch.float64) * 2 - 1
    # Background (= c) included without class weights; mmcv's kernel needs targets < c
    # when weighted.
    targets = {
        'none': torch.randint(0, c + 1, (n,), generator=gen),
        'class': torch.randint(0, c, (n,), generator=gen),
    }
    class_weight = torch.rand(c, generator=gen, dtype=torch.float64) + 0.5
    cases = []
    for dtype, weighting, reduction in itertools.product(
        (torch.float32, torch.float16, torch.bfloat16), ('none', 'class'), ('none', 'mean')
    ):
        logits, weight = logits64.to(dtype), class_weight.to(dtype)  # rounded, as above
        grad_seed = (
            torch.randn(n, c, generator=gen, dtype=torch.float64).to(dtype)
            if reduction == 'none'
            else torch.ones((), dtype=dtype)
        )

        def run(
            dev,
            cast,
            autocast,
            logits=logits,
            weight=weight,
            grad_seed=grad_seed,
            target=targets[weighting],
            weighting=weighting,
            reduction=reduction,
            dtype=dtype,
        ):
            x = logits.detach().to(dev, cast).requires_grad_()
            w = weight.to(dev, cast) if weighting == 'class' else None
            with _autocast(torch, dev, dtype, autocast):
                loss = ops.sigmoid_focal_loss(x, target.to(dev), 2.0, 0.25, w, reduction)
            (loss.double() * grad_seed.to(dev, torch.float64)).sum().backward()
            return loss, x.grad

        meta = {
            'op': 'sigmoid_focal_loss',
            'dtype': str(dtype).split('.')[-1],
            'autocast': dtype != torch.float32,
            'params': {
                'gamma': 2.0,
                'alpha': 0.25,
                'weight': weighting,
                'reduction': reduction,
                'logits': [n, c],
            },
        }
        cases.append(
            _run_case(
                meta,
                lambda run=run, dtype=dtype: _value_and_grad_checks(device, dtype, run, 'loss'),
            )
        )
    return cases


def parity_worker(args: argparse.Namespace) -> dict:
    """All parity cases on ``args.device``; returns the part's JSON."""
    import mmcv
    import mmcv._ext as ext
    import mmcv.ops as ops
    import torch

    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    cases = (
        parity_roi_align(device, torch, ops, gen)
        + parity_nms(device, torch, ops, gen)
        + parity_focal_loss(device, torch, ops, gen)
    )
    if device.type == 'cuda':
        reference = (
            'CPU float64 through the same mmcv wrappers (NMS: also a greedy float64 '
            'NMS); float32 CUDA results also compared with CPU float32'
        )
    else:
        reference = (
            'no CUDA: the CPU in float32 / autocast vs the CPU in float64 through '
            'the same mmcv wrappers (NMS: also a greedy float64 NMS)'
        )
    provider = (
        'hst_mm (mmcv_ext/_ext.py: torch + torchvision)'
        if hasattr(ext, 'OperatorNotProvided')
        else "mmcv's compiled extension"
    )
    return {
        'device': str(device),
        'reference': reference,
        'mmcv': mmcv.__version__,
        'mmcv_ext': provider,
        'mmcv_ext_file': getattr(ext, '__file__', None),
        'tolerances_rel': PARITY_TOL,
        'nms_iou_margin': NMS_IOU_MARGIN,
        'cases': cases,
        'passed': sum(c['pass'] for c in cases),
        'total': len(cases),
    }


# ---- part 2: training throughput (worker) --------------------------------------------------
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
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import hst_mm  # noqa: F401  (registers HST and ViTPyramid)
    from hst_mm.engine.precision import float32_without_gpu
    from hst_mm.registration import fit_heads_to_backbone

    cfg = Config.fromfile(str(ROOT / TRAIN_CONFIGS[task][mode]))
    init_default_scope(cfg.default_scope)
    backbone = cfg.model.backbone
    backbone.pretrained = None
    if tiny:
        backbone.update(TINY_TRUNK)
        if backbone.type == 'HST':
            backbone.update(TINY_SIDE)
        fit_heads_to_backbone(cfg.model)
        cfg.merge_from_dict(TINY_HEADS[task])
    if task == 'segmentation':
        side = TINY_SIZE if tiny else TRAIN_SIZE[task][0]
        cfg.model.data_preprocessor.size = (side, side)
    model = MODELS.build(cfg.model)
    model.init_weights()
    note = float32_without_gpu(cfg.optim_wrapper, gpu=gpu)
    return model, cfg.optim_wrapper, cfg, note


def segmentation_batch(batch: int, size: int, seed: int = 0) -> dict:
    """A synthetic ADE20K-like batch: uint8 noise images ``(3, S, S)`` and random labels
    ``(1, S, S)`` in ``[0, 150)``."""
    import numpy as np
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    rng = np.random.default_rng(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.from_numpy(rng.integers(0, 256, (3, size, size), dtype=np.uint8)))
        sample = SegDataSample(
            metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size))
        )
        sample.gt_sem_seg = PixelData(
            data=torch.from_numpy(rng.integers(0, SEG_CLASSES, (1, size, size)))
        )
        samples.append(sample)
    return {'inputs': inputs, 'data_samples': samples}


def train_worker(args: argparse.Namespace, task: str, mode: str) -> dict:
    """Time ``args.iters`` ``train_step`` calls of one model after ``args.warmup``."""
    import torch
    from mmengine.optim import build_optim_wrapper

    bench = _load_benchmark_module()
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
    data = (
        bench.detector_batch(batch, side)
        if task == 'detection'
        else segmentation_batch(batch, side)
    )
    build_s = time.perf_counter() - start
    if cuda:
        torch.cuda.synchronize(device)
        model_mem_mb = torch.cuda.memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    else:
        model_mem_mb = bench.current_rss_mb()

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
        'peak_mem_mb': (
            torch.cuda.max_memory_allocated(device) / 2**20 if cuda else bench.peak_rss_mb()
        ),
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


# ---- part 3 and the parent: subprocesses, report, JSON -------------------------------------
class Deadline:
    """The run's time budget: how long the next subprocess may take."""

    def __init__(self, budget_s: float, cap_s: float):
        self.end = time.monotonic() + budget_s
        self.cap_s = cap_s

    def limit(self) -> float:
        """Seconds the next subprocess gets: the cap, or what is left of the budget."""
        return min(self.cap_s, self.end - time.monotonic())


def run_subprocess(cmd: List[str], timeout_s: float) -> dict:
    """Run ``cmd`` in its own process group; kill the whole group at ``timeout_s``.

    Returns ``{'rc', 'stdout', 'stderr', 'elapsed_s', 'timed_out'}``. The group kill also
    ends the benchmark's own workers, which would otherwise keep the GPU busy.
    """
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stdout, stderr = proc.communicate()
    return {
        'rc': proc.returncode,
        'stdout': stdout,
        'stderr': stderr,
        'elapsed_s': time.perf_counter() - start,
        'timed_out': timed_out,
    }


def _tail(text: str, lines: int = 15) -> str:
    return '\n'.join(text.strip().splitlines()[-lines:])


def run_worker(task: str, args: argparse.Namespace, deadline: Deadline) -> dict:
    """This script as ``--_worker task``; its last stdout line is its JSON result.

    Returns ``{'result': ...}`` or ``{'error': ...}``, with ``elapsed_s``.
    """
    limit = deadline.limit()
    if limit < MIN_PART_S:
        return {
            'error': f'not run: the time budget (--budget {args.budget:g} s) is spent',
            'elapsed_s': 0.0,
        }
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        '--device',
        args.device,
        '--iters',
        str(args.iters),
        '--warmup',
        str(args.warmup),
        *(['--tiny'] if args.tiny else []),
        '--_worker',
        task,
    ]
    res = run_subprocess(cmd, limit)
    lines = res['stdout'].strip().splitlines()
    if res['timed_out']:
        error = f'timed out after {limit:.0f} s:\n{_tail(res["stdout"] + res["stderr"])}'
    elif res['rc'] != 0 or not lines:
        error = f'exit status {res["rc"]}:\n{_tail(res["stdout"] + res["stderr"])}'
    else:
        try:
            return {'result': json.loads(lines[-1]), 'elapsed_s': res['elapsed_s']}
        except json.JSONDecodeError:
            error = f'no JSON result line:\n{_tail(res["stdout"] + res["stderr"])}'
    return {'error': error, 'elapsed_s': res['elapsed_s']}


def log(message: str) -> None:
    print(f'[gpu_check] {message}', file=sys.stderr, flush=True)


def run_parity(args: argparse.Namespace, deadline: Deadline) -> dict:
    """Part 1 in a worker; the part passes when every case does."""
    out = run_worker('parity', args, deadline)
    if 'error' in out:
        return {'status': 'fail', 'error': out['error'], 'elapsed_s': out['elapsed_s']}
    res = out['result']
    ok = res['passed'] == res['total'] and res['total'] > 0
    return {'status': 'pass' if ok else 'fail', 'elapsed_s': out['elapsed_s'], **res}


def train_ratios(rows: Dict[str, dict], tiny: bool) -> Optional[dict]:
    """HST / full fine-tuning ratios of one task's two rows (None if either failed).

    The targets are stated for ViT-B: with ``tiny`` models they are not judged.
    """
    hst, full = rows.get('hst', {}), rows.get('full', {})
    if 'it_per_s' not in hst or 'it_per_s' not in full:
        return None
    step = hst['step_s_mean'] / full['step_s_mean']
    mem = hst['peak_mem_mb'] / full['peak_mem_mb']
    return {
        'it_per_s': hst['it_per_s'] / full['it_per_s'],
        'step_time': step,
        'peak_mem': mem,
        'targets': {
            'step_time': f'<= {TARGETS["step_time"]}',
            'peak_mem': f'<= {TARGETS["peak_mem"]}',
        },
        'met': None
        if tiny
        else {'step_time': step <= TARGETS['step_time'], 'peak_mem': mem <= TARGETS['peak_mem']},
    }


def run_train(args: argparse.Namespace, deadline: Deadline) -> dict:
    """Part 2: one worker per (task, mode); fails if any row fails or has a non-finite
    loss."""
    tasks, failed = {}, []
    for task, modes in TRAIN_CONFIGS.items():
        rows = {}
        for mode in modes:
            log(f'train {task} {mode} ...')
            out = run_worker(f'train:{task}:{mode}', args, deadline)
            if 'error' in out:
                rows[mode] = {'error': out['error'], 'config': TRAIN_CONFIGS[task][mode]}
                failed.append(f'{task}/{mode}')
                log(f'train {task} {mode} FAILED after {out["elapsed_s"]:.0f} s')
                continue
            row = dict(out['result'], process_s=out['elapsed_s'])
            if not row['loss_finite']:
                row['error'] = 'non-finite loss during the timed steps'
                failed.append(f'{task}/{mode}')
            rows[mode] = row
            log(
                f'train {task} {mode}: {row["it_per_s"]:.3g} it/s, peak '
                f'{row["peak_mem_mb"]:.0f} MB ({out["elapsed_s"]:.0f} s)'
            )
        tasks[task] = {'rows': rows, 'ratios_hst_over_full': train_ratios(rows, args.tiny)}
    return {'status': 'fail' if failed else 'pass', 'failed': failed, 'tasks': tasks}


def benchmark_command(args: argparse.Namespace, json_path: Path) -> List[str]:
    """``tools/analysis/benchmark.py`` with this run's device (bf16 autocast on CUDA)."""
    cmd = [sys.executable, str(BENCHMARK), '--device', args.device, '--json', str(json_path)]
    if args.tiny:
        return cmd + TINY_BENCH_ARGS
    return cmd + [
        '--amp',
        'bf16' if args.device == 'cuda' else 'off',
        '--img-size',
        '1024',
        '--batch',
        '2',
    ]


def run_benchmark(args: argparse.Namespace, deadline: Deadline) -> dict:
    """Part 3: the backbone benchmark as a subprocess; its JSON and its markdown report."""
    limit = deadline.limit()
    if limit < MIN_PART_S:
        return {
            'status': 'fail',
            'error': f'not run: the time budget (--budget {args.budget:g} s) is spent',
        }
    with tempfile.TemporaryDirectory(prefix='gpu_check_bench_') as tmp:
        json_path = Path(tmp) / 'benchmark.json'
        cmd = benchmark_command(args, json_path)
        log(f'benchmark (at most {limit:.0f} s) ...')
        res = run_subprocess(cmd, limit)
        result = json.loads(json_path.read_text()) if json_path.exists() else None
    part = {
        'command': shlex.join(cmd[1:]).replace(str(ROOT) + os.sep, ''),
        'elapsed_s': res['elapsed_s'],
        'returncode': res['rc'],
        'report': res['stdout'].strip(),
        'result': result,
    }
    if res['timed_out']:
        part['error'] = f'timed out after {limit:.0f} s; progress:\n{_tail(res["stderr"])}'
    elif res['rc'] != 0 or result is None:
        part['error'] = f'exit status {res["rc"]}:\n{_tail(res["stdout"] + res["stderr"])}'
    part['status'] = 'fail' if 'error' in part else 'pass'
    return part


def environment(args: argparse.Namespace) -> dict:
    """Versions and the device, for the JSON's ``meta``."""
    import torch

    cuda = args.device == 'cuda'
    return {
        'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'argv': sys.argv[1:],
        'device': args.device,
        'device_name': torch.cuda.get_device_name(0)
        if cuda
        else platform.processor() or platform.machine(),
        'cuda': torch.version.cuda,
        'python': platform.python_version(),
        'cpu_count': os.cpu_count(),
        'versions': {
            d: _version(d)
            for d in (
                'torch',
                'torchvision',
                'timm',
                'numpy',
                'mmengine',
                'mmcv',
                'mmcv-lite',
                'mmdet',
                'mmsegmentation',
                'hst_mm',
            )
        },
        'tiny': args.tiny,
        'iters': args.iters,
        'warmup': args.warmup,
        'budget_s': args.budget,
        'timeout_s': args.timeout,
    }


# ---- the readable report -------------------------------------------------------------------
def _fmt_case(case: dict) -> str:
    p = case['params']
    if case['op'] == 'roi_align':
        what = f'aligned={p["aligned"]!s:<5} sr={p["sampling_ratio"]} out={p["output_size"]}'
    elif case['op'] == 'nms':
        what = f'offset={p["offset"]} iou={p["iou_threshold"]}'
    else:
        what = f'weight={p["weight"]:<5} reduction={p["reduction"]}'
    head = f'  {case["op"]:<18} {what:<30} {case["dtype"]:<8}'
    if 'error' in case:
        return f'{head} FAIL: {case["error"]}'
    if case['op'] == 'nms':
        return (
            f'{head} kept {case["kept"]} (cpu {case["kept_cpu"]}, reference '
            f'{case["kept_reference"]}){"":14} {"ok" if case["pass"] else "FAIL"}'
        )
    a, b = case['checks'].values()
    return (
        f'{head} out {a["rel"]:.1e}  grad {b["rel"]:.1e}  tol {case["tol_rel"]:.2g}  '
        f'{"ok" if case["pass"] else "FAIL"}'
    )


def format_report(report: dict) -> str:
    """The whole run as plain text."""
    meta = report['meta']
    lines = [
        f'hst_mm GPU check: {meta["device"]} ({meta["device_name"]}), torch '
        f'{meta["versions"]["torch"]} (CUDA {meta["cuda"]}), Python {meta["python"]}'
        f'{", tiny models" if meta["tiny"] else ""}',
        '',
    ]
    parity = report.get('parity', {'status': 'skipped'})
    lines.append(f'[1/3] operator parity: {parity["status"].upper()}')
    if 'cases' in parity:
        lines.append(
            f'  {parity["passed"]}/{parity["total"]} cases pass; mmcv '
            f'{parity["mmcv"]}, operators from {parity["mmcv_ext"]}'
        )
        lines.append(f'  reference: {parity["reference"]}')
        lines.append('  errors are max |result - reference| / max |reference|')
        lines += [_fmt_case(c) for c in parity['cases']]
    if 'error' in parity:
        lines.append('  ' + parity['error'].replace('\n', '\n  '))
    lines.append('')

    train = report.get('train', {'status': 'skipped'})
    lines.append(f'[2/3] training throughput, HST vs full fine-tuning: {train["status"].upper()}')
    for task, block in train.get('tasks', {}).items():
        lines.append(f'  {task}:')
        for mode, row in block['rows'].items():
            if 'it_per_s' not in row:
                lines.append(f'    {mode:<5} FAILED: {row["error"]}'.replace('\n', '\n      '))
                continue
            amp = row['amp_dtype'] or 'float32'
            lines.append(
                f'    {mode:<5} {row["it_per_s"]:7.3f} it/s  {row["step_s_median"] * 1e3:8.1f} '
                f'ms/step  peak {row["peak_mem_mb"]:8.0f} MB  trainable '
                f'{row["trainable_params"] / 1e6:6.2f}M / {row["total_params"] / 1e6:6.2f}M  '
                f'{row["img_size"]}px x{row["batch"]}  {row["optim_wrapper"]} ({amp})'
                f'{"  " + row["error"] if "error" in row else ""}'
            )
        r = block['ratios_hst_over_full']
        if r:

            def judged(key: str) -> str:
                if r['met'] is None:
                    return ''
                return f' (target {r["targets"][key]}: {"met" if r["met"][key] else "not met"})'

            lines.append(
                f'    HST / full: it/s {r["it_per_s"]:.3f}, step time '
                f'{r["step_time"]:.3f}{judged("step_time")}, peak memory '
                f'{r["peak_mem"]:.3f}{judged("peak_mem")}'
            )
    lines.append('')

    bench = report.get('benchmark', {'status': 'skipped'})
    lines.append(f'[3/3] backbone benchmark: {bench["status"].upper()}')
    if 'command' in bench:
        lines.append(f'  python {bench["command"]}  ({bench["elapsed_s"]:.0f} s)')
    if bench.get('report'):
        lines += ['  ' + line for line in bench['report'].splitlines()]
    if 'error' in bench:
        lines.append('  ' + bench['error'].replace('\n', '\n  '))
    lines.append('')
    lines.append(
        f'overall: {"PASS" if report["passed"] else "FAIL"} in '
        f'{report["elapsed_s"]:.0f} s; failed parts: '
        f'{", ".join(report["failed_parts"]) or "none"}'
    )
    return '\n'.join(lines)


def write_json(report: dict, path: Path) -> None:
    """Write atomically, so a reader (or a kill) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    from hst_mm.atomic_write import atomic_write_text  # as this script imports hst_mm: late

    atomic_write_text(path, json.dumps(report, indent=2))


def run_all(args: argparse.Namespace) -> int:
    """Run the parts not skipped, write the JSON after each, print the report."""
    import torch

    if args.device == 'cuda' and not torch.cuda.is_available():
        print(
            f'gpu_check: --device cuda, but torch {torch.__version__} sees no CUDA device '
            f'(built with CUDA {torch.version.cuda}). Run on a CUDA machine, or use '
            f'--device cpu --tiny for a smoke run.',
            file=sys.stderr,
        )
        return 2
    start = time.perf_counter()
    deadline = Deadline(args.budget, args.timeout)
    out = Path(args.out)
    if not out.is_absolute():
        out = Path.cwd() / out
    report = {'meta': environment(args), 'skipped': sorted(set(args.skip))}
    runners = {'parity': run_parity, 'train': run_train, 'benchmark': run_benchmark}
    for part in PARTS:
        if part in args.skip:
            continue
        log(f'{part} ...')
        report[part] = runners[part](args, deadline)
        log(f'{part}: {report[part]["status"]}')
        _finish(report, start)
        write_json(report, out)
    print(format_report(report))
    print(f'\nJSON: {out}')
    return 0 if report['passed'] else 1


def _finish(report: dict, start: float) -> None:
    """Overall status fields (every run part passed, every number finite)."""
    failed = [p for p in PARTS if p in report and report[p]['status'] != 'pass']
    if not _finite_numbers({p: report[p] for p in PARTS if p in report}):
        failed.append('non-finite numbers')
    report.update(failed_parts=failed, passed=not failed, elapsed_s=time.perf_counter() - start)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args._worker:
        if args._worker == 'parity':
            result = parity_worker(args)
        elif args._worker.startswith('train:'):
            _, task, mode = args._worker.split(':')
            if mode not in TRAIN_CONFIGS.get(task, {}):
                raise SystemExit(f'unknown training worker {args._worker!r}')
            result = train_worker(args, task, mode)
        else:
            raise SystemExit(f'unknown worker {args._worker!r}')
        # Anything printed before (timm, mmengine) is ignored: the parent reads the last line.
        print(json.dumps(result), flush=True)
        return 0
    return run_all(args)


if __name__ == '__main__':
    sys.exit(main())
