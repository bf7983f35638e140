# Mask R-CNN + HST with a ViT-Ti/16 trunk on the generated toy COCO set (data/toy/coco),
# small enough to train on a CPU. Generate the data first: python tools/make_toy_data.py
# The trunk starts from data/toy/vit_tiny_patch16_224.random.pth: a *randomly initialised*
# timm ViT-Ti saved by make_toy_data.py (no model hub here), loaded through HST's real
# pretrained-weights path.
_base_ = ['../hst/mask-rcnn_hst-vit-b_fpn_amp-1x_coco.py']
custom_imports = dict(imports=['hst_mm'], allow_failed_imports=False)

__toy_root = 'data/toy/coco/'
__toy_classes = ('circle', 'square', 'triangle')
__toy_scale = (128, 128)

# CPU-sized neck and heads: 128 channels instead of 256, 256-wide box FCs instead of 1024.
# The RoI heads dominate a CPU iteration (the mask head's convolutions on every positive
# RoI, mmcv's CPU RoIAlign backward); this halves the iteration time.
__neck_channels = 128
model = dict(
    backbone=dict(
        trunk='vit_tiny_patch16_224',
        pretrained='data/toy/vit_tiny_patch16_224.random.pth',
        drop_path_rate=0.0,
    ),
    neck=dict(out_channels=__neck_channels),
    rpn_head=dict(in_channels=__neck_channels, feat_channels=__neck_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=__neck_channels),
        bbox_head=dict(
            in_channels=__neck_channels, fc_out_channels=256, num_classes=len(__toy_classes)
        ),
        mask_roi_extractor=dict(out_channels=__neck_channels),
        mask_head=dict(
            in_channels=__neck_channels,
            conv_out_channels=__neck_channels,
            num_classes=len(__toy_classes),
        ),
    ),
    # At most 3 objects per 128x128 image: far fewer proposals and sampled RoIs than COCO
    # needs, which makes a CPU iteration about 2.5x faster.
    train_cfg=dict(rpn_proposal=dict(max_per_img=256), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(max_per_img=100), rcnn=dict(max_per_img=20)),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=__toy_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=__toy_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
    ),
]
# num_workers=0: two CPU cores are better spent on the model than on loader processes.
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=__toy_root,
        metainfo=dict(classes=__toy_classes),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=__toy_root,
        metainfo=dict(classes=__toy_classes),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=__toy_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# Iteration-based so that tests and the demo can set the length with one option.
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=300, val_interval=300)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=300, milestones=[250], gamma=0.1),
]
# Everything but the trunk starts from scratch: a higher rate than the COCO recipe's 1e-4,
# with the gradient norm clipped at 10 for the first, noisy iterations. float32: a CPU config.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg={{_base_._hst_paramwise_cfg}},
    clip_grad=dict(max_norm=10.0, norm_type=2),
)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=300, max_keep_ckpts=2, save_best=None),
)
# torch's SyncBatchNorm runs on GPUs only: two CPU processes (tools/dist_train.sh on the toy
# data) keep per-process BatchNorm.
sync_bn = None
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(enable=False, base_batch_size=4)
