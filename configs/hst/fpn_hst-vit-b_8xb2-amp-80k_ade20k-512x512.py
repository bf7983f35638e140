# Semantic FPN + HST (ViT-B/16 IN-21K) on ADE20K: 512x512 crops, 80k iterations, total batch
# 16 (8 GPUs x 2), AdamW with poly decay after a 1500-iteration linear warmup.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
    '../_base_/hst-vit-b.py',
    '../_base_/hst_runtime.py',
    '../_base_/ade20k_checked-labels.py',
]
custom_imports = dict(imports=['hst_mm'], allow_failed_imports=False)

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size, mean={{_base_._hst_mean}}, std={{_base_._hst_std}})
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone={{_base_._hst_backbone}},
    neck=dict(in_channels={{_base_._hst_backbone.embed_dims}}),
    decode_head=dict(num_classes=150),
    test_cfg={{_base_._hst_ade_test_cfg}},  # sliding 512x512 windows, stride 341
)

optim_wrapper = {{_base_._hst_optim_wrapper_bf16}}
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=80000, by_epoch=False),
]
# mmseg's ADE20K pipelines plus CheckSegLabels after LoadAnnotations
# (configs/_base_/ade20k_checked-labels.py).
train_pipeline = {{_base_._ade_train_pipeline}}
test_pipeline = {{_base_._ade_test_pipeline}}
tta_pipeline = {{_base_._ade_tta_pipeline}}
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# mmseg's bases define no auto_scale_lr: this makes `tools/train.py --auto-scale-lr` scale the
# learning rate from the recipe's total batch (8 GPUs x 2).
auto_scale_lr = dict(enable=False, base_batch_size=16)

# The side network's stem BatchNorm sees 2 images per GPU: synchronised across GPUs (mmengine
# converts BN to SyncBN in distributed runs only; a single process keeps plain BN).
sync_bn = 'torch'
default_hooks = dict(checkpoint={{_base_._hst_seg_checkpoint}})
