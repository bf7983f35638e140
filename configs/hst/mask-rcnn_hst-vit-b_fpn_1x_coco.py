# Former name of
#   configs/hst/mask-rcnn_hst-vit-b_fpn_amp-1x_coco.py
# kept for one release: the same config, with a warning naming the new one (RunConfigHook,
# configs/_base_/hst_runtime.py). The names follow mmdet's / mmseg's: `amp` for
# mixed-precision training, `ms-crop-3x` for the resize-or-crop 3x recipe, `4conv1fc-giou`
# for the Cascade heads.
_base_ = ['./mask-rcnn_hst-vit-b_fpn_amp-1x_coco.py']
config_renamed_to = 'configs/hst/mask-rcnn_hst-vit-b_fpn_amp-1x_coco.py'
