# The paper's baselines (detection and segmentation): the same ViT-B/16 IN-21K trunk as HST
# with a simple feature pyramid (ViT-Adapter's ViTBaseline layout), fully fine-tuned; the
# frozen-trunk probe sets frozen=True. A `vitb_*` variable only, so it composes with any base.
vitb_pyramid_backbone = dict(
    _delete_=True,
    type='ViTPyramid',
    trunk='vit_base_patch16_224',
    pretrained='augreg_in21k',
    frozen=False,
    drop_path_rate=0.1,
    with_cp=False,
)
vitb_pyramid_channels = [768, 768, 768, 768]
