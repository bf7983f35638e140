"""The PETL rows' backbones (ViTPyramid with ``petl``): LoRA, VPT-deep, AdaptFormer, SSF on
the frozen trunk. Tiny trunks; the ViT-B counts are in tests/test_petl_configs.py."""

import copy

import pytest
import torch

from hst_mm.models import PretrainedMismatchError, ViTPyramid
from hst_mm.models.petl import METHODS
from workshop.fixtures import TINY_TRUNK, TRUNK_KINDS

# Small settings for a 32-wide trunk.
PETL = {
    'lora': dict(method='lora', rank=4, alpha=8),
    'lora_qkv_proj': dict(method='lora', rank=2, targets=['qkv', 'proj']),
    'vpt': dict(method='vpt', num_tokens=3),
    'adaptformer': dict(method='adaptformer', bottleneck=8),
    'ssf': dict(method='ssf'),
}
IDENTITY_AT_INIT = ('lora', 'lora_qkv_proj', 'adaptformer', 'ssf')


def _model(name, trunk_kwargs=None, **kw):
    kwargs = trunk_kwargs or TINY_TRUNK['trunk_kwargs']
    return ViTPyramid(TINY_TRUNK['trunk'], frozen=True, trunk_kwargs=kwargs, petl=PETL[name], **kw)


def _probe_like(model):
    """The frozen probe with ``model``'s trunk, norms and pyramid weights."""
    probe = ViTPyramid(TINY_TRUNK['trunk'], frozen=True, trunk_kwargs=model.trunk_kwargs)
    names = model.petl.trunk_parameter_names(model.vit)
    trunk = {
        model.petl.plain_key(k): v for k, v in model.vit.state_dict().items() if k not in names
    }
    assert set(trunk) == set(probe.vit.state_dict()), set(trunk) ^ set(probe.vit.state_dict())
    probe.vit.load_state_dict(trunk)
    probe.norms.load_state_dict(model.norms.state_dict())
    probe.pyramid.load_state_dict(model.pyramid.state_dict())
    return probe.eval()


def _petl_names(model):
    """Every parameter of the PETL method: in the method module or (LoRA) in the trunk."""
    inside = {f'trunk.vit.{n}' for n in model.petl.trunk_parameter_names(model.vit)}
    return inside | {f'petl.{n}' for n, _ in model.petl.named_parameters()}


def _perturb(model):
    """Move every PETL parameter away from its initialisation."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in _petl_names(model):
                p.add_(0.1 * torch.randn_like(p))


@pytest.mark.parametrize('kind', sorted(TRUNK_KINDS))
@pytest.mark.parametrize('name', sorted(PETL))
def test_only_petl_modules_and_pyramid_train(name, kind):
    model = _model(name, {**TINY_TRUNK['trunk_kwargs'], **TRUNK_KINDS[kind]}).train()
    assert not model.vit.training  # the trunk stays in eval mode
    petl = _petl_names(model)
    assert petl
    for n, p in model.named_parameters():
        expected = n in petl or n.startswith(('pyramid.', 'norms.'))
        assert p.requires_grad == expected, n
    _perturb(model)  # zero-initialised branches pass no gradient to what feeds them
    sum(o.square().mean() for o in model(torch.randn(2, 3, 64, 96))).backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, f'no gradient: {n}'
        else:
            assert p.grad is None, f'frozen parameter got a gradient: {n}'


@pytest.mark.parametrize('name', IDENTITY_AT_INIT)
def test_starts_as_the_frozen_probe(name):
    """Zero-initialised LoRA B / adapter up-projection, identity scale-shift: at
    initialisation the outputs are exactly the probe's; once trained they differ."""
    model = _model(name).eval()
    probe = _probe_like(model)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        for out, ref in zip(model(x), probe(x)):
            assert torch.equal(out, ref)
        _perturb(model)
        assert not torch.allclose(model(x)[2], probe(x)[2])


@pytest.mark.parametrize('kind', sorted(TRUNK_KINDS))
def test_vpt_prompts_stay_inside_each_block(kind):
    """Each block sees prefix + N prompts + patches; what leaves it (and reaches the
    pyramid) is prefix + patches only; the prompts change the features."""
    model = _model('vpt', {**TINY_TRUNK['trunk_kwargs'], **TRUNK_KINDS[kind]}).eval()
    probe = _probe_like(model)
    prefix, n = model.vit.num_prefix_tokens, 3
    seen_in, seen_out = [], []
    for blk in model.vit.blocks:  # registered after VPT's hooks, so they run after them
        blk.register_forward_pre_hook(lambda m, a: seen_in.append(a[0].shape[1]))
        blk.register_forward_hook(lambda m, a, o: seen_out.append(o.shape[1]))
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        outs, refs = model(x), probe(x)
    patches = (64 // 16) * (96 // 16)
    assert seen_in == [prefix + n + patches] * 4 and seen_out == [prefix + patches] * 4
    assert [o.shape for o in outs] == [r.shape for r in refs]
    assert all(not torch.allclose(o, r) for o, r in zip(outs, refs))


def test_adaptformer_is_parallel_to_the_mlp():
    """Block output = x + MLP(LN2(x)) + s * up(ReLU(down(x))), x after the attention."""
    model = _model('adaptformer').eval()
    _perturb(model)
    blk, adapter = model.vit.blocks[1], model.petl.adapters[1]
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        mid = x + blk.attn(blk.norm1(x))
        expected = mid + blk.mlp.fc2(blk.mlp.act(blk.mlp.fc1(blk.norm2(mid))))
        expected = expected + 0.1 * adapter.up(torch.relu(adapter.down(mid)))
        torch.testing.assert_close(blk(x), expected)


def test_ssf_scales_and_shifts_every_target():
    model = _model('ssf')
    names = set(model.petl.scale_shifts)
    per_block = {'norm1', 'attn_qkv', 'attn_proj', 'norm2', 'mlp_fc1', 'mlp_fc2'}
    assert names == {'patch_embed'} | {f'blocks_{i}_{t}' for i in range(4) for t in per_block}
    assert model.petl.scale_shifts['blocks_0_attn_qkv'].scale.shape == (96,)
    qkv = model.vit.blocks[0].attn.qkv
    ss = model.petl.scale_shifts['blocks_0_attn_qkv']
    with torch.no_grad():
        ss.scale.normal_()
        ss.shift.normal_()
        x = torch.randn(3, 32)
        torch.testing.assert_close(
            qkv(x), torch.nn.functional.linear(x, qkv.weight, qkv.bias) * ss.scale + ss.shift
        )


@pytest.mark.parametrize('name', sorted(PETL))
def test_pretrained_trunk_loads_and_state_dict_round_trips(name, saved_tiny_vit):
    path, vit = saved_tiny_vit
    model = _model(name, pretrained=path)
    ref = vit.state_dict()
    petl = model.petl.trunk_parameter_names(model.vit)
    for k, v in model.vit.state_dict().items():
        if k not in petl:
            assert torch.equal(v, ref[model.petl.plain_key(k)]), k
    # a checkpoint of the whole backbone loads strictly into a fresh one, PETL weights included
    _perturb(model)
    fresh = _model(name)
    fresh.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(fresh.eval()(x), model.eval()(x)))


def test_pretrained_mismatch_is_named(tmp_path):
    import timm

    other = timm.create_model('vit_tiny_patch16_224', depth=3, embed_dim=32, num_heads=2)
    torch.save(other.state_dict(), tmp_path / 'short.pth')
    with pytest.raises(PretrainedMismatchError, match='short.pth'):
        _model('lora', pretrained=str(tmp_path / 'short.pth'))


@pytest.mark.parametrize('name', sorted(PETL))
def test_registered_init_weights_keeps_pretrained_trunk_and_petl_init(name, saved_tiny_vit):
    """mmengine's init_weights() never reaches timm's ViT init_weights() (which would re-draw
    every Linear, LoRA's too): the trunk is the pretrained one, the method's own parameters
    keep their initialisation (LoRA's B zero), so the model starts as the probe."""
    from mmengine.registry import MODELS

    import hst_mm  # noqa: F401

    path, vit = saved_tiny_vit
    backbone = MODELS.build(
        dict(type='ViTPyramid', **TINY_TRUNK, frozen=True, petl=PETL[name], pretrained=path)
    )
    petl = backbone.petl.trunk_parameter_names(backbone.vit)
    before = {k: v.clone() for k, v in backbone.vit.state_dict().items() if k in petl}
    backbone.init_weights()
    ref = vit.state_dict()
    for k, v in backbone.vit.state_dict().items():
        if k not in petl:
            assert torch.equal(v, ref[backbone.petl.plain_key(k)]), k
        else:
            assert torch.equal(v, before[k]), f'{k} was re-drawn by init_weights()'
            assert '.lora_B.' not in k or not v.any(), f'{k} is not zero after init_weights()'
    assert all(p.requires_grad == (n in petl) for n, p in backbone.vit.named_parameters())
    if name in IDENTITY_AT_INIT:
        probe = _probe_like(backbone)
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            assert all(torch.equal(a, b) for a, b in zip(backbone.eval()(x), probe(x)))


@pytest.mark.parametrize('name', sorted(PETL))
def test_frozen_weights_unchanged_by_optimizer_step(name):
    model = _model(name).train()
    params = dict(model.named_parameters())
    frozen = {n: p.clone() for n, p in params.items() if not p.requires_grad}
    petl = {n: params[n].clone() for n in _petl_names(model)}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        sum(o.square().mean() for o in model(torch.randn(2, 3, 64, 64))).backward()
        opt.step()
    for n, before in frozen.items():
        assert torch.equal(params[n], before), n
    # the method's parameters move (zero-initialised ones too, from the second step on)
    assert all(not torch.equal(params[n], before) for n, before in petl.items()), name


@pytest.mark.parametrize('name', sorted(PETL))
def test_deepcopy_is_independent(name):
    """mmengine's EMA deep-copies the model: the copy's hooks use the copy's parameters."""
    model = _model(name).eval()
    twin = copy.deepcopy(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        _perturb(twin)
        after = model(x)
        assert all(torch.equal(a, b) for a, b in zip(before, after))
        assert not torch.allclose(twin(x)[2], before[2])


@pytest.mark.parametrize('name', ['lora', 'vpt', 'adaptformer', 'ssf'])
def test_activation_checkpointing_gives_same_gradients(name):
    ref = _model(name).train()
    _perturb(ref)
    cp = _model(name, with_cp=True).train()
    cp.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 64)
    for m in (ref, cp):
        sum(o.square().mean() for o in m(x)).backward()
    grads = {n: p.grad for n, p in ref.named_parameters() if p.requires_grad}
    for n, p in cp.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads[n], msg=n)


def test_bad_petl_arguments_are_named():
    with pytest.raises(ValueError, match='frozen=True'):
        ViTPyramid(**TINY_TRUNK, frozen=False, petl=PETL['ssf'])
    with pytest.raises(ValueError, match="'prefix' is not one of"):
        ViTPyramid(**TINY_TRUNK, frozen=True, petl=dict(method='prefix'))
    with pytest.raises(ValueError, match="'method' key"):
        ViTPyramid(**TINY_TRUNK, frozen=True, petl=dict(rank=4))
    with pytest.raises(TypeError, match="petl method 'vpt'"):
        ViTPyramid(**TINY_TRUNK, frozen=True, petl=dict(method='vpt', rank=4))
    with pytest.raises(ValueError, match='LoRA targets'):
        ViTPyramid(**TINY_TRUNK, frozen=True, petl=dict(method='lora', targets=['fc1']))
    assert sorted(METHODS) == ['adaptformer', 'lora', 'ssf', 'vpt']
