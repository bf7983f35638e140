"""``HST(trunk_dtype='bfloat16')``: the frozen trunk matrices stored and computed in bfloat16,
everything that trains in float32; outputs within the stated tolerance of float32; pretrained
loading, checkpoints and trainable-only exports as for a float32 trunk."""

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint_to_model

import hst_mm  # noqa: F401  (registers HST)
from hst_mm.engine.hooks import CheckpointFitHook
from hst_mm.engine.trainable_export import build_model, export_trainable
from hst_mm.models import HST, PretrainedMismatchError
from workshop.fixtures import shrink_to_tiny

from conftest import ROOT, TOY_DET_CONFIG

BF16 = dict(trunk_dtype='bfloat16')


def _pair(tiny_cfg, **options):
    """A float32 HST and a bfloat16-trunk one with the same weights (rounded)."""
    ref = HST(**tiny_cfg, **options)
    low = HST(**tiny_cfg, **options, **BF16)
    low.load_state_dict(ref.state_dict())
    return ref, low


def _rel(ours, ref):
    ours, ref = ours.detach(), ref.detach()
    return float((ours - ref).abs().max() / ref.abs().max())


def test_frozen_matrices_are_bfloat16_and_what_trains_is_float32(tiny_cfg):
    model = HST(**tiny_cfg, **BF16)
    low = {n for n, p in model.named_parameters() if p.dtype == torch.bfloat16}
    assert low and all(not p.requires_grad for n, p in model.named_parameters() if n in low)
    assert all(n.endswith(('.weight', '.bias')) for n in low)
    assert 'trunk.vit.patch_embed.proj.weight' in low
    assert 'trunk.vit.blocks.0.mlp.fc1.weight' in low and 'trunk.vit.blocks.3.attn.qkv.bias' in low
    # every frozen linear / conv of the trunk, nothing else
    plain = HST(**tiny_cfg)
    matrices = {
        f'trunk.vit.{m}.{p}'
        for m, mod in plain.trunk.vit.named_modules()
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d))
        for p, _ in mod.named_parameters()
    }
    assert low == matrices
    assert list(model.state_dict()) == list(plain.state_dict())


@pytest.mark.parametrize(
    'options',
    [{}, dict(with_cp=True), dict(lean_trunk=False, recompute=('side',), grad_start=1)],
    ids=['default', 'with_cp', 'reference_trunk'],
)
def test_outputs_and_gradients_within_tolerance_of_float32(tiny_cfg, options):
    ref, low = _pair(tiny_cfg, **options)
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        (_, maps_ref), (_, maps_low) = ref.trunk(x), low.trunk(x)
    for a, b in zip(maps_ref, maps_low):
        assert b.dtype == torch.float32
        assert 0 < _rel(b, a) < 1e-2  # computed in bfloat16, within the stated 1%
    ref.train(), low.train()
    for m in (ref, low):
        outs = m(x)
        sum((o * o).sum() for o in outs).backward()
    for a, b in zip(ref(x), low(x)):
        assert b.dtype == torch.float32 and _rel(b, a) < 1e-2
    # the trunk's tuned parameters (whose gradients pass through the bfloat16 products), and
    # the whole gradient; a few side parameters whose gradient is near zero at this init (the
    # stem under BatchNorm) move as much under a 2**-9 relative change of float32 weights
    grads = [
        (n, p.grad.flatten(), q.grad.flatten())
        for (n, p), q in zip(ref.named_parameters(), low.parameters())
        if p.requires_grad
    ]
    for name, a, b in grads:
        if name.startswith('trunk.'):
            assert b.dtype == torch.float32
            assert F.cosine_similarity(a, b, dim=0) > 0.98, name
    whole = [torch.cat(g) for g in zip(*[(a, b) for _, a, b in grads])]
    assert F.cosine_similarity(*whole, dim=0) > 0.99


def test_pretrained_float32_file_loads_strictly_into_bfloat16(tiny_cfg, saved_tiny_vit, tmp_path):
    path, vit = saved_tiny_vit
    model = HST(**tiny_cfg, **BF16, pretrained=path)
    qkv = model.trunk.vit.blocks[1].attn.qkv.weight
    assert qkv.dtype == torch.bfloat16
    assert torch.equal(qkv, vit.blocks[1].attn.qkv.weight.to(torch.bfloat16))
    assert model.trunk.vit.blocks[1].norm1.weight.dtype == torch.float32
    state = vit.state_dict()
    del state['blocks.0.mlp.fc1.weight']
    torch.save(state, tmp_path / 'partial.pth')
    with pytest.raises(PretrainedMismatchError, match='missing keys: blocks.0.mlp.fc1.weight'):
        HST(**tiny_cfg, **BF16, pretrained=str(tmp_path / 'partial.pth'))


def test_state_dict_deepcopy_and_pickle_keep_the_dtype(tiny_cfg):
    _, low = _pair(tiny_cfg)
    x = torch.randn(1, 3, 32, 48)
    low.eval()
    with torch.no_grad():
        expected = low(x)
        for copy_ in (copy.deepcopy(low), pickle.loads(pickle.dumps(low))):
            for a, b in zip(expected, copy_(x)):
                assert torch.equal(a, b)
        again = HST(**tiny_cfg, **BF16).eval()
        again.load_state_dict(low.state_dict())
        for a, b in zip(expected, again(x)):
            assert torch.equal(a, b)


def test_runs_under_cpu_autocast(tiny_cfg):
    """mmengine's AMP wraps the step in autocast: the frozen layers leave the casts to it."""
    model = HST(**tiny_cfg, **BF16).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(1, 3, 32, 32))
        sum(o.float().sum() for o in outs).backward()
    assert all(torch.isfinite(o).all() for o in outs)
    assert model.trunk.vit.blocks[0].norm1.weight.grad is not None


def test_unknown_trunk_dtype_is_named(tiny_cfg):
    with pytest.raises(ValueError, match=r"trunk_dtype='float16': expected one of"):
        HST(**tiny_cfg, trunk_dtype='float16')


def test_trainable_only_export_of_both_trunk_options_reloads_exactly(saved_tiny_vit, tmp_path):
    """A toy Mask R-CNN on a bfloat16 trunk with grad_start=2: the export leaves out the
    frozen trunk (bfloat16 digests), and reloading it through CheckpointFitHook gives the
    exported model's weights and features exactly."""
    cfg = shrink_to_tiny(Config.fromfile(str(ROOT / TOY_DET_CONFIG)))
    cfg.model.backbone.update(pretrained=saved_tiny_vit[0], grad_start=2, **BF16)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.init_weights()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.01)
    full = tmp_path / 'iter_1.pth'
    torch.save(dict(meta=dict(cfg=cfg.pretty_text), state_dict=model.state_dict()), full)
    out = tmp_path / 'trainable.pth'
    export_trainable(str(full), str(out), hash_name=False)
    ckpt = torch.load(out, weights_only=True)
    assert 'backbone.trunk.vit.blocks.0.norm1.weight' not in ckpt['state_dict']  # frozen
    assert 'backbone.trunk.vit.blocks.2.norm1.weight' in ckpt['state_dict']
    assert 'backbone.trunk.meta_tokens_frozen' in ckpt['state_dict']
    torch.manual_seed(1)
    again = build_model(cfg)
    runner = type('Runner', (), dict(model=again, _load_from=str(out), _resume=False))
    CheckpointFitHook().after_load_checkpoint(runner, ckpt)
    _load_checkpoint_to_model(again, ckpt, strict=False)
    ours, theirs = again.state_dict(), model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) and ours[k].dtype == theirs[k].dtype for k in ours)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(again.eval().extract_feat(x), model.eval().extract_feat(x)):
            assert torch.equal(a, b)
