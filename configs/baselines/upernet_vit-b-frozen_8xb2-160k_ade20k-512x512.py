# Baseline (frozen-trunk probe): UperNet on a frozen ViT-B/16 IN-21K; only the simple pyramid
# and the heads train; the HST UperNet recipe otherwise.
_base_ = ['./upernet_vit-b-full_8xb2-160k_ade20k-512x512.py']

model = dict(backbone=dict(frozen=True, drop_path_rate=0.0))
