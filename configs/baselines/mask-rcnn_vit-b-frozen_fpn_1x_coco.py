# Baseline (frozen-trunk probe): the ViT-B/16 IN-21K is frozen, only the simple pyramid, FPN
# and heads train; the HST 1x recipe otherwise.
_base_ = ['./mask-rcnn_vit-b-full_fpn_1x_coco.py']

model = dict(backbone=dict(frozen=True, drop_path_rate=0.0))
