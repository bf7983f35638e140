"""The optimisations of HST against the reference computation they replace: the same
outputs and the same gradients of every parameter (float64), with less saved for backward.

Levers: the folded cross-attention (``fold_attention``), the lean trunk (``lean_trunk``),
the bridge's batched projection, and selective recomputation (``recompute``).
"""

import pytest
import torch

from hst_mm.models import HST, CrossAttention, SideBlock
from hst_mm.models.bridge import project_then_resize, resize_then_project
from hst_mm.models.trunk import _block_with_meta, lean_block_with_meta
from workshop.benchmark.saved import saved_activation_mb

REFERENCE = dict(fold_attention=False, lean_trunk=False)
VARIANTS = {
    'fold': dict(lean_trunk=False),
    'lean_trunk': dict(fold_attention=False),
    'default': {},
    'recompute_side': dict(recompute=('side',)),
    'recompute_all': dict(recompute=('side', 'trunk_mlp')),
    'recompute_with_cp_side': dict(recompute=('side', 'trunk_mlp'), with_cp='side'),
    'with_cp': dict(with_cp=True),
}


def _randomise(module):
    """Non-trivial values for every parameter (zero biases and unit norms hide errors)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.ndim == 1 else 0.0) * 0.1)
    return module


def _forward_backward(model, x):
    outs = model(x)
    loss = sum((o * torch.linspace(0.5, 1.5, o.numel()).view_as(o).to(o)).sum() for o in outs)
    loss.backward()
    return [o.detach() for o in outs]


@pytest.mark.parametrize('num_kv, num_heads', [(2, 1), (2, 4), (3, 2)])
def test_folded_cross_attention_equals_reference(num_kv, num_heads):
    torch.manual_seed(0)
    attn = _randomise(CrossAttention(16, num_heads)).double()
    x = torch.randn(2, 37, 16, dtype=torch.float64, requires_grad=True)
    kv = torch.randn(2, num_kv, 16, dtype=torch.float64, requires_grad=True)
    grads = []
    for fold in (False, True):
        attn.fold = fold
        attn.zero_grad()
        x.grad = kv.grad = None
        out = attn(x, kv)
        (out * out.detach().sign()).sum().backward()
        grads.append([out.detach(), x.grad, kv.grad, *(p.grad for p in attn.parameters())])
    for ref, ours in zip(*grads):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_side_block_recompute_gives_the_same_gradients():
    torch.manual_seed(0)
    block = _randomise(SideBlock(16, 2)).double()
    x = torch.randn(2, 50, 16, dtype=torch.float64, requires_grad=True)
    kv = torch.randn(2, 2, 16, dtype=torch.float64, requires_grad=True)
    fg = torch.randn(2, 50, 16, dtype=torch.float64, requires_grad=True)
    grads = []
    for recompute in (False, True):
        block.recompute = recompute
        block.zero_grad()
        x.grad = kv.grad = fg.grad = None
        out = block(x, kv, fg)
        out.square().sum().backward()
        grads.append(
            [out.detach(), x.grad, kv.grad, fg.grad, *(p.grad for p in block.parameters())]
        )
    for ref, ours in zip(*grads):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_lean_trunk_block_equals_timm_block(tiny_cfg):
    model = HST(**tiny_cfg).double()
    _randomise(model.trunk)
    block = model.trunk.vit.blocks[1]
    meta = torch.randn(2, 1, 32, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 17, 32, dtype=torch.float64, requires_grad=True)
    outs = []
    for fn in (_block_with_meta, lean_block_with_meta):
        meta.grad = x.grad = None
        block.zero_grad()
        out = fn(block, meta, x)
        out.square().sum().backward()
        outs.append(
            [out.detach(), meta.grad, x.grad, block.norm1.weight.grad, block.norm2.bias.grad]
        )
    for ref, ours in zip(*outs):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_bridge_projects_a_strided_view_as_a_copy():
    """The lean trunk hands the bridge a non-contiguous view of its token tensor."""
    proj = _randomise(torch.nn.Linear(48, 16)).double()
    tokens = torch.randn(2, 1 + 1 + 7 * 9, 48, dtype=torch.float64)
    view = tokens[:, 2:].transpose(1, 2).unflatten(2, (7, 9))  # (B, D, h, w), strided
    assert not view.is_contiguous()
    for size in [(28, 36), (7, 9), (4, 5)]:
        torch.testing.assert_close(
            project_then_resize(view, proj, size),
            resize_then_project(view.contiguous(), proj, size),
            rtol=1e-12,
            atol=1e-12,
        )


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_hst_variants_equal_the_reference(any_trunk_cfg, variant):
    """Outputs and every trainable parameter's gradient, float64, two input sizes."""
    torch.manual_seed(0)
    ref = _randomise(HST(**any_trunk_cfg, **REFERENCE)).double().train()
    ours = HST(**any_trunk_cfg, **VARIANTS[variant]).double().train()
    ours.load_state_dict(ref.state_dict())  # the same state dict layout
    assert list(ours.state_dict()) == list(ref.state_dict())
    for shape in [(2, 3, 64, 64), (1, 3, 48, 80)]:
        assert_same_as_reference(ref, ours, torch.randn(*shape, dtype=torch.float64))


def assert_same_as_reference(ref, ours, x):
    """``ours`` gives ``ref``'s outputs and trainable gradients on ``x`` to float64 rounding,
    and no gradient to what ``ref`` freezes."""
    for m in (ref, ours):
        m.zero_grad(set_to_none=True)
    for a, b in zip(_forward_backward(ref, x), _forward_backward(ours, x)):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-10)
    for (name, a), b in zip(ref.named_parameters(), ours.parameters()):
        if a.requires_grad:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-9, atol=1e-10, msg=name)
        else:
            assert b.grad is None, name


def test_hst_inference_equals_the_reference(tiny_cfg):
    ref = _randomise(HST(**tiny_cfg, **REFERENCE)).eval()
    ours = HST(**tiny_cfg, recompute=('side', 'trunk_mlp')).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 96, 64)
    with torch.inference_mode():
        for a, b in zip(ref(x), ours(x)):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_each_lever_saves_less_for_backward(tiny_cfg):
    """What autograd keeps falls with every lever, and only in the part the lever touches."""
    x = torch.randn(2, 3, 128, 128)
    steps = [
        ('reference', REFERENCE),
        ('fold', dict(lean_trunk=False)),
        ('lean_trunk', {}),
        ('recompute_side', dict(recompute=('side',))),
        ('recompute_all', dict(recompute=('side', 'trunk_mlp'))),
    ]
    saved = {}
    for name, kwargs in steps:
        torch.manual_seed(0)
        model = HST(**tiny_cfg, **kwargs).train()
        saved[name] = saved_activation_mb(model, lambda m=model: sum(o.mean() for o in m(x)))
    totals = [saved[name]['total'] for name, _ in steps]
    assert totals == sorted(totals, reverse=True) and len(set(totals)) == len(totals), saved
    side = lambda s: sum(v for k, v in s['parts'].items() if k.startswith('side'))  # noqa: E731
    assert side(saved['fold']) < side(saved['reference'])
    assert saved['fold']['parts']['trunk'] == saved['reference']['parts']['trunk']
    # the bridge keeps views of the trunk's block outputs (counted as the trunk's), not copies
    assert saved['lean_trunk']['parts'].get('bridge', 0) < saved['fold']['parts']['bridge']
    assert side(saved['recompute_side']) < side(saved['lean_trunk'])
    assert saved['recompute_all']['parts']['trunk'] < saved['recompute_side']['parts']['trunk']
    # what the trunk keeps between its modules (the recomputed MLP's input) is the trunk's,
    # though the side network runs the trunk's blocks
    assert not any('side' in s['parts'] for s in saved.values()), saved


def test_recomputed_stem_counts_each_batch_once_in_its_batchnorm(tiny_cfg):
    """The stem runs twice per step under ``recompute=('side',)``; its BatchNorm's running
    statistics (and batch count) are those of one run, and it saves less than without."""
    torch.manual_seed(0)
    plain = HST(**tiny_cfg).train()
    ours = HST(**tiny_cfg, recompute=('side',)).train()
    ours.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    for model in (plain, ours):
        for _ in range(2):
            sum(o.mean() for o in model(x)).backward()
    for (name, a), b in zip(plain.side.stem.named_buffers(), ours.side.stem.buffers()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)

    def stem_saved(model):
        return saved_activation_mb(model, lambda: sum(o.mean() for o in model(x)))['parts']

    assert stem_saved(ours)['side stage 1'] < stem_saved(plain)['side stage 1']


def test_recompute_rejects_unknown_values(tiny_cfg):
    with pytest.raises(ValueError, match=r"recompute=.*'trunk'.*'trunk_mlp'"):
        HST(**tiny_cfg, recompute=('trunk',))


def test_recommended_configuration_is_the_configs_default():
    """The benchmark's hst_lean row is what the HST configs train with."""
    from mmengine.config import Config

    from workshop.benchmark.modes import HST_OPTIONS

    from tool_runner import ROOT

    backbone = Config.fromfile(str(ROOT / 'configs/_base_/hst-vit-b.py'))._hst_backbone
    assert tuple(backbone.recompute) == HST_OPTIONS['hst_lean']['recompute']
    assert backbone.with_cp is False


@pytest.mark.parametrize('fold', [True, False])
def test_chunked_cpu_inference_equals_the_whole_maps(tiny_cfg, monkeypatch, fold):
    """Eval-mode Side Blocks on the CPU run token chunks (13 tokens here, which divide no
    stage's token count); the pyramid equals the one computed on whole maps."""
    model = _randomise(HST(**tiny_cfg, fold_attention=fold)).eval()
    x = torch.randn(2, 3, 96, 64)
    calls = []
    whole_maps = SideBlock.forward_chunked

    def counting(self, *args):
        calls.append(args[-1])
        return whole_maps(self, *args)

    with torch.inference_mode():
        monkeypatch.setattr(SideBlock, 'inference_chunk_bytes', 0)
        expected = model(x)
        monkeypatch.setattr(SideBlock, 'forward_chunked', counting)
        width = model.side.blocks[0].mlp.fc1.out_features
        monkeypatch.setattr(SideBlock, 'inference_chunk_bytes', 13 * 2 * width * 4)
        got = model(x)
    assert calls and calls[0] == 13  # the stride-4 stage (24 x 16 tokens) ran chunked
    for a, b in zip(expected, got):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
    # training forwards, and forwards that record gradients, use the whole maps
    calls.clear()
    model.train()
    model(x)
    model.eval()
    model(x)
    assert not calls


def test_hst_runs_trunk_and_side_network_interleaved(tiny_cfg):
    """HST bridges each trunk block as it comes (MetaTokenViT.iter_blocks): the same pyramid
    as the side network on the lists of a whole trunk run, and the trunk's block outputs are
    not all alive at once in inference."""
    model = _randomise(HST(**tiny_cfg)).double().eval()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        expected = model.side(x, zip(*model.trunk(x)), model.bridge)
        got = model(x)
    for a, b in zip(expected, got):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    order = []
    model.trunk.vit.blocks[1].norm1.register_forward_hook(lambda *a: order.append('block 1'))
    model.side.blocks[0].register_forward_hook(lambda *a: order.append('side step 0'))
    with torch.no_grad():
        model(x)
    assert order == ['side step 0', 'block 1']


def test_side_network_names_a_wrong_number_of_trunk_blocks(tiny_cfg):
    model = HST(**tiny_cfg).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        metas, patches = model.trunk(x)
        with pytest.raises(ValueError, match=r'gave 3 blocks; the side network needs 4'):
            model.side(x, zip(metas[:-1], patches[:-1]), model.bridge)
        with pytest.raises(ValueError, match=r'more than the 4 blocks'):
            model.side(x, zip(metas + metas[:1], patches + patches[:1]), model.bridge)
