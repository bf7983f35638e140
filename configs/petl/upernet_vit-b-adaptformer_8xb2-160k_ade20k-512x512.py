# Former name of
#   configs/petl/upernet_vit-b-adaptformer_8xb2-amp-160k_ade20k-512x512.py
# kept for one release: the same config, with a warning naming the new one (RunConfigHook,
# configs/_base_/hst_runtime.py). The names follow mmdet's / mmseg's: `amp` for
# mixed-precision training, `ms-crop-3x` for the resize-or-crop 3x recipe, `4conv1fc-giou`
# for the Cascade heads.
_base_ = ['./upernet_vit-b-adaptformer_8xb2-amp-160k_ade20k-512x512.py']
config_renamed_to = 'configs/petl/upernet_vit-b-adaptformer_8xb2-amp-160k_ade20k-512x512.py'
