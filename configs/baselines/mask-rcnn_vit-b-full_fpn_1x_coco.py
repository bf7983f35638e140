# Baseline: the same ViT-B/16 IN-21K, fully fine-tuned, with a simple feature pyramid
# (ViT-Adapter's ViTBaseline layout); the HST 1x recipe otherwise.
_base_ = ['../hst/mask-rcnn_hst-vit-b_fpn_1x_coco.py', '../_base_/vit-b-pyramid.py']

model = dict(
    backbone={{_base_.vitb_pyramid_backbone}},
    neck=dict(in_channels={{_base_.vitb_pyramid_channels}}),
)
