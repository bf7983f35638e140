# UperNet + HST with a self-supervised MAE ViT-B/16 trunk (timm `vit_base_patch16_224.mae`)
# on ADE20K, 160k iterations; the IN-21K config's recipe otherwise. MAE's weights expect
# ImageNet's mean / std, not AugReg's [-1, 1] scaling.
_base_ = ['./upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512.py']

data_preprocessor = dict(mean={{_base_._hst_mae_mean}}, std={{_base_._hst_mae_std}})
model = dict(data_preprocessor=data_preprocessor, backbone=dict(pretrained='mae'))
