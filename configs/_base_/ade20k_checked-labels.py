# mmseg's ADE20K pipelines (mmseg::_base_/datasets/ade20k.py) with the label check (hst_mm's
# CheckSegLabels) right after LoadAnnotations: a label map with a value outside the 150 classes
# (after reduce_zero_label) stops with its file name and the values, instead of `IndexError:
# Target ... is out of bounds` inside the loss (training) or pixels silently left out of the
# metric (testing); so does a 16-bit map with values over 255 (LoadAnnotations would cut 258 to 2)
# and a map of another size than its image (its labels would land on the wrong pixels). Only
# `_ade_*` helper variables, so this composes with mmseg's bases; configs use them as
# {{_base_._ade_train_pipeline}}. Helpers are `_`-prefixed (mmengine keeps them for the configs
# that read them; tools/train.py, tools/test.py and RunConfigHook leave them out of the run's
# saved config); helpers used only in this file are `__`-prefixed (mmengine drops those itself).
__ade_crop_size = (512, 512)
__ade_label_check = dict(type='CheckSegLabels', num_classes=150)
_ade_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    __ade_label_check,
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=__ade_crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
_ade_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    __ade_label_check,
    dict(type='PackSegInputs'),
]
_ade_tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='Resize', scale_factor=r, keep_ratio=True)
                for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
            ],
            [
                dict(type='RandomFlip', prob=0.0, direction='horizontal'),
                dict(type='RandomFlip', prob=1.0, direction='horizontal'),
            ],
            [dict(type='LoadAnnotations')],
            [__ade_label_check],
            [dict(type='PackSegInputs')],
        ],
    ),
]
