# UperNet + HST (ViT-B/16 IN-21K) on ADE20K: 512x512 crops, 160k iterations, total batch 16
# (8 GPUs x 2), AdamW with poly decay after a 1500-iteration linear warmup, auxiliary FCN head
# on stage 3. mmseg's Swin UperNet recipe is exactly that schedule; we replace the backbone.
# Multi-scale + flip testing: tools/test.py CONFIG CKPT --tta (mmseg's ADE20K tta_pipeline).
# Label maps are checked as they load (CheckSegLabels; configs/_base_/ade20k_checked-labels.py).
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
    '../_base_/hst-vit-b.py',
    '../_base_/hst_runtime.py',
    '../_base_/ade20k_checked-labels.py',
]
custom_imports = dict(imports=['hst_mm'], allow_failed_imports=False)

data_preprocessor = dict(mean={{_base_._hst_mean}}, std={{_base_._hst_std}})
model = dict(
    data_preprocessor=data_preprocessor,
    backbone={{_base_._hst_backbone}},
    decode_head=dict(in_channels={{_base_._hst_backbone.embed_dims}}),
    auxiliary_head=dict(in_channels={{_base_._hst_aux_in_channels}}),  # stage 3 (in_index=2)
    test_cfg={{_base_._hst_ade_test_cfg}},  # sliding 512x512 windows, stride 341
)

optim_wrapper = {{_base_._hst_optim_wrapper_bf16}}

# mmseg's ADE20K pipelines plus CheckSegLabels after LoadAnnotations.
train_pipeline = {{_base_._ade_train_pipeline}}
test_pipeline = {{_base_._ade_test_pipeline}}
tta_pipeline = {{_base_._ade_tta_pipeline}}
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# mmseg's bases define no auto_scale_lr: this makes `tools/train.py --auto-scale-lr` scale the
# learning rate from the recipe's total batch (8 GPUs x 2).
auto_scale_lr = dict(enable=False, base_batch_size=16)

# The side network's stem BatchNorm sees 2 images per GPU: synchronised across GPUs (mmengine
# converts BN to SyncBN in distributed runs only; a single process keeps plain BN).
sync_bn = 'torch'
default_hooks = dict(checkpoint={{_base_._hst_seg_checkpoint}})
