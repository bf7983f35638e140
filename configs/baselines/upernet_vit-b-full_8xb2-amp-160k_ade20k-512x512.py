# Baseline: UperNet on the same ViT-B/16 IN-21K, fully fine-tuned, with a simple feature
# pyramid (ViT-Adapter's ViTBaseline layout); the HST UperNet recipe otherwise, plus layer-wise
# lr decay (anchor: ViT-Adapter's UperNet DeiT-B, lr 6e-5, weight decay 0.01, decay 0.95;
# configs/_base_/vit-b-pyramid.py).
_base_ = ['../hst/upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512.py', '../_base_/vit-b-pyramid.py']

model = dict(
    backbone={{_base_._vitb_pyramid_backbone}},
    decode_head=dict(in_channels={{_base_._vitb_pyramid_channels}}),
    auxiliary_head=dict(in_channels={{_base_._vitb_width}}),
)
optim_wrapper = {{_base_._vitb_seg_layer_decay}}
