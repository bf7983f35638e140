# PETL row: Mask R-CNN 3x+MS on the frozen ViT-B/16 IN-21K with VPT-deep
# (configs/_base_/petl.py) and the ViTBaseline pyramid; the HST 3x recipe otherwise.
_base_ = [
    '../hst/mask-rcnn_hst-vit-b_fpn_amp-ms-crop-3x_coco.py',
    '../_base_/petl.py',
    '../_base_/vit-b-pyramid.py',
]

model = dict(
    backbone={{_base_._petl_vpt_backbone}},
    neck=dict(in_channels={{_base_._vitb_pyramid_channels}}),
)
optim_wrapper = dict(paramwise_cfg={{_base_._petl_paramwise_cfg}})
