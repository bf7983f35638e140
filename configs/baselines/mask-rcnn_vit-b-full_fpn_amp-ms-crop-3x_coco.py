# Baseline: Mask R-CNN on the ViT-B/16 IN-21K, fully fine-tuned, with the simple feature
# pyramid; the HST 3x + multi-scale recipe otherwise, plus layer-wise lr decay (anchor:
# ViTDet's ViT-B, lr 1e-4, weight decay 0.1, decay 0.7; configs/_base_/vit-b-pyramid.py).
_base_ = ['../hst/mask-rcnn_hst-vit-b_fpn_amp-ms-crop-3x_coco.py', '../_base_/vit-b-pyramid.py']

model = dict(
    backbone={{_base_._vitb_pyramid_backbone}},
    neck=dict(in_channels={{_base_._vitb_pyramid_channels}}),
)
optim_wrapper = {{_base_._vitb_det_layer_decay}}
