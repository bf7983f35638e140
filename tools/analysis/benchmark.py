#!/usr/bin/env python
"""Side-by-side cost of HST, full fine-tuning and the frozen-trunk probe.

Two models (``--model``):

* ``backbone`` (default): the backbones alone; needs only torch and timm;
* ``detector``: the whole Mask R-CNN of each mode's config (``DETECTOR_CONFIGS``: backbone,
  FPN, RPN and RoI heads), built through mmdet and fed a synthetic COCO-like batch (random
  boxes and masks); needs the OpenMMLab stack.

Modes (same timm ViT trunk in all of them):

* ``hst``           ``HSTBackbone``: frozen trunk + meta tokens + T-Bridge + side network;
* ``full_ft``       ``ViTSimplePyramid(frozen=False)``: the whole ViT is trained;
* ``frozen_probe``  ``ViTSimplePyramid(frozen=True)``: only the simple pyramid is trained;
* ``hst_cp``, ``full_ft_cp``: the same with activation checkpointing (``with_cp=True``:
  HST's trunk blocks and Side Blocks, the ViT's blocks);
* ``hst_cp_side``: HST checkpointing its Side Blocks only (``with_cp='side'``).
  (``--cp on|both``; the probe has no checkpointed row: no gradient flows through its trunk).

Per mode: trainable / total parameters, GFLOPs of a batch-1 forward, inference images/s,
seconds per training step (forward + loss + backward + AdamW step) and memory. In
detector mode the loss is the detector's own (RPN + box + mask losses on the synthetic
targets), the optimizer is the config's (AdamW with its parameter-wise settings) and
inference is ``test_step`` (with NMS and mask pasting); the trunk keeps its random
initialisation, so no weights need to be downloaded. Each mode
runs in its own process (this script re-invoked with a hidden ``--_worker MODE``), so the
memory peaks are independent of each other and of the order of the modes.

Usage::

    python tools/analysis/benchmark.py --trunk vit_base_patch16_224 --img-size 512 \\
        --batch 2 --json bench.json

    # the whole Mask R-CNN of each mode
    python tools/analysis/benchmark.py --model detector --img-size 512 --batch 2

    # a tiny trunk, for a smoke test on the CPU
    python tools/analysis/benchmark.py --trunk vit_tiny_patch16_224 \\
        --trunk-kwargs '{"depth": 4, "embed_dim": 64, "num_heads": 2}' \\
        --embed-dims 16 32 48 64 --num-heads 1 2 3 4 --img-size 64 --device cpu

The JSON holds one object per mode plus ``meta`` (device, versions, threads, load average,
date, arguments and the ratios below); stdout gets a markdown table and the ratios the
project's targets are stated in (HST train step <= 0.8x and peak memory <= 0.6x of full
fine-tuning, inference >= 0.95x of the frozen-trunk probe).

On a shared CPU machine, check each row's ``cpu_share`` (the fraction of its threads' CPU
time the mode actually got while timed; 1.0 = uncontended): timings of rows with
different shares are not comparable.

Backbone mode needs only torch and timm (``hst_mm.models`` is loaded without
``hst_mm/__init__`` where mmengine is missing).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
import types
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

# Note: the parent process deliberately does not import torch (see ``peak_rss_mb``); torch
# is imported inside the worker functions only.

ROOT = Path(__file__).resolve().parents[2]

BASE_MODES = ('hst', 'full_ft', 'frozen_probe')
# Detector mode: each base mode's Mask R-CNN config (relative to the repository root).
DETECTOR_CONFIGS = {
    'hst': 'configs/hst/mask-rcnn_hst-vit-b_fpn_1x_coco.py',
    'full_ft': 'configs/baselines/mask-rcnn_vit-b-full_fpn_1x_coco.py',
    'frozen_probe': 'configs/baselines/mask-rcnn_vit-b-frozen_fpn_1x_coco.py',
}
# Each mode's checkpointed rows, and the backbone's with_cp value in every row.
CP_MODES = {'hst': ('hst_cp', 'hst_cp_side'), 'full_ft': ('full_ft_cp',)}
WITH_CP = {'hst_cp': True, 'hst_cp_side': 'side', 'full_ft_cp': True}
METRICS = ('trainable_params', 'total_params', 'gflops', 'infer_img_per_s', 'train_step_s',
           'peak_mem_mb', 'model_mem_mb')

# (metric, numerator mode, denominator mode, comparison, target). Pairs whose rows were not
# run are skipped. 'train_increment_mb' is peak_mem_mb - model_mem_mb (derived).
RATIOS = (
    ('train_step_s', 'hst', 'full_ft', '<=', 0.8),
    ('peak_mem_mb', 'hst', 'full_ft', '<=', 0.6),
    ('train_increment_mb', 'hst', 'full_ft', '<=', 0.6),
    ('train_step_s', 'hst_cp', 'full_ft_cp', '<=', 0.8),
    ('peak_mem_mb', 'hst_cp', 'full_ft_cp', '<=', 0.6),
    ('train_increment_mb', 'hst_cp', 'full_ft_cp', '<=', 0.6),
    ('train_step_s', 'hst_cp', 'full_ft', '<=', 0.8),
    ('peak_mem_mb', 'hst_cp', 'full_ft', '<=', 0.6),
    ('train_increment_mb', 'hst_cp', 'full_ft', '<=', 0.6),
    ('train_step_s', 'hst_cp_side', 'full_ft', '<=', 0.8),
    ('peak_mem_mb', 'hst_cp_side', 'full_ft', '<=', 0.6),
    ('train_increment_mb', 'hst_cp_side', 'full_ft', '<=', 0.6),
    ('infer_img_per_s', 'hst', 'frozen_probe', '>=', 0.95),
)


# ---- command line ------------------------------------------------------------------------
def _json_dict(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f'expected a JSON object, got {text!r}')
    return value


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


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description='Parameters, FLOPs, speed and memory of HST vs. full fine-tuning vs. '
                    'the frozen-trunk probe (backbones alone, or whole Mask R-CNNs).')
    p.add_argument('--model', choices=('backbone', 'detector'), default='backbone',
                   help='backbone: the backbones alone (torch + timm only); detector: the '
                        'whole Mask R-CNN of each mode (needs mmdet)')
    p.add_argument('--trunk', default='vit_base_patch16_224', help='timm ViT name')
    p.add_argument('--trunk-kwargs', type=_json_dict, default={},
                   help='extra timm.create_model arguments as JSON, e.g. \'{"depth": 4}\'')
    p.add_argument('--embed-dims', type=_positive_int, nargs='+', default=[64, 128, 256, 384],
                   help='HST side-network width per stage')
    p.add_argument('--num-heads', type=_positive_int, nargs='+', default=[2, 4, 8, 12],
                   help='HST cross-attention heads per stage')
    p.add_argument('--img-size', type=_positive_int, default=512, help='square input side (px)')
    p.add_argument('--batch', type=_positive_int, default=2,
                   help='batch size of the speed and memory runs')
    p.add_argument('--iters', type=_positive_int, default=5, help='timed iterations')
    p.add_argument('--warmup', type=_non_negative_int, default=2, help='untimed iterations first')
    p.add_argument('--modes', nargs='+', choices=BASE_MODES, default=list(BASE_MODES),
                   help='which modes to run')
    p.add_argument('--cp', choices=('off', 'on', 'both'), default='both',
                   help='activation checkpointing: off, on (the checkpointed rows hst_cp, '
                        'hst_cp_side and full_ft_cp replace hst and full_ft), or both')
    p.add_argument('--device', choices=('cpu', 'cuda'), default=None,
                   help='default: cuda if available')
    p.add_argument('--amp', choices=('off', 'bf16'), default='off',
                   help='autocast (bf16) for the timed forward passes (meant for cuda)')
    p.add_argument('--threads', type=_positive_int, default=None,
                   help='torch.set_num_threads in every mode (default: torch\'s own)')
    p.add_argument('--json', default=None, help='write the results here')
    p.add_argument('--_worker', default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if len(args.embed_dims) != len(args.num_heads):
        p.error(f'--embed-dims {args.embed_dims} and --num-heads {args.num_heads} need one '
                f'entry per stage each')
    return args


def modes_to_run(args: argparse.Namespace) -> List[str]:
    """The rows, in table order: each requested mode, then its checkpointed rows if asked
    for."""
    rows = []
    for mode in args.modes:
        if args.cp != 'on' or mode not in CP_MODES:
            rows.append(mode)
        if args.cp != 'off' and mode in CP_MODES:
            rows.extend(CP_MODES[mode])
    return rows


# ---- memory of this process --------------------------------------------------------------
def _proc_status_mb(field: str) -> Optional[float]:
    """A ``kB`` field of /proc/self/status (Linux) in MB, or None elsewhere."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def current_rss_mb() -> float:
    """Resident set size now, in MB (falls back to the peak where /proc is missing)."""
    rss = _proc_status_mb('VmRSS')
    return rss if rss is not None else peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MB.

    On Linux this is ``VmHWM``, not ``getrusage().ru_maxrss``: the kernel carries the
    parent's high-water mark over into ``ru_maxrss`` across fork + exec, so a worker
    started from a large process (pytest with torch loaded) would report at least the
    parent's size. Elsewhere ``ru_maxrss`` (KB on Linux, bytes on macOS).
    """
    hwm = _proc_status_mb('VmHWM')
    if hwm is not None:
        return hwm
    import resource
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == 'darwin' else maxrss / 1024


# ---- one mode, inside a worker process ---------------------------------------------------
def import_models() -> types.ModuleType:
    """``hst_mm.models``, also where its parent package cannot be imported.

    ``hst_mm/__init__`` registers the OpenMMLab wrappers and so needs mmengine, while
    ``hst_mm.models`` needs only torch and timm: if the normal import fails, an empty
    stand-in parent package lets ``hst_mm.models`` load without running ``__init__``.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module('hst_mm.models')
    except ImportError:
        pass
    for name in [n for n in sys.modules if n == 'hst_mm' or n.startswith('hst_mm.')]:
        del sys.modules[name]
    package = types.ModuleType('hst_mm')
    package.__path__ = [str(ROOT / 'hst_mm')]
    sys.modules['hst_mm'] = package
    return importlib.import_module('hst_mm.models')


def base_mode(mode: str) -> str:
    """``hst_cp_side`` -> ``hst``: the mode a checkpointed row belongs to."""
    return mode.split('_cp')[0]


def build_model(mode: str, args: argparse.Namespace):
    """The backbone of ``mode`` (``hst``, ``full_ft``, ``frozen_probe``, ``*_cp*``)."""
    models = import_models()
    base = base_mode(mode)
    common = dict(trunk=args.trunk, trunk_kwargs=args.trunk_kwargs,
                  with_cp=WITH_CP.get(mode, False))
    if base == 'hst':
        return models.HSTBackbone(embed_dims=args.embed_dims, num_heads=args.num_heads,
                                  **common)
    return models.ViTSimplePyramid(frozen=base == 'frozen_probe', **common)


def count_params(model) -> Dict[str, int]:
    return {'trainable_params': sum(p.numel() for p in model.parameters() if p.requires_grad),
            'total_params': sum(p.numel() for p in model.parameters())}


def _timed(fn: Callable[[], None], warmup: int, iters: int, sync: Callable[[], None]
           ) -> List[float]:
    """Seconds per call of ``fn`` over ``iters`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


class Workload:
    """What ``measure_mode`` times for one mode: a model and three callables.

    ``flops()`` runs one batch-1 forward (counted by the caller), ``infer()`` one inference
    batch, ``train_step()`` forward + loss + backward + optimizer step on one batch.
    """

    def __init__(self, model, flops: Callable[[], None], infer: Callable[[], None],
                 train_step: Callable[[], None]) -> None:
        self.model, self.flops, self.infer, self.train_step = model, flops, infer, train_step


def backbone_workload(mode: str, args: argparse.Namespace, device, amp) -> Workload:
    """The backbone alone; the loss is the sum of every output level's mean."""
    import torch

    model = build_model(mode, args).to(device)
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device)  # (B, 3, S, S)
    x1 = torch.randn(1, 3, args.img_size, args.img_size, device=device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def infer() -> None:
        with torch.inference_mode(), amp():
            model(x)

    def train_step() -> None:
        with amp():
            outs = model(x)
        loss = sum(o.float().mean() for o in outs)     # touches every output level
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return Workload(model, lambda: model(x1), infer, train_step)


def build_detector(mode: str, args: argparse.Namespace):
    """``mode``'s Mask R-CNN from its config, with ``--trunk`` and no pretrained weights.

    Returns (model, cfg). The neck's ``in_channels`` follow the backbone actually built
    (HST: ``--embed-dims``; the simple pyramid: the trunk's width), so any trunk works.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import hst_mm  # noqa: F401  (registers HST and ViTPyramid)

    cfg = Config.fromfile(str(ROOT / DETECTOR_CONFIGS[base_mode(mode)]))
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    backbone = cfg.model.backbone
    backbone.update(trunk=args.trunk, trunk_kwargs=args.trunk_kwargs, pretrained=None,
                    with_cp=WITH_CP.get(mode, False))
    if backbone.type == 'HST':
        backbone.update(embed_dims=tuple(args.embed_dims), num_heads=tuple(args.num_heads))
        cfg.model.neck.in_channels = list(args.embed_dims)
    else:
        # The trunk's width, from a parameter-free (meta device) build: building a real
        # ViT here would leave its freed memory in this worker's RSS.
        import timm
        import torch
        with torch.device('meta'):
            width = timm.create_model(args.trunk, pretrained=False,
                                      **args.trunk_kwargs).embed_dim
        cfg.model.neck.in_channels = [width] * 4
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model, cfg


def detector_batch(batch: int, img_size: int, seed: int = 0) -> dict:
    """A synthetic COCO-like batch for ``model.train_step`` / ``test_step``.

    Each image: uint8 noise, (3, S, S), with 4 random boxes (16 px to S/2 a side), each
    with a filled-rectangle mask and a random one of 80 labels.
    """
    import numpy as np
    import torch
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    rng = np.random.default_rng(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.from_numpy(rng.integers(0, 256, (3, img_size, img_size),
                                                    dtype=np.uint8)))
        wh = rng.uniform(16, max(17, img_size / 2), (4, 2))
        xy = rng.uniform(0, 1, (4, 2)) * (img_size - wh)
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        masks = np.zeros((4, img_size, img_size), np.uint8)
        for m, (x0, y0, x1, y1) in zip(masks, boxes.astype(int)):
            m[y0:y1, x0:x1] = 1
        sample = DetDataSample(metainfo=dict(
            img_shape=(img_size, img_size), ori_shape=(img_size, img_size),
            scale_factor=(1.0, 1.0), pad_shape=(img_size, img_size)))
        sample.gt_instances = InstanceData(
            bboxes=torch.from_numpy(boxes), labels=torch.from_numpy(rng.integers(0, 80, 4)),
            masks=BitmapMasks(masks, img_size, img_size))
        samples.append(sample)
    return {'inputs': inputs, 'data_samples': samples}


def detector_workload(mode: str, args: argparse.Namespace, device, amp) -> Workload:
    """The whole Mask R-CNN: its own losses, its config's optimizer, ``test_step``."""
    import torch
    from mmengine.optim import build_optim_wrapper

    model, cfg = build_detector(mode, args)
    model = model.to(device)
    data = detector_batch(args.batch, args.img_size)
    data1 = detector_batch(1, args.img_size, seed=1)
    from hst_mm.engine.precision import float32_without_gpu
    # The config's AmpOptimWrapper would autocast by itself: precision is --amp's alone here.
    float32_without_gpu(cfg.optim_wrapper, gpu=False)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)

    def flops() -> None:
        batch = model.data_preprocessor(data1, False)
        model(batch['inputs'], batch['data_samples'], mode='tensor')

    def infer() -> None:
        with torch.inference_mode(), amp():
            model.test_step(data)

    def train_step() -> None:
        with amp():
            model.train_step(data, optim_wrapper)

    return Workload(model, flops, infer, train_step)


def measure_mode(mode: str, args: argparse.Namespace) -> Dict[str, object]:
    """Build ``mode``'s backbone or detector and measure it; returns its row and the
    environment."""
    import timm
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available')
    cuda = device.type == 'cuda'
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    amp = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.amp == 'bf16' \
        else nullcontext
    torch.manual_seed(0)

    make = detector_workload if args.model == 'detector' else backbone_workload
    work = make(mode, args, device, amp)
    model = work.model
    # Memory held once the model exists: the baseline the training run adds to.
    # CUDA: tensors allocated; CPU: the process's RSS (interpreter + libraries + weights).
    model_mem_mb = torch.cuda.memory_allocated(device) / 2**20 if cuda else current_rss_mb()
    row: Dict[str, object] = {'with_cp': WITH_CP.get(mode, False), **count_params(model)}

    # GFLOPs of one batch-1 forward, a multiply-add counted as 2 FLOPs. FlopCounterMode
    # counts matmuls and convolutions (not norms, softmax or elementwise ops). It has no
    # formula for the CPU's fused attention kernel, so the count runs on the math SDPA
    # backend, whose attention matmuls it does count, on every device alike.
    model.eval()
    with torch.inference_mode(), sdpa_kernel([SDPBackend.MATH]), \
            FlopCounterMode(display=False) as counter:
        work.flops()
    row['gflops'] = counter.get_total_flops() / 1e9

    # CPU seconds / wall seconds of the timed phases, over the threads torch may use.
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    infer_times = _timed(work.infer, args.warmup, args.iters, sync)

    model.train()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    train_times = _timed(work.train_step, args.warmup, args.iters, sync)
    cpu_share = (time.process_time() - cpu_start) / (
        (time.perf_counter() - wall_start) * torch.get_num_threads())
    # CPU: the peak over the whole process, which the training steps set (they hold the
    # activations, gradients and AdamW state on top of everything inference needs).
    peak_mem_mb = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else peak_rss_mb()

    row.update(infer_img_per_s=args.batch / statistics.median(infer_times),
               train_step_s=statistics.median(train_times),
               peak_mem_mb=peak_mem_mb, model_mem_mb=model_mem_mb,
               # On CUDA the CPU mostly waits for the GPU: no contention measure there.
               cpu_share=None if cuda else round(cpu_share, 3),
               infer_times_s=infer_times, train_times_s=train_times)
    env = {'device': str(device),
           'device_name': torch.cuda.get_device_name(device) if cuda else None,
           'torch': torch.__version__, 'timm': timm.__version__,
           'torch_threads': torch.get_num_threads()}
    return {'row': row, 'env': env}


# ---- the parent: one worker per mode, then the report ------------------------------------
def run_worker(mode: str, argv: Sequence[str]) -> Dict[str, object]:
    """Run ``mode`` in a fresh process; its last stdout line is its JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, '--_worker', mode]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    tail = '\n'.join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    return {'row': {'error': f'exit {proc.returncode}: {tail}'}, 'env': {}}


def train_increment_mb(row: Dict[str, object]) -> float:
    """Memory the training run added to the built model (MB)."""
    return row['peak_mem_mb'] - row['model_mem_mb']


def compute_ratios(results: Dict[str, dict]) -> List[dict]:
    """The target ratios whose two rows were measured."""
    out = []
    for metric, num, den, op, target in RATIOS:
        a, b = results.get(num), results.get(den)
        if not a or not b or 'error' in a or 'error' in b:
            continue
        get = train_increment_mb if metric == 'train_increment_mb' else (lambda r: r[metric])
        value = get(a) / get(b)
        met = value <= target if op == '<=' else value >= target
        out.append({'metric': metric, 'num': num, 'den': den, 'value': value,
                    'target': f'{op} {target}', 'met': met})
    return out


def format_report(results: Dict[str, dict], ratios: List[dict], meta: dict) -> str:
    """A markdown table of the rows, one of the ratios, and how they were measured."""
    a = meta['args']
    cuda = meta['device'].startswith('cuda')
    detector = a.get('model') == 'detector'
    head = (f"### {'Mask R-CNN' if detector else 'backbones'}, "
            f"{a['trunk']} at {a['img_size']}x{a['img_size']}, batch {a['batch']}, "
            f"{meta['device_name'] or meta['device']}"
            f"{'' if cuda else ', %s threads' % meta['torch_threads']}"
            f"{', bf16 autocast' if a['amp'] == 'bf16' else ', fp32'}")
    lines = [head, '',
             '| mode | trainable params (M) | total params (M) | GFLOPs | infer img/s '
             '| train step (s) | peak mem (MB) | model mem (MB) | train +mem (MB) |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for mode, r in results.items():
        if 'error' in r:
            lines.append(f'| {mode} | failed (see stderr) | | | | | | | |')
            continue
        lines.append(f"| {mode} | {r['trainable_params'] / 1e6:.2f} | "
                     f"{r['total_params'] / 1e6:.2f} | {r['gflops']:.4g} | "
                     f"{r['infer_img_per_s']:.3g} | {r['train_step_s']:.3g} | "
                     f"{r['peak_mem_mb']:.0f} | {r['model_mem_mb']:.0f} | "
                     f"{train_increment_mb(r):.0f} |")
    if ratios:
        lines += ['', '| ratio | value | target | met |', '|---|---:|---|---|']
        for q in ratios:
            lines.append(f"| {q['num']}.{q['metric']} / {q['den']}.{q['metric']} | "
                         f"{q['value']:.3f} | {q['target']} | {'yes' if q['met'] else 'no'} |")
    mem = ('torch.cuda.max_memory_allocated during the training steps; model mem = '
           'memory_allocated once the model is on the device' if cuda else
           "peak RSS of the mode's own process (VmHWM); model mem = RSS once the model is "
           'built (includes interpreter and libraries)')
    lines += ['',
              f"GFLOPs: one batch-1 forward at {a['img_size']}x{a['img_size']} counted by "
              'torch.utils.flop_counter.FlopCounterMode (multiply-add = 2 FLOPs; matmuls, '
              'convolutions and attention only).',
              f"Speed: median over {a['iters']} iterations after {a['warmup']} warm-up, "
              f"batch {a['batch']}; " + (
                  'a train step is model.train_step on a synthetic batch (4 random boxes and '
                  "masks per image): forward + the detector's losses + backward + the "
                  "config's AdamW step; inference is model.test_step." if detector else
                  'a train step is forward + sum of output means + backward + AdamW step '
                  'over the trainable parameters.'),
              f'Memory: {mem}; train +mem = peak - model.',
              *([] if cuda else [
                  'CPU share while timed (1.0 = uncontended; rows with different shares are '
                  'not comparable): ' + ', '.join(f"{m} {r['cpu_share']:.2f}" for m, r in
                                                  results.items() if 'error' not in r) + '.']),
              f"Load average (1/5/15 min) at start {meta['loadavg_start']}, "
              f"at end {meta['loadavg_end']}; {meta['cpu_count']} CPUs."]
    return '\n'.join(lines)


def _loadavg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def run_all(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run every row in its own worker, write the JSON, print the report."""
    meta = {'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
            'loadavg_start': _loadavg(), 'cpu_count': os.cpu_count(),
            'python': sys.version.split()[0],
            'args': {k: v for k, v in vars(args).items() if k != '_worker'}}
    results, env = {}, {}
    for mode in modes_to_run(args):
        start = time.perf_counter()
        print(f'[benchmark] {mode} ...', file=sys.stderr, flush=True)
        out = run_worker(mode, argv)
        results[mode] = out['row']
        env = env or out['env']
        status = 'FAILED' if 'error' in out['row'] else 'done'
        print(f'[benchmark] {mode} {status} in {time.perf_counter() - start:.0f} s',
              file=sys.stderr, flush=True)
    meta.update({'device': 'unknown', 'device_name': None, 'torch_threads': None,
                 'torch': _version('torch'), 'timm': _version('timm')}, **env)
    meta.update(loadavg_end=_loadavg(),
                flops='batch-1 forward, torch.utils.flop_counter.FlopCounterMode, '
                      'multiply-add = 2 FLOPs',
                memory='cuda: max_memory_allocated' if meta['device'].startswith('cuda')
                else 'cpu: peak RSS (VmHWM) of one process per mode')
    ratios = compute_ratios(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump({**results, 'meta': {**meta, 'ratios': ratios}}, f, indent=2)
    print(format_report(results, ratios, meta))
    failed = [m for m, r in results.items() if 'error' in r]
    for mode in failed:
        print(f'[benchmark] {mode} failed:\n{results[mode]["error"]}', file=sys.stderr)
    return 1 if failed else 0


def _version(package: str) -> Optional[str]:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args._worker:
        if args._worker not in BASE_MODES + tuple(WITH_CP):
            raise SystemExit(f'unknown worker mode {args._worker!r}')
        result = measure_mode(args._worker, args)
        # Anything printed before (e.g. by timm) is ignored: the parent reads the last line.
        print(json.dumps(result), flush=True)
        return 0
    return run_all(args, argv)


if __name__ == '__main__':
    sys.exit(main())
