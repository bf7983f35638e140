# The "3x + MS" COCO recipe: 36 epochs with DETR-style multi-scale training (short side 480-800)
# plus random crop. Only `_ms3x_*` helper variables, so this composes with mmdet's bases. Helpers
# are `_`-prefixed (mmengine keeps them for the configs that read them; tools/train.py,
# tools/test.py and RunConfigHook leave them out of the run's saved config); helpers used only in
# this file are `__`-prefixed (mmengine drops those itself).
__ms3x_scales = [
    (480, 1333),
    (512, 1333),
    (544, 1333),
    (576, 1333),
    (608, 1333),
    (640, 1333),
    (672, 1333),
    (704, 1333),
    (736, 1333),
    (768, 1333),
    (800, 1333),
]
_ms3x_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=__ms3x_scales, keep_ratio=True)],
            [
                dict(
                    type='RandomChoiceResize',
                    scales=[(400, 1333), (500, 1333), (600, 1333)],
                    keep_ratio=True,
                ),
                dict(
                    type='RandomCrop',
                    crop_type='absolute_range',
                    crop_size=(384, 600),
                    allow_negative_crop=True,
                ),
                dict(type='RandomChoiceResize', scales=__ms3x_scales, keep_ratio=True),
            ],
        ],
    ),
    dict(type='PackDetInputs'),
]
# Box-only detectors (ATSS): the same pipeline without loading the instance masks.
_ms3x_box_train_pipeline = [
    dict(step, with_mask=False) if step['type'] == 'LoadAnnotations' else step
    for step in _ms3x_train_pipeline
]
_ms3x_max_epochs = 36
_ms3x_param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
