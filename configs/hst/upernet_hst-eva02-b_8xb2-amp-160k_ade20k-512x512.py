# UperNet + HST on a frozen EVA-02 ViT-B/14 (timm `eva02_base_patch14_224.mim_in22k`, masked image
# modelling on ImageNet-22K against EVA-CLIP features; a timm Eva: rotary position embeddings,
# SwiGLU MLPs), ADE20K 160k; the ViT-B config's recipe otherwise. The input normalisation is the
# trunk's own (CLIP's mean / std), read from timm's pretrained config by trunk_pixel_stats, not
# typed here.
_base_ = ['./upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512.py']
from hst_mm.models.pretrained import trunk_pixel_stats  # noqa: E402

_foundation_trunk = dict(trunk='eva02_base_patch14_224', pretrained='mim_in22k')
data_preprocessor = trunk_pixel_stats(**_foundation_trunk)
model = dict(data_preprocessor=data_preprocessor, backbone=_foundation_trunk)
