# Baseline (frozen-trunk probe): Mask R-CNN on a frozen ViT-L/16 IN-21K (pyramid on blocks 6,
# 12, 18 and 24); only the simple pyramid, FPN and heads train; the HST 1x recipe (no layer
# decay: nothing in the trunk trains).
_base_ = ['./mask-rcnn_vit-b-frozen_fpn_amp-1x_coco.py']

model = dict(
    backbone=dict(trunk='vit_large_patch16_224'),
    neck=dict(in_channels=[{{_base_._vit_widths.vit_large_patch16_224}}] * 4),
)
