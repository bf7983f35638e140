# UperNet + HST on a frozen DINOv3 ViT-B/16 (timm `vit_base_patch16_dinov3.lvd1689m`,
# self-supervised on LVD-1689M; a timm Eva: rotary position embeddings, 4 registers, layer scale),
# ADE20K 160k; the ViT-B config's recipe otherwise. The input normalisation is the trunk's own
# (ImageNet's mean / std), read from timm's pretrained config by trunk_pixel_stats, not typed
# here.
_base_ = ['./upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512.py']
from hst_mm.models.pretrained import trunk_pixel_stats  # noqa: E402

_foundation_trunk = dict(trunk='vit_base_patch16_dinov3', pretrained='lvd1689m')
data_preprocessor = trunk_pixel_stats(**_foundation_trunk)
model = dict(data_preprocessor=data_preprocessor, backbone=_foundation_trunk)
