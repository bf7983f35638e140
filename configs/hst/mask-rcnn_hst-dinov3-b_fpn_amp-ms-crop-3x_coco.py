# Mask R-CNN + HST on the DINOv3 ViT-B/16 trunk of mask-rcnn_hst-dinov3-b_fpn_1x_coco, 3x schedule
# with DETR-style multi-scale resize or resize-then-crop (configs/_base_/coco_detr-ms-crop_3x.py).
_base_ = ['./mask-rcnn_hst-dinov3-b_fpn_amp-1x_coco.py', '../_base_/coco_detr-ms-crop_3x.py']

train_dataloader = dict(dataset=dict(pipeline={{_base_._ms3x_train_pipeline}}))
train_cfg = dict(max_epochs={{_base_._ms3x_max_epochs}})
param_scheduler = {{_base_._ms3x_param_scheduler}}
