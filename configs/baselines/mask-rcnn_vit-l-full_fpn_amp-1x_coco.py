# Baseline: Mask R-CNN on a fully fine-tuned ViT-L/16 IN-21K (timm
# `vit_large_patch16_224.augreg_in21k`) with the simple feature pyramid on blocks 6, 12, 18
# and 24; the ViT-B baseline's 1x recipe otherwise. Anchor: ViT-Adapter's Mask R-CNN on an
# AugReg ViT-L (ViTBaseline): drop path 0.4, AdamW lr 1e-4, weight decay 0.05, layer-wise lr
# decay 0.8 over the 24 blocks.
_base_ = ['./mask-rcnn_vit-b-full_fpn_amp-1x_coco.py']

model = dict(
    backbone=dict(trunk='vit_large_patch16_224', drop_path_rate=0.4),
    neck=dict(in_channels=[{{_base_._vit_widths.vit_large_patch16_224}}] * 4),
)
optim_wrapper = dict(
    optimizer=dict(weight_decay=0.05), paramwise_cfg=dict(num_layers=24, decay_rate=0.8)
)
