# Baseline: UperNet on the same ViT-B/16 IN-21K, fully fine-tuned, with a simple feature
# pyramid (ViT-Adapter's ViTBaseline layout); the HST UperNet recipe otherwise.
_base_ = ['../hst/upernet_hst-vit-b_8xb2-160k_ade20k-512x512.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='ViTPyramid',
        trunk='vit_base_patch16_224',
        pretrained='augreg_in21k',
        frozen=False,
        drop_path_rate=0.1,
        with_cp=False),
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    auxiliary_head=dict(in_channels=768))
