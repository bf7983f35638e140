"""The backbones declare what they return (``out_channels``, ``out_strides``), and a model
config's neck can be given exactly that (tests/test_configs.py checks the shipped configs)."""

import pytest
import torch

from hst_mm.models import HST, ViTPyramid
from hst_mm.registration import fit_heads_to_backbone

from conftest import TINY_SIDE, TINY_TRUNK


@pytest.mark.parametrize(
    'backbone',
    [
        lambda: HST(**TINY_TRUNK, **TINY_SIDE, out_indices=(1, 3)),
        lambda: ViTPyramid(**TINY_TRUNK, out_indices=(0, 2)),
    ],
    ids=['HST', 'ViTPyramid'],
)
def test_declared_outputs_are_the_returned_ones(backbone):
    model = backbone().eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == list(model.out_channels)
    assert [(64 / o.shape[2], 96 / o.shape[3]) for o in outs] == [(s, s) for s in model.out_strides]


def test_fit_heads_to_backbone_without_a_neck():
    """UperNet: the decode head takes every map, the auxiliary head the one it reads."""
    cfg = dict(
        backbone=dict(type='HST', **TINY_TRUNK, **TINY_SIDE),
        decode_head=dict(in_channels=[1, 1, 1, 1]),
        auxiliary_head=dict(in_channels=1, in_index=2),
    )
    assert fit_heads_to_backbone(cfg) == TINY_SIDE['embed_dims']
    assert cfg['decode_head']['in_channels'] == list(TINY_SIDE['embed_dims'])
    assert cfg['auxiliary_head']['in_channels'] == TINY_SIDE['embed_dims'][2]
