"""What is run for one row: the model, its synthetic batches and its optimizer.

Two kinds (``--model``):

* ``backbone``: the backbone alone (``hst_mm.models``; torch and timm, no mmdet), trained
  with AdamW on the sum of its output levels' means;
* ``detector``: the whole Mask R-CNN of the row's config (backbone, FPN, RPN and RoI heads),
  built through mmdet and trained with its own losses and its config's optimizer on a
  synthetic COCO-like batch.

The trunk keeps its random initialisation in both: nothing is downloaded.
"""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable, Optional, Tuple

import torch

from ..fixtures import det_batch
from .modes import CONFIG_MODE, PETL_MODES, base_mode, checked_options, with_cp

# The repository checkout this package lives in: the detector configs are read from it.
ROOT = Path(__file__).resolve().parents[2]

# Detector mode: each base mode's Mask R-CNN config (relative to the repository root).
DETECTOR_CONFIGS = {
    'hst': 'configs/hst/mask-rcnn_hst-vit-b_fpn_amp-1x_coco.py',
    'full': 'configs/baselines/mask-rcnn_vit-b-full_fpn_amp-1x_coco.py',
    'frozen': 'configs/baselines/mask-rcnn_vit-b-frozen_fpn_amp-1x_coco.py',
    **{m: f'configs/petl/mask-rcnn_vit-b-{m}_fpn_amp-1x_coco.py' for m in PETL_MODES},
}
# Backbone mode: the PETL rows' method settings, from the configs (one source).
PETL_CONFIG = 'configs/_base_/petl.py'


def petl_settings(mode: str) -> dict:
    """``mode``'s ``petl`` argument of ``ViTPyramid``, as the configs set it."""
    from mmengine.config import Config

    return Config.fromfile(str(ROOT / PETL_CONFIG))[f'_petl_{mode}_backbone']['petl'].to_dict()


# A factory of the context to run the timed forward passes in (autocast or nothing).
AmpContext = Callable[[], AbstractContextManager]


class Workload:
    """What the measurement runs for one row: a model and four callables.

    ``flops()`` runs one batch-1 forward (counted by the caller), ``infer()`` one inference
    batch, ``train_step()`` forward + loss + backward + optimizer step on one batch, and
    ``loss()`` the training forward alone, returning the loss (for the saved-activation
    breakdown and the profile), ``optimizer_step()`` the step after a backward (and the
    gradients' reset). ``train_step`` and ``loss`` are None for a row without training
    (``trunk``); ``optimizer_step`` where the step is not separable (detectors).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        flops: Callable[[], None],
        infer: Callable[[], None],
        train_step: Optional[Callable[[], None]],
        loss: Optional[Callable[[], torch.Tensor]] = None,
        optimizer_step: Optional[Callable[[], None]] = None,
    ) -> None:
        self.model, self.flops, self.infer, self.train_step = model, flops, infer, train_step
        self.loss, self.optimizer_step = loss, optimizer_step


# ---- backbones alone ---------------------------------------------------------------------
def build_backbone(mode: str, args: argparse.Namespace) -> torch.nn.Module:
    """The backbone of ``mode`` (``hst``, ``full``, ``frozen``, ``trunk``, ``config``, a
    ``*_cp*``, lever or PETL row).

    ``args``: ``trunk``, ``trunk_kwargs`` and, for HST, ``embed_dims`` and ``num_heads``;
    for ``config``, ``config_backbone`` (the CONFIG's ``model.backbone``).
    ``trunk``: the timm ViT of :func:`hst_mm.models.create_trunk`, all frozen. An HST row
    whose options this ``HST`` lacks raises :class:`.modes.MissingOptionError`.
    """
    from hst_mm.models import HST, ViTPyramid, create_trunk

    if mode == CONFIG_MODE:
        from .config import build_config_backbone

        return build_config_backbone(args.config_backbone)
    base = base_mode(mode)
    if base == 'trunk':
        return create_trunk(args.trunk, **args.trunk_kwargs).requires_grad_(False)
    common = dict(trunk=args.trunk, trunk_kwargs=args.trunk_kwargs, with_cp=with_cp(mode))
    if base == 'hst':
        options = checked_options(mode, HST)
        return HST(embed_dims=args.embed_dims, num_heads=args.num_heads, **options, **common)
    if base in PETL_MODES:
        return ViTPyramid(frozen=True, petl=petl_settings(base), **common)
    return ViTPyramid(frozen=base == 'frozen', **common)


def backbone_workload(
    mode: str, args: argparse.Namespace, device: torch.device, amp: AmpContext
) -> Workload:
    """The backbone alone; the loss is the sum of every output level's mean.

    Inputs: noise of shape ``(B, 3, S, S)`` with ``B = args.batch`` and
    ``S = args.img_size``; the FLOPs are counted on a ``(1, 3, S, S)`` batch. The ``trunk``
    row runs ``forward_features`` (its (B, T, D) tokens) and has no training step.
    """
    model = build_backbone(mode, args).to(device)
    if base_mode(mode) == 'trunk':
        x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device)
        x1 = torch.randn(1, 3, args.img_size, args.img_size, device=device)

        def trunk_infer() -> None:
            with torch.inference_mode(), amp():
                model.forward_features(x)

        return Workload(model, lambda: model.forward_features(x1), trunk_infer, None)
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device)
    x1 = torch.randn(1, 3, args.img_size, args.img_size, device=device)
    # Built here, not in the first timed step, so that its creation is not timed.
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def flops() -> None:
        model(x1)

    def infer() -> None:
        with torch.inference_mode(), amp():
            model(x)

    def loss() -> torch.Tensor:
        with amp():
            outs = model(x)
        return sum(o.float().mean() for o in outs)  # touches every output level

    def optimizer_step() -> None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def train_step() -> None:
        loss().backward()
        optimizer_step()

    return Workload(model, flops, infer, train_step, loss, optimizer_step)


# ---- whole detectors ---------------------------------------------------------------------
def build_detector(mode: str, args: argparse.Namespace) -> Tuple[torch.nn.Module, object]:
    """``mode``'s Mask R-CNN from its config, with ``--trunk`` and no pretrained weights.

    Returns (model, cfg). The neck's ``in_channels`` follow the backbone actually built
    (HST: ``--embed-dims``; the simple pyramid: the trunk's width), so any trunk works.
    """
    # type='HST' and 'ViTPyramid' are registered: importing this package ran hst_mm/__init__.
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from hst_mm.registration import fit_heads_to_backbone

    cfg = Config.fromfile(str(ROOT / DETECTOR_CONFIGS[base_mode(mode)]))
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    backbone = cfg.model.backbone
    backbone.update(
        trunk=args.trunk, trunk_kwargs=args.trunk_kwargs, pretrained=None, with_cp=with_cp(mode)
    )
    if backbone.type == 'HST':
        from hst_mm.models import HST

        backbone.update(checked_options(mode, HST))
        backbone.update(embed_dims=tuple(args.embed_dims), num_heads=tuple(args.num_heads))
    fit_heads_to_backbone(cfg.model)  # a meta-device build: no memory left in this worker
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model, cfg


def detector_workload(
    mode: str, args: argparse.Namespace, device: torch.device, amp: AmpContext
) -> Workload:
    """The whole Mask R-CNN: its own losses, its config's optimizer, ``test_step``."""
    from mmengine.optim import build_optim_wrapper

    from hst_mm.engine.precision import float32_without_gpu

    model, cfg = build_detector(mode, args)
    model = model.to(device)
    data = det_batch(args.batch, args.img_size)
    data1 = det_batch(1, args.img_size, seed=1)
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

    def loss() -> torch.Tensor:
        with amp():
            batch = model.data_preprocessor(data, True)
            return model.parse_losses(model(**batch, mode='loss'))[0]

    return Workload(model, flops, infer, train_step, loss)


WORKLOADS = {'backbone': backbone_workload, 'detector': detector_workload}
