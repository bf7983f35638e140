# Baseline: Semantic FPN on the ViT-B/16 IN-21K, fully fine-tuned, with the simple feature
# pyramid; the HST Semantic FPN recipe otherwise, plus layer-wise lr decay (anchor: ViT-Adapter's
# UperNet DeiT-B on ADE20K, lr 6e-5, weight decay 0.01, decay 0.95, the same data set and
# batch; configs/_base_/vit-b-pyramid.py).
_base_ = ['../hst/fpn_hst-vit-b_8xb2-amp-80k_ade20k-512x512.py', '../_base_/vit-b-pyramid.py']

model = dict(
    backbone={{_base_._vitb_pyramid_backbone}},
    neck=dict(in_channels={{_base_._vitb_pyramid_channels}}),
)
optim_wrapper = {{_base_._vitb_seg_layer_decay}}
