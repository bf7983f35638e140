# PETL row: Mask R-CNN 1x on the frozen ViT-B/16 IN-21K with SSF (configs/_base_/petl.py);
# the frozen-trunk probe's recipe otherwise.
_base_ = ['../baselines/mask-rcnn_vit-b-frozen_fpn_amp-1x_coco.py', '../_base_/petl.py']

model = dict(backbone={{_base_._petl_ssf_backbone}})
optim_wrapper = dict(paramwise_cfg={{_base_._petl_paramwise_cfg}})
