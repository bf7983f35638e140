# The paper's baselines (detection and segmentation): the same ViT-B/16 IN-21K trunk as HST with a
# simple feature pyramid (ViT-Adapter's ViTBaseline layout), fully fine-tuned; the frozen-trunk
# probe sets frozen=True. `_vit*` helper variables only, so it composes with any base. Helpers
# are `_`-prefixed (mmengine keeps them for the configs that read them; tools/train.py,
# tools/test.py and RunConfigHook leave them out of the run's saved config); helpers used only in
# this file are `__`-prefixed (mmengine drops those itself).
_vitb_pyramid_backbone = dict(
    _delete_=True,
    type='ViTPyramid',
    trunk='vit_base_patch16_224',
    pretrained='augreg_in21k',
    frozen=False,
    drop_path_rate=0.1,
    with_cp=False,
)
# What ViTPyramid returns at every level (ViTPyramid.out_channels) is its trunk's width (timm's
# embed_dim), for the neck and the heads; configs on another trunk take theirs from here, e.g.
# [{{_base_._vit_widths.vit_large_patch16_224}}] * 4.
_vit_widths = dict(vit_tiny_patch16_224=192, vit_base_patch16_224=768, vit_large_patch16_224=1024)
_vitb_width = _vit_widths[_vitb_pyramid_backbone['trunk']]
_vitb_pyramid_channels = [_vitb_width] * 4

# Full fine-tuning with layer-wise lr decay (hst_mm's ViTLayerDecayOptimizerConstructor reads
# timm's block names): merged into the HST recipe's optim_wrapper (AdamW, mixed precision, no
# weight decay on norms and position embeddings), so only what differs is here.
# Detection follows ViTDet's ViT-B (mmdet projects/ViTDet): lr 1e-4, weight decay 0.1,
# decay 0.7 per block; ViTDet's total batch is 64, ours 16 at the same lr, as in ViT-Adapter's
# ViT-B detection configs.
_vitb_det_layer_decay = dict(
    constructor='ViTLayerDecayOptimizerConstructor',
    optimizer=dict(lr=1e-4, weight_decay=0.1),
    paramwise_cfg=dict(num_layers=12, decay_rate=0.7),
)
# Segmentation follows ViT-Adapter's UperNet DeiT-B on ADE20K: lr 6e-5, weight decay 0.01,
# decay 0.95 per block.
_vitb_seg_layer_decay = dict(
    constructor='ViTLayerDecayOptimizerConstructor',
    optimizer=dict(lr=6e-5, weight_decay=0.01),
    paramwise_cfg=dict(num_layers=12, decay_rate=0.95),
)

# The frozen-trunk probe: the same backbone with nothing in the ViT trained. Its configs keep
# the HST recipe (no layer decay: there is nothing in the trunk to decay).
_vitb_frozen_backbone = dict(_vitb_pyramid_backbone, frozen=True, drop_path_rate=0.0)
