# Baseline (frozen-trunk probe): the ViT-B/16 IN-21K is frozen, only the simple pyramid, FPN
# and heads train; the HST 1x recipe (no layer decay: nothing in the trunk trains).
_base_ = ['../hst/mask-rcnn_hst-vit-b_fpn_amp-1x_coco.py', '../_base_/vit-b-pyramid.py']

model = dict(
    backbone={{_base_._vitb_frozen_backbone}},
    neck=dict(in_channels={{_base_._vitb_pyramid_channels}}),
)
