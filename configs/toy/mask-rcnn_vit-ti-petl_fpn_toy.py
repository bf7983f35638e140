# A PETL row on the toy COCO set: Mask R-CNN on a frozen ViT-Ti/16 with the ViTBaseline
# pyramid and LoRA (configs/_base_/petl.py for the ViT-B rows); the other methods by option:
# --cfg-options model.backbone.petl.method=vpt (or adaptformer, ssf; each method's defaults).
# The trunk starts from the randomly initialised ViT-Ti that make_toy_data.py saves, loaded
# through the PETL trunk's pretrained path.
_base_ = ['./mask-rcnn_hst-vit-ti_fpn_toy.py', '../_base_/vit-b-pyramid.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='ViTPyramid',
        trunk='vit_tiny_patch16_224',
        pretrained='data/toy/vit_tiny_patch16_224.random.pth',
        frozen=True,
        petl=dict(method='lora'),
    ),
    neck=dict(in_channels=[{{_base_._vit_widths.vit_tiny_patch16_224}}] * 4),
)
