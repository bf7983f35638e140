# Baseline: the same ViT-B/16 IN-21K, fully fine-tuned, with a simple feature pyramid
# (ViT-Adapter's ViTBaseline layout); the HST 1x recipe otherwise.
_base_ = ['../hst/mask-rcnn_hst-vit-b_fpn_1x_coco.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='ViTPyramid',
        trunk='vit_base_patch16_224',
        pretrained='augreg_in21k',
        frozen=False,
        drop_path_rate=0.1,
        with_cp=False),
    neck=dict(in_channels=[768, 768, 768, 768]))

