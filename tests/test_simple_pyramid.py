"""The baselines' pyramid is ViT-Adapter's ViTBaseline: a LayerNorm on each tapped block,
GroupNorm in the stride-4 branch."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hst_mm.models import ViTPyramid
from workshop.fixtures import TINY_TRUNK as TINY


def _reference(model, x):
    """The pyramid written out from timm's block outputs and explicit norms, level by level."""
    feats = model.vit.forward_intermediates(
        x, indices=list(model.feature_blocks), norm=False, intermediates_only=True
    )
    outs = []
    for feat, ln, branch in zip(feats, model.norms, model.pyramid):
        f = F.layer_norm(feat.permute(0, 2, 3, 1), (feat.shape[1],), ln.weight, ln.bias, 1e-6)
        outs.append(branch(f.permute(0, 3, 1, 2)))
    return outs


def test_levels_are_the_normalised_taps():
    model = ViTPyramid(**TINY).eval()
    assert model.feature_blocks == (0, 1, 2, 3)
    for ln in model.norms:  # non-trivial affine parameters, so the test sees them
        nn.init.normal_(ln.weight)
        nn.init.normal_(ln.bias)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        for out, ref in zip(model(x), _reference(model, x)):
            torch.testing.assert_close(out, ref)


def test_stride_16_level_ignores_the_scale_of_its_tap():
    """Scaling the tapped block's output leaves the (normalised) 16x level unchanged."""
    model = ViTPyramid(**TINY, out_indices=(2,)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        (ref,) = model(x)
        handle = model.vit.blocks[2].register_forward_hook(lambda m, i, o: 1000.0 * o)
        (scaled,) = model(x)
        handle.remove()
        # without the norm the level would be 1000x larger
        torch.testing.assert_close(scaled, ref, atol=1e-4, rtol=1e-4)


def test_stride_4_branch_uses_group_norm():
    model = ViTPyramid(**TINY)
    up = model.pyramid[0]
    kinds = [type(m) for m in up]
    assert kinds == [nn.ConvTranspose2d, nn.GroupNorm, nn.GELU, nn.ConvTranspose2d]
    assert up[1].num_groups == 32
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert [type(n) for n in model.norms] == [nn.LayerNorm] * 4
    assert all(n.eps == 1e-6 for n in model.norms)


def test_norms_train_in_the_frozen_probe():
    model = ViTPyramid(**TINY, frozen=True).train()
    sum(o.square().mean() for o in model(torch.randn(2, 3, 64, 64))).backward()
    for name, p in model.named_parameters():
        if name.startswith('trunk.'):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(n.weight.requires_grad for n in model.norms)


def test_parameter_count_vit_b():
    """ViT-B: the pyramid is 4 LayerNorms (4 x 2 x 768 = 6,144) plus the branches; a
    GroupNorm has the parameters of the BatchNorm it replaces."""
    with torch.device('meta'):
        model = ViTPyramid('vit_base_patch16_224')
    norms = sum(p.numel() for p in model.norms.parameters())
    branches = sum(p.numel() for p in model.pyramid.parameters())
    assert norms == 6144
    d = 768
    convt = d * d * 4 + d
    assert branches == 3 * convt + 2 * d  # two ConvTs at 4x, one at 8x, GroupNorm
    assert sum(b.numel() for b in model.buffers()) == 0  # no BatchNorm statistics


def test_width_must_fit_the_groups():
    with pytest.raises(ValueError, match='32 groups'):
        ViTPyramid('vit_tiny_patch16_224', trunk_kwargs=dict(depth=4, embed_dim=48, num_heads=2))


def test_state_dict_of_the_old_layout_loads(tmp_path):
    """Before the ViT moved behind its wrapper (hst_mm 0.2.0) its keys were ``vit.*``; such
    a state dict loads into ``trunk.vit.*``, strictly, through torch and mmengine alike."""
    from mmengine.runner import load_checkpoint

    import hst_mm.registration as registration
    from hst_mm.engine.hooks.checkpoint_fit import check_checkpoint_fits

    saved = ViTPyramid(**TINY, frozen=True)
    old = {k.replace('trunk.vit.', 'vit.', 1): v for k, v in saved.state_dict().items()}
    assert any(k.startswith('vit.') for k in old) and not any('trunk' in k for k in old)
    model = ViTPyramid(**TINY, frozen=True)
    model.load_state_dict(old)  # strict
    assert all(torch.equal(v, saved.state_dict()[k]) for k, v in model.state_dict().items())
    path = tmp_path / 'old.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in old.items()}}, path)

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = registration.ViTPyramid(**TINY, frozen=True)

    detector = Detector()
    # the fit check renames as the load does: an old checkpoint is not refused
    check_checkpoint_fits(detector, torch.load(path, weights_only=True), str(path))
    load_checkpoint(detector, str(path), strict=True)
    assert torch.equal(detector.backbone.vit.pos_embed, saved.vit.pos_embed)
