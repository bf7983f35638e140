# Mask R-CNN + HST on a frozen DINOv3 ViT-L/16 (timm `vit_large_patch16_dinov3.lvd1689m`, 24
# blocks, D=1024; a timm Eva). Side network and block split as the ViT-L config
# (mask-rcnn_hst-vit-l): widths (64, 128, 256, 384), six trunk blocks per stage, 1x schedule; the
# ViT-B config's recipe otherwise. The input normalisation is the trunk's own (ImageNet's mean /
# std), read from timm's pretrained config by trunk_pixel_stats, not typed here.
_base_ = ['./mask-rcnn_hst-vit-b_fpn_amp-1x_coco.py']
from hst_mm.models.pretrained import trunk_pixel_stats  # noqa: E402

_foundation_trunk = dict(trunk='vit_large_patch16_dinov3', pretrained='lvd1689m')
model = dict(data_preprocessor=trunk_pixel_stats(**_foundation_trunk), backbone=_foundation_trunk)
