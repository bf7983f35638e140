# Shared by the HST configs (detection and segmentation): the backbone, its input
# normalisation and its optimiser. Only `_hst_*` helper variables, so this file never collides
# with the keys of mmdet's / mmseg's base configs; configs use them as {{_base_._hst_backbone}}.
# Helpers are `_`-prefixed (mmengine keeps them for the configs that read them; tools/train.py,
# tools/test.py and RunConfigHook leave them out of the run's saved config); helpers used only
# in this file are `__`-prefixed (mmengine drops those itself).

# ViT-B/16 trunk with ImageNet-21K AugReg weights, fetched by timm from the model hub
# (`vit_base_patch16_224.augreg_in21k`). Offline, point `pretrained` at a local file
# (.npz / .pth / .safetensors), e.g. --cfg-options model.backbone.pretrained=/path/B_16.npz
_hst_backbone = dict(
    _delete_=True,
    type='HST',
    trunk='vit_base_patch16_224',
    pretrained='augreg_in21k',
    embed_dims=[64, 128, 256, 384],  # what it returns: HST.out_channels
    num_heads=(2, 4, 8, 12),
    drop_path_rate=0.1,  # (choice) side blocks only; the trunk is frozen
    out_indices=(0, 1, 2, 3),
    with_cp=False,  # True: least memory, slowest; see README Benchmark
    # Exact selective recomputation (same outputs and gradients): the Side Blocks' LN1 with
    # the attention scores and LN2/fc1/GELU, the trunk blocks' norm2/fc1/GELU. The README's
    # recommended configuration (benchmark row hst_lean): 0.46x of full fine-tuning's peak
    # tensor memory at 0.75-0.79x of its step (ViT-B/16, 512x512, batch 2, CPU). ('side',)
    # alone (row hst_rc_side) is faster and keeps more (README Benchmark).
    recompute=('side', 'trunk_mlp'),
)
# Necks and decode heads take the backbone's widths, as `_hst_backbone.embed_dims`; mmseg's
# auxiliary FCN head reads the third map (in_index=2).
_hst_aux_in_channels = _hst_backbone['embed_dims'][2]

# AugReg ViTs were trained on images scaled to [-1, 1].
_hst_mean = [127.5, 127.5, 127.5]
_hst_std = [127.5, 127.5, 127.5]
# MAE ViTs (timm `vit_base_patch16_224.mae`) on ImageNet's mean / std, as timm's
# pretrained config says.
_hst_mae_mean = [123.675, 116.28, 103.53]
_hst_mae_std = [58.395, 57.12, 57.375]

# AdamW 1e-4, wd 0.05; no weight decay on norms, meta tokens and position embeddings.
_hst_paramwise_cfg = dict(
    norm_decay_mult=0.0,
    custom_keys={
        'meta_tokens': dict(decay_mult=0.0),
        'pos_embed': dict(decay_mult=0.0),
        'cls_token': dict(decay_mult=0.0),
    },
)
__hst_optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=_hst_paramwise_cfg,
)

# Mixed precision, mmengine's way (a `fp16=` key is ignored by the 3.x stack). Detection:
# float16 with dynamic loss scaling, because mmdet casts the RoIs to the features' dtype
# (SingleRoIExtractor: rois.type_as(feats[0])): float16 moves a coordinate below 2048 px by
# at most 0.5 px, bfloat16 by up to 4 px (tests/test_amp.py measures both). Segmentation has
# no RoIs: bfloat16, no loss scaling needed (a static scale of 1 still skips inf steps).
# Without a GPU, tools/train.py trains these configs in float32 (AmpOptimWrapper needs one).
_hst_optim_wrapper_fp16 = dict(
    __hst_optim_wrapper, type='AmpOptimWrapper', dtype='float16', loss_scale='dynamic'
)
_hst_optim_wrapper_bf16 = dict(
    __hst_optim_wrapper, type='AmpOptimWrapper', dtype='bfloat16', loss_scale=1.0
)

# ADE20K evaluation as in ViT-Adapter and mmseg's BEiT / MAE UperNet configs: sliding 512x512
# windows, stride 341 (overlapping by a third).
_hst_ade_test_cfg = dict(mode='slide', crop_size=(512, 512), stride=(341, 341))
