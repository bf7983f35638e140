"""``HST(grad_start=K)``: trunk blocks before K run without autograd. The forward values are
those of the paper's model (K=0); nothing before block K trains or stores for backward; the
trainable count drops by exactly those blocks' meta tokens and norms."""

import pytest
import torch
import torch.nn as nn

from hst_mm.analysis.count_params import count
from hst_mm.models import HST
from workshop.benchmark.saved import saved_activation_mb


def _train_step(model, x):
    model.zero_grad(set_to_none=True)
    outs = model(x)
    sum((o * torch.linspace(0.5, 1.5, o.numel()).view_as(o)).sum() for o in outs).backward()
    return [o.detach() for o in outs]


def _counts(model):
    """{part: {'total', 'trainable'}} of hst_mm.analysis.count_params, as in a detector."""
    return count(nn.ModuleDict(dict(backbone=model)))


OTHER_OPTIONS = {
    'default': {},
    'with_cp': dict(with_cp=True, recompute=('side', 'trunk_mlp')),
    'reference': dict(lean_trunk=False, fold_attention=False),
}


@pytest.mark.parametrize(
    'k, options', [(2, 'default'), (4, 'default'), (2, 'with_cp'), (3, 'reference')]
)
def test_blocks_before_k_get_no_gradient_and_the_rest_the_same(tiny_cfg, k, options):
    """Same seed, same weights: the outputs equal K=0's bit for bit, every parameter that
    still trains gets K=0's gradient, and nothing before block K gets one."""
    torch.manual_seed(0)
    ref = HST(**tiny_cfg, **OTHER_OPTIONS[options]).train()
    torch.manual_seed(0)
    ours = HST(**tiny_cfg, **OTHER_OPTIONS[options], grad_start=k).train()
    x = torch.randn(1, 3, 48, 64)
    for a, b in zip(_train_step(ref, x), _train_step(ours, x)):
        assert torch.equal(a, b)
    grads = {n: p.grad for n, p in ref.named_parameters()}
    tuned_tokens = ours.trunk.meta_tokens
    if tuned_tokens is not None:  # block k on: the tuned blocks' tokens, the same gradient
        torch.testing.assert_close(tuned_tokens.grad, grads['trunk.meta_tokens'][k:])
    frozen = []
    for name, p in ours.named_parameters():
        if name.startswith('trunk.meta_tokens'):
            continue
        block = name.split('.')[3] if name.startswith('trunk.vit.blocks.') else None
        if block is not None and int(block) < k or not p.requires_grad:
            assert not p.requires_grad and p.grad is None, name
            frozen.append(name)
        else:
            torch.testing.assert_close(p.grad, grads[name], rtol=1e-6, atol=1e-7, msg=name)
    assert f'trunk.vit.blocks.{k - 1}.norm2.bias' in frozen
    assert not ours.trunk.meta_tokens_frozen.requires_grad
    # block k - 1's outputs feed the T-Bridge: its projection still trains on them
    assert ours.bridge.proj[ours.bridge.stage_of_block[k - 1]].weight.grad.abs().sum() > 0


def test_blocks_before_k_record_no_graph(tiny_cfg):
    model = HST(**tiny_cfg, grad_start=2).train()
    graph = []
    for block in model.trunk.vit.blocks:
        block.attn.register_forward_hook(lambda m, a, out: graph.append(out.requires_grad))
    _train_step(model, torch.randn(1, 3, 32, 32))
    assert graph == [False, False, True, True]


def test_trainable_count_drops_by_exactly_the_blocks_tokens_and_norms(tiny_cfg):
    full = _counts(HST(**tiny_cfg))
    for k in (1, 3, 4):
        model = HST(**tiny_cfg, grad_start=k)
        rows = _counts(model)
        vit = model.trunk.vit
        norms = sum(
            p.numel()
            for b in range(k)
            for norm in (vit.blocks[b].norm1, vit.blocks[b].norm2)
            for p in norm.parameters()
        )
        tokens = k * model.trunk.embed_dim
        assert rows['all']['total'] == full['all']['total']
        assert rows['all']['trainable'] == full['all']['trainable'] - norms - tokens
        assert rows['meta tokens']['trainable'] == full['meta tokens']['trainable'] - tokens
        tuned = rows.get('trunk tuned', {'trainable': 0})['trainable']
        assert tuned == full['trunk tuned']['trainable'] - norms
    assert 'trunk tuned' not in rows and rows['meta tokens']['trainable'] == 0  # K = depth


def test_saves_less_for_backward_with_every_block_left_out(tiny_cfg):
    """What autograd keeps falls with K, and at K = depth the trunk keeps nothing."""
    x = torch.randn(2, 3, 128, 128)
    saved = {}
    for k in (0, 2, 4):
        model = HST(**tiny_cfg, grad_start=k, recompute=('side', 'trunk_mlp')).train()
        saved[k] = saved_activation_mb(model, lambda m=model: sum(o.mean() for o in m(x)))
    assert saved[0]['total'] > saved[2]['total'] > saved[4]['total'], saved
    assert saved[0]['parts']['trunk'] > saved[2]['parts']['trunk'] > 0, saved
    assert saved[4]['parts'].get('trunk', 0) == 0, saved


def test_freeze_and_load_pretrained_keep_the_blocks_before_k_frozen(tiny_cfg, saved_tiny_vit):
    path, _ = saved_tiny_vit
    model = HST(**tiny_cfg, grad_start=2)
    before = {n for n, p in model.named_parameters() if p.requires_grad}
    model.load_pretrained(path)
    model.trunk.freeze()
    assert {n for n, p in model.named_parameters() if p.requires_grad} == before
    assert 'trunk.vit.blocks.1.norm1.weight' not in before
    assert 'trunk.vit.blocks.2.norm1.weight' in before


def test_trainable_export_restores_the_frozen_norms_and_keeps_the_frozen_tokens(
    tiny_cfg, saved_tiny_vit
):
    """A trainable-only export leaves out the frozen norms of the blocks before K (the
    pretrained source restores them) and keeps their frozen meta tokens (it does not)."""
    from hst_mm.engine.frozen_trunk import restorable_frozen_keys
    from hst_mm.registration import HST as RegisteredHST

    path, _ = saved_tiny_vit
    keys = restorable_frozen_keys(RegisteredHST(**tiny_cfg, pretrained=path, grad_start=2))
    assert 'trunk.vit.blocks.1.norm2.weight' in keys
    assert 'trunk.vit.blocks.2.norm2.weight' not in keys
    assert not any('meta_tokens' in k for k in keys)


@pytest.mark.parametrize('k', [-1, 5, 1.0, True, '2'])
def test_grad_start_outside_the_trunk_is_named(tiny_cfg, k):
    with pytest.raises(ValueError, match=r'grad_start=.*from 0 .* to the trunk depth 4'):
        HST(**tiny_cfg, grad_start=k)
