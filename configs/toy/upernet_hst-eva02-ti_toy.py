# UperNet + HST with an EVA-02 Ti/14 trunk (a timm Eva: rotary position embeddings, SwiGLU
# MLPs, patch 14) on the generated ADE20K-layout toy set (data/toy/ade); the ViT-Ti toy
# config's recipe otherwise. The trunk is randomly initialised (pretrained=None); the input
# normalisation is the one of EVA-02's weights (CLIP's mean / std), read from timm's
# pretrained config by trunk_pixel_stats.
_base_ = ['./upernet_hst-vit-ti_toy.py']
from hst_mm.models.pretrained import trunk_pixel_stats  # noqa: E402

_foundation_trunk = dict(trunk='eva02_tiny_patch14_224', pretrained=None)
data_preprocessor = trunk_pixel_stats(**_foundation_trunk)
model = dict(data_preprocessor=data_preprocessor, backbone=_foundation_trunk)
