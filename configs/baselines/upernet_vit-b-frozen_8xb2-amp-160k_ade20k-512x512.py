# Baseline (frozen-trunk probe): UperNet on a frozen ViT-B/16 IN-21K; only the simple pyramid
# and the heads train; the HST UperNet recipe (no layer decay: nothing in the trunk trains).
_base_ = ['../hst/upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512.py', '../_base_/vit-b-pyramid.py']

model = dict(
    backbone={{_base_._vitb_frozen_backbone}},
    decode_head=dict(in_channels={{_base_._vitb_pyramid_channels}}),
    auxiliary_head=dict(in_channels={{_base_._vitb_width}}),
)
