"""HST and the baselines' pyramid on foundation trunks: timm ``VisionTransformer`` (ViT,
DINOv2 with registers at patch 14) and ``Eva`` (EVA-02, DINOv3, Perception Encoder, mixed
RoPE), on tiny 4-block versions (workshop.fixtures.FOUNDATION_TRUNKS).

Exactness, float64: without meta tokens the HST trunk loop is timm's own forward; with them it
is timm's blocks with one more prefix token (the meta token skipped by RoPE as the class and
register tokens are); every lever gives the reference's outputs and gradients.
"""

import contextlib

import pytest
import timm
import torch
from test_exact_levers import (
    REFERENCE,
    VARIANTS,
    _randomise,
    assert_same_as_reference,
)

from hst_mm.models import HST, PretrainedMismatchError, ViTPyramid
from hst_mm.models.trunk import MetaTokenViT
from workshop.fixtures import FOUNDATION_TRUNKS, TINY_SIDE, TINY_TRUNK

# The kinds of trunk: the plain ViT (class token) and the foundation trunks.
KINDS = {'vit': TINY_TRUNK, **FOUNDATION_TRUNKS}
EVA_KINDS = sorted(k for k in FOUNDATION_TRUNKS if k != 'dinov2_reg4')
SIZES = [(64, 64), (48, 80)]  # square, and not a multiple of patch 14 nor of 32


def _trunk(kind, **options):
    cfg = KINDS[kind]
    return MetaTokenViT(cfg['trunk'], **options, **cfg['trunk_kwargs'])


def _perturb(trunk):
    """float64, eval, meta tokens of a trained size, tuned norms off their init."""
    trunk = trunk.double().eval()
    with torch.no_grad():
        trunk.meta_tokens.normal_()
        for p in trunk.vit.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    return trunk


@pytest.mark.parametrize('kind', sorted(KINDS))
def test_trunk_without_meta_tokens_is_timms_forward(kind):
    """With the meta tokens taken out (0 per block), the HST trunk loop (tokens, rotary
    embeddings, lean blocks, patch maps) equals timm's forward_intermediates and
    forward_features, float64."""
    trunk = _perturb(_trunk(kind))
    depth, D = trunk.depth, trunk.embed_dim
    trunk.meta_tokens = torch.nn.Parameter(torch.empty(depth, 1, 0, D, dtype=torch.float64))
    for size in SIZES:
        _check_bare_trunk(trunk, size)


def _check_bare_trunk(trunk, size):
    depth, D = trunk.depth, trunk.embed_dim
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        metas, maps = trunk(x)
        ref_maps = trunk.vit.forward_intermediates(
            x, indices=depth, norm=False, output_fmt='NCHW', intermediates_only=True
        )
        features = trunk.vit.forward_features(x)  # (B, P + h*w, D), final norm removed
    p = trunk.patch_size
    grid = (-(-size[0] // p), -(-size[1] // p))  # padded to whole patches
    assert [m.shape for m in maps] == [(2, D, *grid)] * depth
    assert all(m.shape == (2, 0, D) for m in metas)
    for ours, ref in zip(maps, ref_maps):
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    last = features[:, trunk.vit.num_prefix_tokens :].transpose(1, 2).unflatten(2, grid)
    torch.testing.assert_close(maps[-1], last, rtol=1e-12, atol=1e-12)


@contextlib.contextmanager
def _one_more_prefix_token(vit):
    """timm's own attention told that the sequence has one more prefix token (so RoPE skips
    it): the reference for HST's identity rows."""
    for block in vit.blocks:
        block.attn.num_prefix_tokens += 1
    try:
        yield
    finally:
        for block in vit.blocks:
            block.attn.num_prefix_tokens -= 1


def _timm_loop_with_meta(vit, meta_tokens, x):
    """Reference: timm's blocks on [meta_l, prefix, patches], the meta token taken out after
    each block; an Eva's rotary embedding as timm computes it, its attention skipping one
    more prefix token. Returns (metas (B, 1, D), maps (B, D, h, w)) per block."""
    tokens = vit.patch_embed(x)  # (B, h, w, D)
    B, h, w, D = tokens.shape
    eva = isinstance(vit, timm.models.eva.Eva)
    if eva:
        tokens, rope = vit._pos_embed(tokens)
    else:
        tokens, rope = vit._pos_embed(tokens), None
    tokens = vit.norm_pre(tokens)
    metas, maps = [], []
    with _one_more_prefix_token(vit) if eva else contextlib.nullcontext():
        for i, block in enumerate(vit.blocks):
            seq = torch.cat([meta_tokens[i].expand(B, -1, -1), tokens], dim=1)
            if eva:
                out = block(seq, rope=rope[i] if vit.rope_mixed else rope)
            else:
                out = block(seq)
            metas.append(out[:, :1])
            tokens = out[:, 1:]
            maps.append(tokens[:, vit.num_prefix_tokens :].transpose(1, 2).reshape(B, D, h, w))
    return metas, maps


@pytest.mark.parametrize(
    'options, size', [(dict(lean=False), SIZES[0]), (dict(lean=True, recompute_mlp=True), SIZES[1])]
)
@pytest.mark.parametrize('kind', sorted(KINDS))
def test_meta_token_trunk_is_timms_blocks_with_one_more_prefix_token(kind, options, size):
    trunk = _perturb(_trunk(kind, **options))
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        metas, maps = trunk(x)
        ref_metas, ref_maps = _timm_loop_with_meta(trunk.vit, trunk.meta_tokens, x)
        without = trunk.vit.forward_features(x)[:, trunk.vit.num_prefix_tokens :]
    for ours, ref, meta, ref_meta in zip(maps, ref_maps, metas, ref_metas):
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(meta, ref_meta, rtol=1e-12, atol=1e-12)
    # the meta tokens do change the patch maps, by far more than the tolerance (DINOv2's
    # layer scales of 1e-5 keep the change small)
    assert (maps[-1].flatten(2).transpose(1, 2) - without).abs().max() > 1e-8


@pytest.mark.parametrize(
    'kind, variant',
    [('eva02', 'recompute_all'), ('dinov3', 'recompute_all'), ('pe_core', 'recompute_all')]
    + [('dinov3', 'with_cp')],
)
def test_levers_equal_the_reference(kind, variant):
    """Outputs and every trainable parameter's gradient, float64, at a non-square input: the
    lean trunk (EvaBlock's own lean form) with recomputation, and checkpointing."""
    cfg = dict(**KINDS[kind], **TINY_SIDE)
    ref = _randomise(HST(**cfg, **REFERENCE)).double().train()
    ours = HST(**cfg, **VARIANTS[variant]).double().train()
    ours.load_state_dict(ref.state_dict())
    assert_same_as_reference(ref, ours, torch.randn(1, 3, *SIZES[1], dtype=torch.float64))


def _trainable(name):
    """What HST trains: the meta tokens, the trunk blocks' norm1 / norm2, bridge, side."""
    if name.startswith('trunk.vit.'):
        parts = name.split('.')
        return parts[2] == 'blocks' and parts[4] in ('norm1', 'norm2')
    return name == 'trunk.meta_tokens' or name.startswith(('bridge.', 'side.'))


@pytest.mark.parametrize('kind', sorted(FOUNDATION_TRUNKS))
def test_hst_trains_exactly_meta_tokens_norms_bridge_and_side(kind):
    """Four maps at strides 4 to 32; gradients reach exactly the trainable set, at a square
    and a non-square input."""
    model = HST(**KINDS[kind], **TINY_SIDE).train()
    for name, p in model.named_parameters():
        assert p.requires_grad == _trainable(name), name
    for size in [(64, 64), (64, 96)]:
        model.zero_grad(set_to_none=True)
        outs = model(torch.randn(2, 3, *size))
        assert [o.shape[-2:] for o in outs] == [
            (size[0] // s, size[1] // s) for s in model.out_strides
        ]
        sum(o.square().mean() for o in outs).backward()
        for name, p in model.named_parameters():
            if p.requires_grad:
                assert p.grad is not None and p.grad.abs().sum() > 0, f'no gradient: {name}'
            else:
                assert p.grad is None, f'frozen parameter got a gradient: {name}'


def test_a_lever_without_a_form_for_the_blocks_is_refused():
    """EVA-CLIP's post-norm blocks have no lean form: the constructor says so by name."""
    post_norm = dict(KINDS['eva02']['trunk_kwargs'], use_post_norm=True)
    with pytest.raises(ValueError, match=r'lean_trunk.*EvaBlockPostNorm.*lean_trunk=False'):
        HST('eva02_tiny_patch14_224', trunk_kwargs=post_norm, **TINY_SIDE)
    model = HST('eva02_tiny_patch14_224', trunk_kwargs=post_norm, lean_trunk=False, **TINY_SIDE)
    assert len(model(torch.randn(1, 3, 56, 56))) == 4
    with pytest.raises(ValueError, match=r"'trunk_mlp'.*lean_trunk=True"):
        HST(**KINDS['eva02'], **TINY_SIDE, lean_trunk=False, recompute=('trunk_mlp',))


@pytest.mark.parametrize('kind', ['eva02', 'pe_core'])
def test_eva_weights_load_strictly_from_a_file(kind, tmp_path):
    """A timm Eva's own state dict loads (its pooling, final norm and head dropped); one of
    another width is refused with the keys named."""
    cfg = KINDS[kind]
    src = timm.create_model(cfg['trunk'], **cfg['trunk_kwargs'])
    torch.save(src.state_dict(), tmp_path / 'eva.pth')
    model = HST(**cfg, **TINY_SIDE, pretrained=str(tmp_path / 'eva.pth'))
    ours = model.trunk.vit.state_dict()
    assert ours and all(torch.equal(v, src.state_dict()[k]) for k, v in ours.items())
    assert model.trunk.meta_tokens.requires_grad and not ours['cls_token'].requires_grad
    wide = timm.create_model(cfg['trunk'], **dict(cfg['trunk_kwargs'], embed_dim=64))
    torch.save(wide.state_dict(), tmp_path / 'wide.pth')
    with pytest.raises(PretrainedMismatchError, match=r'wide\.pth.*shape mismatches'):
        HST(**cfg, **TINY_SIDE, pretrained=str(tmp_path / 'wide.pth'))


@pytest.mark.parametrize('frozen', [True, False])
@pytest.mark.parametrize('kind', ['dinov3', 'eva02'])
def test_pyramid_baseline_on_an_eva_trunk(kind, frozen):
    """The baselines' ViTPyramid (full fine-tuning, frozen probe) on an Eva trunk: four maps
    of the trunk's width at p/4 .. 2p; the frozen probe trains nothing in the trunk."""
    model = ViTPyramid(**KINDS[kind], frozen=frozen).train()
    p = model.vit.patch_embed.patch_size[0]
    x = torch.randn(2, 3, 4 * p, 6 * p)
    outs = model(x)
    assert [tuple(o.shape) for o in outs] == [
        (2, 32, int(4 * p / s), int(6 * p / s)) for s in model.strides
    ]
    sum(o.square().mean() for o in outs).backward()
    for name, param in model.named_parameters():
        trains = not (frozen and name.startswith('trunk.'))
        assert param.requires_grad == trains, name
        assert (param.grad is not None) == trains, name


@pytest.mark.parametrize(
    'name',
    [
        'vit_small_patch16_dinov3',
        'eva02_tiny_patch14_224',
        'vit_pe_core_tiny_patch16_384',
        'vit_small_patch14_reg4_dinov2',
    ],
)
def test_full_size_trunks_build_with_their_layout(name):
    """The full-size timm models (built and run on the meta device: shapes, no values) give
    four maps at strides 4 to 32 and train exactly the meta tokens, norms, bridge and side
    network; the tiny versions above check the values and gradients."""
    with torch.device('meta'):
        model = HST(name, pretrained=None)
        for size in [(224, 224), (256, 320)]:
            outs = model(torch.empty(1, 3, *size))
            assert [tuple(o.shape) for o in outs] == [
                (1, c, size[0] // s, size[1] // s)
                for c, s in zip(model.out_channels, model.out_strides)
            ]
    assert model.out_strides == (4, 8, 16, 32)
    for param_name, p in model.named_parameters():
        assert p.requires_grad == _trainable(param_name), param_name


def test_petl_methods_refuse_an_eva_trunk():
    with pytest.raises(
        ValueError, match=r'PETL methods adapt timm VisionTransformer.*is a timm Eva'
    ):
        ViTPyramid(**KINDS['eva02'], frozen=True, petl=dict(method='vpt', num_tokens=4))


def test_mmengine_init_weights_keeps_an_eva_trunks_weights(tmp_path):
    """The registered HST loads an Eva trunk's file in init_weights(); timm's Eva.init_weights
    (which would re-draw every trunk weight) is never reached."""
    from mmseg.registry import MODELS

    import hst_mm.registration  # noqa: F401

    cfg = KINDS['dinov3']
    src = timm.create_model(cfg['trunk'], **cfg['trunk_kwargs'])
    torch.save(src.state_dict(), tmp_path / 'dinov3.pth')
    model = MODELS.build(
        dict(type='HST', **cfg, **TINY_SIDE, pretrained=str(tmp_path / 'dinov3.pth'))
    )
    model.init_weights()
    model.init_weights()
    for key, value in model.trunk.vit.state_dict().items():
        assert torch.equal(value, src.state_dict()[key]), key


def test_eva_weights_load_by_timm_tag(tmp_path):
    """The timm-tag path (timm.create_model(..., pretrained=True), hub replaced by a local file
    through timm's pretrained_cfg_overlay): Perception Encoder's attention pooling and final
    norm are left out, everything else loads strictly."""
    from hst_mm.models.pretrained import load_trunk_tag

    cfg = KINDS['pe_core']
    src = timm.create_model(cfg['trunk'], **cfg['trunk_kwargs'])
    torch.save(src.state_dict(), tmp_path / 'pe.pth')
    trunk = MetaTokenViT(cfg['trunk'], **cfg['trunk_kwargs'])
    overlay = dict(file=str(tmp_path / 'pe.pth'))
    load_trunk_tag(
        trunk.vit, cfg['trunk'], 'fb', pretrained_cfg_overlay=overlay, **cfg['trunk_kwargs']
    )
    ours = trunk.vit.state_dict()
    assert not any(k.startswith(('attn_pool.', 'norm.')) for k in ours)
    for key, value in ours.items():
        assert torch.equal(value, src.state_dict()[key]), key
