# Mask R-CNN + HST (ViT-B/16 IN-21K), 1x schedule (12 epochs, 1333x800), total batch 16.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    '../_base_/hst-vit-b.py',
    '../_base_/hst_runtime.py',
]
custom_imports = dict(imports=['hst_mm'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(mean={{_base_._hst_mean}}, std={{_base_._hst_std}}),
    backbone={{_base_._hst_backbone}},
    neck=dict(in_channels={{_base_._hst_backbone.embed_dims}}),
)

optim_wrapper = {{_base_._hst_optim_wrapper_fp16}}

# The side network's stem BatchNorm sees 2 images per GPU: synchronised across GPUs (mmengine
# converts BN to SyncBN in distributed runs only; a single process keeps plain BN).
sync_bn = 'torch'
default_hooks = dict(checkpoint={{_base_._hst_det_checkpoint}})
