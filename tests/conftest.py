"""Shared fixtures: tiny timm trunks so that backbone tests run in seconds on the CPU."""
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))           # hst_mm importable even before `pip install -e .`

# A 4-block, 32-wide ViT/16: one trunk block per side stage.
TINY_TRUNK = dict(trunk='vit_tiny_patch16_224',
                  trunk_kwargs=dict(depth=4, embed_dim=32, num_heads=2))
TINY_SIDE = dict(embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 3, 4))


@pytest.fixture
def tiny_cfg():
    return dict(**TINY_TRUNK, **TINY_SIDE)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def saved_tiny_vit(tmp_path):
    """A randomly initialised tiny timm ViT saved as a state dict, and the model itself."""
    import timm
    vit = timm.create_model(TINY_TRUNK['trunk'], pretrained=False, **TINY_TRUNK['trunk_kwargs'])
    path = tmp_path / 'tiny_vit.pth'
    torch.save(vit.state_dict(), path)
    return str(path), vit
