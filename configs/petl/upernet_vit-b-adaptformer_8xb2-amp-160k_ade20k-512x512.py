# PETL row: UperNet 160k on ADE20K, frozen ViT-B/16 IN-21K with AdaptFormer
# (configs/_base_/petl.py); the frozen-trunk probe's recipe otherwise.
_base_ = ['../baselines/upernet_vit-b-frozen_8xb2-amp-160k_ade20k-512x512.py', '../_base_/petl.py']

model = dict(backbone={{_base_._petl_adaptformer_backbone}})
optim_wrapper = dict(paramwise_cfg={{_base_._petl_paramwise_cfg}})
