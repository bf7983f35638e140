# The paper's PETL comparison rows: the frozen ViT-B/16 IN-21K of the frozen-trunk probe, its
# ViTBaseline pyramid (trained), and one parameter-efficient method on the trunk. One backbone per
# method, `_petl_<method>_backbone`; only `_petl_*` helper variables, so this file composes with
# any base. Helpers are `_`-prefixed (mmengine keeps them for the configs that read them;
# tools/train.py, tools/test.py and RunConfigHook leave them out of the run's saved config);
# helpers used only in this file are `__`-prefixed (mmengine drops those itself). Ranks / token
# counts are chosen so that Mask R-CNN 1x has the paper's trainable parameters (LoRA 28.4M, VPT
# 28.4M, SSF 28.0M; tests/test_petl_configs.py).
__petl_frozen_vitb = dict(
    _delete_=True,
    type='ViTPyramid',
    trunk='vit_base_patch16_224',
    pretrained='augreg_in21k',
    frozen=True,
    drop_path_rate=0.0,
    with_cp=False,
)
# LoRA rank 16 on the fused qkv projection of every block (alpha 16: update scale 1).
_petl_lora_backbone = dict(
    __petl_frozen_vitb, petl=dict(method='lora', rank=16, alpha=16, targets=['qkv'], dropout=0.0)
)
# VPT-deep: 64 prompt tokens per block.
_petl_vpt_backbone = dict(__petl_frozen_vitb, petl=dict(method='vpt', num_tokens=64))
# AdaptFormer: bottleneck 64, scale 0.1 (AdaptFormer's defaults).
_petl_adaptformer_backbone = dict(
    __petl_frozen_vitb, petl=dict(method='adaptformer', bottleneck=64, scale=0.1)
)
# SSF: scale and shift after the patch embedding and every block's LNs and Linears.
_petl_ssf_backbone = dict(__petl_frozen_vitb, petl=dict(method='ssf'))

# Prompts and scale/shift vectors get no weight decay, as norms and tokens in the HST recipe.
_petl_paramwise_cfg = dict(
    custom_keys={
        'backbone.petl.prompts': dict(decay_mult=0.0),
        'backbone.petl.scale_shifts': dict(decay_mult=0.0),
    }
)
