# UperNet + HST with a ViT-Ti/16 trunk on the generated ADE20K-layout toy set
# (data/toy/ade), small enough to train on a CPU. Generate it: python tools/make_toy_data.py
# The trunk starts from a randomly initialised timm ViT-Ti saved by make_toy_data.py.
_base_ = ['../hst/upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512.py']
custom_imports = dict(imports=['hst_mm'], allow_failed_imports=False)

__toy_root = 'data/toy/ade/'
__toy_classes = ('background', 'circle', 'square', 'triangle')
__toy_palette = [[120, 120, 120], [220, 20, 60], [60, 180, 75], [0, 90, 220]]
crop_size = (128, 128)

# A single-process run has no SyncBN to sync: plain BN (mmengine would convert it anyway).
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        trunk='vit_tiny_patch16_224',
        pretrained='data/toy/vit_tiny_patch16_224.random.pth',
        drop_path_rate=0.0,
    ),
    decode_head=dict(num_classes=len(__toy_classes), channels=128, norm_cfg=norm_cfg),
    auxiliary_head=dict(num_classes=len(__toy_classes), channels=64, norm_cfg=norm_cfg),
    # Whole-image inference: the toy images (about 256x128) fit one window anyway.
    test_cfg=dict(_delete_=True, mode='whole'),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegLabels', num_classes=len(__toy_classes)),
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegLabels', num_classes=len(__toy_classes)),
    dict(type='PackSegInputs'),
]
__toy_dataset = dict(
    _delete_=True,
    type='BaseSegDataset',
    data_root=__toy_root,
    reduce_zero_label=True,
    img_suffix='.png',
    seg_map_suffix='.png',
    metainfo=dict(classes=__toy_classes, palette=__toy_palette),
)
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        __toy_dataset,
        pipeline=train_pipeline,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        __toy_dataset,
        pipeline=test_pipeline,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
    ),
)
test_dataloader = val_dataloader

# 200 iterations (~12 epochs of the 64 training images) reach mIoU ~89 on the toy val split.
train_cfg = dict(max_iters=200, val_interval=200)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=200, by_epoch=False),
]
optim_wrapper = dict(  # float32: a CPU config
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg={{_base_._hst_paramwise_cfg}},
)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=200, max_keep_ckpts=2, save_best=None),
)
# torch's SyncBatchNorm runs on GPUs only: two CPU processes (tools/dist_train.sh on the toy
# data) keep per-process BatchNorm.
sync_bn = None
