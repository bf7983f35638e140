# Mask R-CNN + HST with the paper's second pretraining: a self-supervised MAE ViT-B/16
# (timm `vit_base_patch16_224.mae`, ImageNet-1K without labels), 1x schedule; the IN-21K
# config's recipe otherwise. MAE's weights expect ImageNet's mean / std, not AugReg's [-1, 1]
# scaling (timm's pretrained config for it). The weights have no classifier; the trunk's final
# norm is unused by dense heads in any case.
_base_ = ['./mask-rcnn_hst-vit-b_fpn_amp-1x_coco.py']

model = dict(
    data_preprocessor=dict(mean={{_base_._hst_mae_mean}}, std={{_base_._hst_mae_std}}),
    backbone=dict(pretrained='mae'),
)
