"""The plain-PyTorch HST backbone: shapes, freezing, gradients, weights, parameter counts."""

import pytest
import timm
import torch

from hst_mm.models import HST, PretrainedMismatchError
from hst_mm.models.bridge import project_then_resize, resize_then_project


@pytest.mark.parametrize('size', [(224, 224), (512, 512), (230, 317), (64, 96)])
def test_output_shapes_and_strides(any_trunk_cfg, size):
    model = HST(**any_trunk_cfg).eval()
    H, W = size
    with torch.no_grad():
        outs = model(torch.randn(2, 3, H, W))
    assert len(outs) == 4
    h, w = H, W
    for out, c in zip(outs, any_trunk_cfg['embed_dims']):
        # the stem and each downsampling halve with ceil (3x3/s2/p1), the stem's 2x2/s2 floors
        if out is outs[0]:
            h, w = (h + 1) // 2 // 2, (w + 1) // 2 // 2
        else:
            h, w = (h + 1) // 2, (w + 1) // 2
        assert out.shape == (2, c, h, w)
    if H % 32 == 0 and W % 32 == 0:
        assert [o.shape[-2:] for o in outs] == [(H // s, W // s) for s in (4, 8, 16, 32)]


def test_outputs_are_dense_nchw(any_trunk_cfg):
    """Outputs are contiguous NCHW, not the channels-last views the token layout gives.

    mmcv's compiled RoIAlign (MMCV_OPS=compiled) reads its input as dense NCHW: with
    channels-last features a Mask R-CNN's RoI heads train on scrambled features and never
    learn (toy bbox mAP 0.005), while convolutional heads (RPN, mmseg) are unaffected."""
    from hst_mm.models import ViTPyramid

    trunk = {k: v for k, v in any_trunk_cfg.items() if k in ('trunk', 'trunk_kwargs')}
    for model in (HST(**any_trunk_cfg), ViTPyramid(**trunk)):
        for mode in (True, False):
            for out in model.train(mode)(torch.randn(2, 3, 64, 96)):
                assert out.is_contiguous(), type(model).__name__


def test_out_indices(tiny_cfg):
    model = HST(**{**tiny_cfg, 'out_indices': (1, 3)}).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 64]


@pytest.mark.parametrize(
    'bad, match',
    [
        (dict(embed_dims=(16, 33, 48, 64)), 'not divisible'),
        (dict(num_heads=(1, 2, 3)), 'one entry per stage'),
        (
            dict(embed_dims=(16, 32, 48), num_heads=(1, 2, 3), out_indices=(0, 1, 2)),
            'cannot be split evenly',
        ),
        (dict(out_indices=(0, 4)), 'out_indices'),
    ],
)
def test_bad_arguments_are_named(tiny_cfg, bad, match):
    with pytest.raises(ValueError, match=match):
        HST(**{**tiny_cfg, **bad})


def test_bad_inputs_are_named(tiny_cfg):
    model = HST(**tiny_cfg).eval()
    with pytest.raises(ValueError, match='3-channel'):
        model(torch.randn(1, 1, 64, 64))
    # the backbone pads an image below one patch (tests/test_backbone_inputs.py); the trunk
    # used alone names it
    with pytest.raises(ValueError, match='smaller than one trunk patch'):
        model.trunk(torch.randn(1, 3, 8, 64))
    assert [o.shape[-2:] for o in model(torch.randn(1, 3, 8, 64))] == [
        (2, 16),
        (1, 8),
        (1, 4),
        (1, 2),
    ]


def test_freezing(any_trunk_cfg):
    model = HST(**any_trunk_cfg)
    for name, p in model.trunk.vit.named_parameters():
        tuned = '.norm1.' in name or '.norm2.' in name
        assert p.requires_grad == tuned, name
    assert model.trunk.meta_tokens.requires_grad
    assert all(p.requires_grad for p in model.bridge.parameters())
    assert all(p.requires_grad for p in model.side.parameters())
    model.train()
    assert not model.trunk.vit.training and model.side.training
    assert all(
        p.requires_grad == ('.norm1.' in n or '.norm2.' in n)
        for n, p in model.trunk.vit.named_parameters()
    )


@pytest.mark.parametrize('with_cp', [False, True, 'side', 'trunk'])
def test_gradients_reach_exactly_the_trainable_parameters(any_trunk_cfg, with_cp):
    model = HST(**any_trunk_cfg, with_cp=with_cp).train()
    outs = model(torch.randn(2, 3, 64, 96))
    sum(o.square().mean() for o in outs).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, f'no gradient: {name}'
        else:
            assert p.grad is None, f'frozen parameter got a gradient: {name}'


@pytest.mark.parametrize(
    'with_cp, trunk_cp, side_cp',
    [(True, True, True), ('side', False, True), ('trunk', True, False)],
)
def test_activation_checkpointing_gives_same_gradients(tiny_cfg, with_cp, trunk_cp, side_cp):
    ref = HST(**tiny_cfg).train()
    cp = HST(**tiny_cfg, with_cp=with_cp).train()
    assert (cp.trunk.with_cp, cp.side.with_cp) == (trunk_cp, side_cp)
    cp.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 64)
    for m in (ref, cp):
        sum(o.sum() for o in m(x)).backward()
    for (n, a), b in zip(ref.named_parameters(), cp.parameters()):
        if a.requires_grad:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=n)


def test_with_cp_rejects_unknown_values(tiny_cfg):
    with pytest.raises(ValueError, match=r"with_cp='sides'.*'side'"):
        HST(**tiny_cfg, with_cp='sides')


def test_frozen_weights_unchanged_by_optimizer_step(tiny_cfg):
    model = HST(**tiny_cfg).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    for _ in range(2):
        opt.zero_grad()
        sum(o.mean() for o in model(torch.randn(2, 3, 64, 64))).backward()
        opt.step()
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p)
        assert changed == p.requires_grad, n
        if not p.requires_grad:
            assert p not in opt.state, f'optimizer state for frozen {n}'


def test_project_then_resize_equals_resize_then_project():
    proj = torch.nn.Linear(48, 16)
    patch_map = torch.randn(2, 48, 7, 9)
    for size in [(28, 36), (14, 18), (4, 5), (7, 9), (30, 41)]:
        torch.testing.assert_close(
            project_then_resize(patch_map, proj, size),
            resize_then_project(patch_map, proj, size),
            rtol=1e-5,
            atol=1e-5,
        )


def test_trunk_matches_timm_and_loads_saved_weights(any_trunk_cfg, tmp_path):
    vit = timm.create_model(
        any_trunk_cfg['trunk'], pretrained=False, **any_trunk_cfg['trunk_kwargs']
    )
    path = str(tmp_path / 'vit.pth')
    torch.save(vit.state_dict(), path)
    model = HST(**any_trunk_cfg, pretrained=path)
    ours = model.trunk.vit.state_dict()
    for k, v in vit.state_dict().items():
        if k.startswith(('head.', 'norm.', 'fc_norm.')):
            continue
        assert torch.equal(ours[k], v), k
    # and nothing but the unused head / final norm was dropped
    unused = ('head.', 'norm.', 'fc_norm.')
    assert set(ours) == {k for k in vit.state_dict() if not k.startswith(unused)}
    # the patch maps start after the prefix tokens, whatever their number
    assert model.trunk.vit.num_prefix_tokens == vit.num_prefix_tokens


def _plain_timm_loop(vit, meta_tokens, x):
    """The trunk written out over timm's own blocks, float64: before block l the meta token
    (1, 1, D) is concatenated in front, after it taken out again. Returns (metas (B, 1, D),
    patch maps (B, D, h, w)) per block; ``meta_tokens=None``: no meta token at all."""
    tokens = vit.patch_embed(x)  # (B, h, w, D)
    B, h, w, D = tokens.shape
    tokens = vit.norm_pre(vit._pos_embed(tokens))
    metas, maps = [], []
    for i, block in enumerate(vit.blocks):
        if meta_tokens is None:
            tokens = block(tokens)
        else:
            out = block(torch.cat([meta_tokens[i].expand(B, -1, -1), tokens], dim=1))
            metas.append(out[:, :1])
            tokens = out[:, 1:]
        patches = tokens[:, vit.num_prefix_tokens :]  # (B, h*w, D)
        maps.append(patches.transpose(1, 2).reshape(B, D, h, w))
    return metas, maps


@pytest.mark.parametrize('size', [(64, 64), (48, 80)])
@pytest.mark.parametrize(
    'options', [dict(lean=True), dict(lean=False), dict(lean=True, recompute_mlp=True)]
)
def test_meta_token_trunk_is_a_loop_over_timm_blocks(any_trunk_cfg, size, options):
    """MetaTokenViT (its own block computation when ``lean``) gives, float64, what timm's
    blocks give with each block's meta token put in front and taken out again; the meta
    tokens change the patch maps (so the comparison sees them)."""
    from hst_mm.models.trunk import MetaTokenViT

    trunk = MetaTokenViT(any_trunk_cfg['trunk'], **options, **any_trunk_cfg['trunk_kwargs'])
    trunk = trunk.double().eval()
    with torch.no_grad():  # meta tokens of a trained size, LN-tuned norms off their init
        trunk.meta_tokens.normal_()
        for name, p in trunk.vit.named_parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        metas, maps = trunk(x)
        ref_metas, ref_maps = _plain_timm_loop(trunk.vit, trunk.meta_tokens, x)
        _, no_meta_maps = _plain_timm_loop(trunk.vit, None, x)
    assert len(maps) == len(ref_maps) == len(trunk.vit.blocks)
    grid = (size[0] // 16, size[1] // 16)
    for ours, ref, meta, ref_meta in zip(maps, ref_maps, metas, ref_metas):
        assert ours.shape == (2, trunk.embed_dim, *grid)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(meta, ref_meta, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(maps[-1], no_meta_maps[-1], atol=1e-3)


def test_pretrained_file_errors(tiny_cfg, tmp_path, saved_tiny_vit):
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        HST(**tiny_cfg, pretrained=str(tmp_path / 'missing.pth'))
    junk = tmp_path / 'junk.pth'
    junk.write_text('this is not a checkpoint')
    with pytest.raises(PretrainedMismatchError, match='junk.pth'):
        HST(**tiny_cfg, pretrained=str(junk))
    wide = timm.create_model('vit_tiny_patch16_224', depth=4, embed_dim=64, num_heads=2)
    torch.save(wide.state_dict(), tmp_path / 'wide.pth')
    with pytest.raises(PretrainedMismatchError, match=r'wide\.pth.*shape mismatches.*cls_token'):
        HST(**tiny_cfg, pretrained=str(tmp_path / 'wide.pth'))
    other = timm.create_model('resnet18')
    torch.save(other.state_dict(), tmp_path / 'resnet.pth')
    with pytest.raises(PretrainedMismatchError, match=r'resnet\.pth.*(missing keys|not a ViT)'):
        HST(**tiny_cfg, pretrained=str(tmp_path / 'resnet.pth'))


def test_pretrained_safetensors_and_position_resampling(tiny_cfg, tmp_path):
    from safetensors.torch import save_file

    # a checkpoint trained at 384 (24x24 grid) loads into the 224 trunk: timm resamples
    src = timm.create_model('vit_tiny_patch16_384', **tiny_cfg['trunk_kwargs'])
    save_file(src.state_dict(), str(tmp_path / 'vit384.safetensors'))
    model = HST(**tiny_cfg, pretrained=str(tmp_path / 'vit384.safetensors'))
    assert model.trunk.vit.pos_embed.shape == (1, 1 + 14 * 14, model.trunk.embed_dim)
    assert torch.equal(model.trunk.vit.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)


def test_pretrained_npz(tiny_cfg, tmp_path):
    """Google .npz files go through timm's JAX reader."""
    import numpy as np

    src = timm.create_model(tiny_cfg['trunk'], **tiny_cfg['trunk_kwargs'])
    sd = {k: v.numpy() for k, v in src.state_dict().items()}
    # write the big_vision layout timm reads (a subset is enough for the trunk)
    w = {
        'embedding/kernel': sd['patch_embed.proj.weight'].transpose(2, 3, 1, 0),
        'embedding/bias': sd['patch_embed.proj.bias'],
        'cls': sd['cls_token'],
        'Transformer/posembed_input/pos_embedding': sd['pos_embed'],
        'Transformer/encoder_norm/scale': sd['norm.weight'],
        'Transformer/encoder_norm/bias': sd['norm.bias'],
    }
    for i in range(4):
        p, b = f'Transformer/encoderblock_{i}/', f'blocks.{i}.'
        w[p + 'LayerNorm_0/scale'] = sd[b + 'norm1.weight']
        w[p + 'LayerNorm_0/bias'] = sd[b + 'norm1.bias']
        w[p + 'LayerNorm_2/scale'] = sd[b + 'norm2.weight']
        w[p + 'LayerNorm_2/bias'] = sd[b + 'norm2.bias']
        qkv_w = sd[b + 'attn.qkv.weight'].reshape(3, 2, 16, 32)  # (3, heads, hd, D)
        qkv_b = sd[b + 'attn.qkv.bias'].reshape(3, 2, 16)
        for j, n in enumerate('query key value'.split()):
            w[p + f'MultiHeadDotProductAttention_1/{n}/kernel'] = qkv_w[j].transpose(2, 0, 1)
            w[p + f'MultiHeadDotProductAttention_1/{n}/bias'] = qkv_b[j]
        w[p + 'MultiHeadDotProductAttention_1/out/kernel'] = sd[b + 'attn.proj.weight'].T.reshape(
            2, 16, 32
        )
        w[p + 'MultiHeadDotProductAttention_1/out/bias'] = sd[b + 'attn.proj.bias']
        for r, fc in ((0, 'fc1'), (1, 'fc2')):
            w[p + f'MlpBlock_3/Dense_{r}/kernel'] = sd[b + f'mlp.{fc}.weight'].T
            w[p + f'MlpBlock_3/Dense_{r}/bias'] = sd[b + f'mlp.{fc}.bias']
    np.savez(tmp_path / 'vit.npz', **w)
    model = HST(**tiny_cfg, pretrained=str(tmp_path / 'vit.npz'))
    ours = model.trunk.vit.state_dict()
    for k in (
        'patch_embed.proj.weight',
        'pos_embed',
        'blocks.3.attn.qkv.weight',
        'blocks.2.mlp.fc2.bias',
    ):
        torch.testing.assert_close(ours[k], src.state_dict()[k], msg=k)
    (tmp_path / 'bad.npz').write_bytes(b'not an npz')
    with pytest.raises(PretrainedMismatchError, match='bad.npz'):
        HST(**tiny_cfg, pretrained=str(tmp_path / 'bad.npz'))


def _trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    'embed_dims, num_heads, expected',
    [
        ((64, 128, 256, 384), (2, 4, 8, 12), 10.40e6),  # dense widths (spec)
        ((32, 48, 64, 72), (2, 4, 8, 12), 0.765e6),  # classification widths, no head
    ],
)
def test_trainable_parameters_vit_b(embed_dims, num_heads, expected):
    model = HST('vit_base_patch16_224', embed_dims=embed_dims, num_heads=num_heads)
    n = _trainable(model)
    assert abs(n - expected) / expected < 0.01, n
    # LN-tuning + meta tokens: 12 blocks x 2 norms x 2 x 768 + 12 x 768
    tuned = sum(p.numel() for n, p in model.trunk.named_parameters() if p.requires_grad)
    assert tuned == 12 * 2 * 2 * 768 + 12 * 768


def test_pretrained_source_kinds():
    """Hub ids with a slash are timm tags, not paths; files are recognised by suffix."""
    from hst_mm.models.pretrained import is_path

    assert not is_path('augreg_in21k')
    assert not is_path('timm/vit_base_patch16_224.augreg_in21k')
    assert is_path('B_16-i21k.npz') and is_path('./weights/vit') and is_path('/abs/vit.bin')


def test_names_before_0_2_still_work(tiny_cfg):
    from hst_mm.models import HSTBackbone, ViTPyramid, ViTSimplePyramid

    assert HSTBackbone is HST and ViTSimplePyramid is ViTPyramid
    with pytest.warns(DeprecationWarning, match='with_cp=True'):
        assert HST(**tiny_cfg, with_cp='all').with_cp is True
