"""The tiny models and synthetic batches that tests, the benchmark and the GPU check share.

- :data:`TINY_TRUNK` / :data:`TINY_SIDE`: a 4-block, 32-wide ViT/16 (one trunk block per side
  stage) and a small side network, as ``HST`` / ``ViTPyramid`` keyword arguments;
  :data:`FOUNDATION_TRUNKS`: tiny DINOv2, EVA-02, DINOv3, Perception Encoder trunks alike.
- :func:`shrink_to_tiny`: a shipped config's model on that trunk, its neck / heads fitted.
- :func:`few_proposals`, :func:`narrow_heads`: a config's proposal and RoI-sample counts, and
  its neck and heads' widths, cut for the CPU (the same layers and operators).
- :func:`det_batch` / :func:`seg_batch`: synthetic COCO-like and ADE20K-like batches in the
  ``{'inputs': [...], 'data_samples': [...]}`` form of ``model.data_preprocessor``.
"""

from typing import Dict, Sequence

import numpy as np
import torch

from hst_mm.registration import fit_heads_to_backbone

TINY_TRUNK = dict(
    trunk='vit_tiny_patch16_224', trunk_kwargs=dict(depth=4, embed_dim=32, num_heads=2)
)
TINY_SIDE = dict(embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 3, 4))

# Trunk kinds HST must handle: prefix tokens before the patches are 1 (class token), 0, or
# 1 + 4 registers; their number decides where the patch map starts.
TRUNK_KINDS = {
    'class_token': {},
    'no_class_token': dict(class_token=False, global_pool='avg'),
    'registers': dict(reg_tokens=4),
}


# Tiny foundation trunks (4 blocks, 32 wide), as ``HST`` / ``ViTPyramid`` keyword arguments:
# one per kind of timm trunk beyond the plain ViT. DINOv2: a VisionTransformer at patch 14
# with 4 registers and layer scale; the rest are timm ``Eva`` models with rotary position
# embeddings of each of timm's layouts: EVA-02 (patch 14, SwiGLU, 'cat' RoPE), DINOv3
# (registers, layer scale, 'dinov3' RoPE, no absolute position embedding), Perception
# Encoder (AttentionRope, pre-norm, 'xy' grid) and a mixed (per block and head) RoPE.
_TINY = dict(depth=4, embed_dim=32, num_heads=2)
FOUNDATION_TRUNKS = {
    'dinov2_reg4': dict(trunk='vit_small_patch14_reg4_dinov2', trunk_kwargs=_TINY),
    'eva02': dict(trunk='eva02_tiny_patch14_224', trunk_kwargs=_TINY),
    'dinov3': dict(trunk='vit_small_patch16_dinov3', trunk_kwargs=_TINY),
    'pe_core': dict(trunk='vit_pe_core_tiny_patch16_384', trunk_kwargs=_TINY),
    'rope_mixed': dict(trunk='vit_small_patch16_rope_mixed_224', trunk_kwargs=_TINY),
}


def shrink_to_tiny(cfg, side: int = None, keep_pretrained: bool = False):
    """Put ``cfg.model`` (a shipped config, in place) on the tiny trunk.

    HST also gets :data:`TINY_SIDE`; the neck (or UperNet's heads) read the new widths. With
    ``side``, a segmentor pads its inputs to ``side x side`` pixels. The trunk's
    ``pretrained`` source is dropped unless ``keep_pretrained`` (the backbones load it in
    ``init_weights()``, not when built). Returns ``cfg``.
    """
    backbone = cfg.model.backbone
    backbone.update(TINY_TRUNK)
    if not keep_pretrained:
        backbone.pretrained = None
    if backbone.type == 'HST':
        backbone.update(TINY_SIDE)
    fit_heads_to_backbone(cfg.model)
    if side and cfg.get('default_scope') == 'mmseg':
        cfg.model.data_preprocessor.size = (side, side)
    return cfg


def few_proposals(cfg, proposals: int = 64, samples: int = 32):
    """A detector config (in place) that keeps ``proposals`` RPN boxes and samples
    ``samples`` RoIs per image and stage: the same operators at a fraction of the full
    2000 / 512 (a Cascade step on the CPU drops from ~30 s to a few seconds). Returns
    ``cfg``."""
    train, test = cfg.model.get('train_cfg') or {}, cfg.model.get('test_cfg') or {}
    for rpn in (train.get('rpn_proposal'), test.get('rpn')):
        if rpn is not None:
            rpn.update(nms_pre=proposals, max_per_img=proposals)
    rcnn = train.get('rcnn')
    for stage in rcnn if isinstance(rcnn, (list, tuple)) else [rcnn] if rcnn else []:
        stage.sampler.num = samples
    return cfg


def narrow_heads(cfg, width: int = 32):
    """The neck and heads of ``cfg.model`` (in place) ``width`` channels wide instead of their
    256 (mmdet's FPN and heads) or UperNet's 512 / 256: the same layers and operators at a
    CPU's cost. Returns ``cfg``."""
    keys = ('in_channels', 'out_channels', 'feat_channels', 'conv_out_channels')

    def narrow(node):
        if isinstance(node, (list, tuple)):
            for item in node:
                narrow(item)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key in keys and value == 256:
                    node[key] = width
                elif key in keys and isinstance(value, list) and set(value) == {256}:
                    node[key] = [width] * len(value)  # Semantic FPN's head reads the neck
                else:
                    narrow(value)

    for part in ('neck', 'rpn_head', 'roi_head', 'bbox_head', 'decode_head', 'auxiliary_head'):
        if part in cfg.model:
            narrow(cfg.model[part])
    for part in ('decode_head', 'auxiliary_head'):
        if part in cfg.model:
            cfg.model[part].channels = width
    return cfg


def det_batch(batch: int = 2, size: int = 128, num_classes: int = 80, seed: int = 0) -> Dict:
    """A synthetic COCO-like batch for ``model.train_step`` / ``loss`` / ``test_step``.

    Each image: uint8 noise of shape ``(3, S, S)``, with 4 random boxes (16 px to S/2 a
    side), each with a filled-rectangle mask of shape ``(S, S)`` and a random label in
    ``[0, num_classes)``.
    """
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    rng = np.random.default_rng(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.from_numpy(rng.integers(0, 256, (3, size, size), dtype=np.uint8)))
        wh = rng.uniform(16, max(17, size / 2), (4, 2))
        xy = rng.uniform(0, 1, (4, 2)) * (size - wh)
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)  # (4, 4) x0 y0 x1 y1
        masks = np.zeros((4, size, size), np.uint8)
        for m, (x0, y0, x1, y1) in zip(masks, boxes.astype(int)):
            m[y0:y1, x0:x1] = 1
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                scale_factor=(1.0, 1.0),
                pad_shape=(size, size),
            )
        )
        sample.gt_instances = InstanceData(
            bboxes=torch.from_numpy(boxes),
            labels=torch.from_numpy(rng.integers(0, num_classes, 4)),
            masks=BitmapMasks(masks, size, size),
        )
        samples.append(sample)
    return {'inputs': inputs, 'data_samples': samples}


def seg_batch(batch: int = 2, size: int = 128, num_classes: int = 150, seed: int = 0) -> Dict:
    """A synthetic ADE20K-like batch: uint8 noise images ``(3, S, S)`` and random labels
    ``(1, S, S)`` in ``[0, num_classes)``."""
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
            data=torch.from_numpy(rng.integers(0, num_classes, (1, size, size)))
        )
        samples.append(sample)
    return {'inputs': inputs, 'data_samples': samples}


def loss_sum(losses: Dict[str, object]) -> torch.Tensor:
    """The sum of a model's ``loss`` dict entries named ``*loss*`` (tensors or lists)."""
    total = 0
    for key, value in losses.items():
        if 'loss' in key:
            parts: Sequence = value if isinstance(value, (list, tuple)) else [value]
            total = total + sum(v.sum() for v in parts)
    return total
