"""Trainable-only checkpoints (hst_mm.engine.trainable_export, tools/export_trainable.py):
what is kept, exact reloading through CheckpointFitHook, refusals."""

import hashlib
import os
import pickle
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint_to_model

import hst_mm  # noqa: F401  (registers HST, allow-lists checkpoint types)
from hst_mm import atomic_write
from hst_mm.analysis.paper_table import read_run
from hst_mm.engine.frozen_trunk import restorable_frozen_keys
from hst_mm.engine.hooks import CheckpointFitHook, CheckpointMismatchError
from hst_mm.engine.trainable_export import (
    ExportError,
    build_model,
    export_trainable,
    main,
    save_atomically,
)
from workshop.fixtures import shrink_to_tiny

from conftest import ROOT, TOY_DET_CONFIG
from tool_runner import ensure_toy_data, run_main

TRUNK = 'data/toy/vit_tiny_patch16_224.random.pth'


def toy_config(pretrained=TRUNK) -> Config:
    cfg = Config.fromfile(str(ROOT / TOY_DET_CONFIG))
    cfg.model.backbone.pretrained = str(ROOT / pretrained) if pretrained else None
    return cfg


@pytest.fixture(scope='module')
def full_checkpoint(tmp_path_factory):
    """A toy Mask R-CNN checkpoint as the Runner saves one, with every trainable weight and
    the side stem's BatchNorm statistics moved away from their initial values."""
    ensure_toy_data()
    cfg = toy_config()
    torch.manual_seed(0)
    model = build_model(cfg)
    model.init_weights()  # loads the trunk file
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.01)
        for name, b in model.named_buffers():
            if name.endswith(('running_mean', 'running_var')):
                b.add_(0.5)
    path = tmp_path_factory.mktemp('export') / 'iter_4.pth'
    torch.save(
        dict(
            meta=dict(cfg=cfg.pretty_text, iter=4, dataset_meta=dict(classes=('a', 'b', 'c'))),
            state_dict=model.state_dict(),
            optimizer=dict(state={0: dict(step=torch.tensor(4.0))}, param_groups=[]),
            message_hub=dict(log_scalars={}),
        ),
        path,
    )
    return path, model.eval()


@pytest.fixture
def exported(full_checkpoint, tmp_path):
    path, model = full_checkpoint
    summary = export_trainable(str(path), str(tmp_path / 'trainable.pth'))
    out = summary['out']
    return out, torch.load(out, weights_only=True), summary, model


def test_export_holds_exactly_the_trainable_weights(exported):
    out, ckpt, summary, model = exported
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    params = dict(model.named_parameters())
    kept_params = [k for k in ckpt['state_dict'] if k in params]
    assert set(kept_params) == trainable
    assert (
        summary['kept_params']
        == summary['trainable_params']
        == sum(p.numel() for p in model.parameters() if p.requires_grad)
    )
    # the trainable side stem's BatchNorm statistics travel with it
    assert 'backbone.side.stem.conv.1.running_mean' in ckpt['state_dict']
    # tuned trunk LayerNorms and meta tokens are kept, frozen trunk weights are not
    assert 'backbone.trunk.vit.blocks.0.norm1.weight' in ckpt['state_dict']
    assert 'backbone.trunk.meta_tokens' in ckpt['state_dict']
    assert 'backbone.trunk.vit.blocks.0.attn.qkv.weight' not in ckpt['state_dict']
    assert set(ckpt) == {'meta', 'state_dict'}  # no optimizer or message hub
    info = ckpt['meta']['trainable_only']
    assert set(info['omitted']) == set(model.state_dict()) - set(ckpt['state_dict'])
    assert info['pretrained'] == {'backbone': str(ROOT / TRUNK)}
    assert info['trunk'] == {'backbone': 'vit_tiny_patch16_224'}
    assert ckpt['meta']['dataset_meta'] == dict(classes=('a', 'b', 'c'))
    assert summary['export_mb'] < summary['checkpoint_mb']


def fake_runner(model, path, resume=False):
    return SimpleNamespace(model=model, _load_from=str(path), _resume=resume)


def load_like_the_runner(model, ckpt, path, allowed=()):
    """What mmengine's Runner.load_checkpoint does: the hook, then a non-strict copy."""
    CheckpointFitHook(allowed).after_load_checkpoint(fake_runner(model, path), ckpt)
    _load_checkpoint_to_model(model, ckpt, strict=False)
    return model.eval()


@pytest.mark.parametrize('init', [True, False], ids=['load_from', 'test_tool'])
def test_reload_reproduces_the_full_model_exactly(exported, init):
    """load_from (init_weights ran: the trunk is loaded) and tools/test.py (it did not)."""
    out, ckpt, _, full = exported
    torch.manual_seed(1)  # other random initial weights than the exported model's
    model = build_model(toy_config())
    if init:
        model.init_weights()
    load_like_the_runner(model, ckpt, out)
    ours, theirs = model.state_dict(), full.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    x = torch.rand(2, 3, 128, 96)
    with torch.no_grad():
        for a, b in zip(model.extract_feat(x), full.extract_feat(x)):
            assert torch.equal(a, b)


def test_plain_loading_restores_the_trunk_too(exported):
    """What mmdet's DetInferencer / mmseg's MMSegInferencer and mmengine's load_checkpoint
    do, without the hook: a non-strict copy into a model whose init_weights() never ran.
    The backbone loads its trunk from ``pretrained`` first, so the outputs are exact."""
    out, ckpt, _, full = exported
    torch.manual_seed(1)
    model = build_model(toy_config())
    _load_checkpoint_to_model(model, ckpt, strict=False)
    model.eval()
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        for a, b in zip(model.extract_feat(x), full.extract_feat(x)):
            assert torch.equal(a, b)
    # without a pretrained source the model would run on a random trunk: refused
    bare = build_model(toy_config(pretrained=None))
    with pytest.raises(ValueError, match='without its frozen trunk.*pretrained is not set'):
        _load_checkpoint_to_model(bare, ckpt, strict=False)


def test_hook_accepts_only_the_listed_frozen_trunk_keys(exported):
    out, ckpt, _, _ = exported
    lacking = dict(ckpt, state_dict=dict(ckpt['state_dict']))
    del lacking['state_dict']['neck.lateral_convs.0.conv.weight']
    with pytest.raises(CheckpointMismatchError, match=r'missing keys: neck\.lateral_convs\.0'):
        load_like_the_runner(build_model(toy_config()), lacking, out)
    # a full checkpoint without the marker may lack nothing
    unmarked = dict(meta={}, state_dict=ckpt['state_dict'])
    with pytest.raises(CheckpointMismatchError, match='missing keys: backbone.trunk.vit'):
        load_like_the_runner(build_model(toy_config()), unmarked, out)
    # an export that claims to have left out a trained weight
    info = dict(ckpt['meta']['trainable_only'])
    info['omitted'] = {**info['omitted'], 'backbone.trunk.vit.blocks.0.norm1.weight': '0'}
    state = {
        k: v
        for k, v in ckpt['state_dict'].items()
        if k != 'backbone.trunk.vit.blocks.0.norm1.weight'
    }
    claims = dict(meta=dict(ckpt['meta'], trainable_only=info), state_dict=state)
    with pytest.raises(CheckpointMismatchError, match='blocks.0.norm1.weight'):
        load_like_the_runner(build_model(toy_config()), claims, out)


def test_hook_refuses_an_export_without_its_trunk(exported, tmp_path):
    out, ckpt, _, _ = exported
    with pytest.raises(CheckpointMismatchError, match='pretrained is not set'):
        load_like_the_runner(build_model(toy_config(pretrained=None)), ckpt, out)
    # another trunk file: the digests differ, the outputs would not be reproduced
    import timm

    torch.manual_seed(5)
    other = tmp_path / 'other_vit.pth'
    torch.save(timm.create_model('vit_tiny_patch16_224').state_dict(), other)
    with pytest.raises(
        CheckpointMismatchError, match='trunk weights from .*other_vit.pth are not the ones'
    ):
        load_like_the_runner(build_model(toy_config(pretrained=str(other))), ckpt, out)
    with pytest.raises(CheckpointMismatchError, match='cannot resume training'):
        CheckpointFitHook().after_load_checkpoint(
            fake_runner(build_model(toy_config()), out, resume=True), ckpt
        )


def test_the_file_is_named_with_its_sha256_prefix(full_checkpoint, tmp_path, capsys):
    """As mmdet's publish_model.py: OUT-<sha256[:8]>.pth, the path printed; --no-hash keeps
    OUT (test below); the same export again is refused rather than rewritten."""
    path, _ = full_checkpoint
    out = tmp_path / 'model.pth'
    s = main([str(path), str(out)])
    written = s['out']
    digest = hashlib.sha256(open(written, 'rb').read()).hexdigest()
    assert written == str(tmp_path / f'model-{digest[:8]}.pth')
    assert not out.exists() and os.listdir(tmp_path) == [os.path.basename(written)]
    assert capsys.readouterr().out.startswith(f'wrote {written}:')
    with pytest.raises(SystemExit, match=f'{written} exists; pass --force'):
        main([str(path), str(out)])


def test_refuses_to_overwrite_and_never_leaves_a_partial_file(
    full_checkpoint, tmp_path, monkeypatch
):
    path, _ = full_checkpoint
    out = tmp_path / 'out.pth'
    out.write_bytes(b'mine')
    with pytest.raises(ExportError, match='exists; pass --force'):
        export_trainable(str(path), str(out), hash_name=False)
    assert out.read_bytes() == b'mine'
    assert export_trainable(str(path), str(out), force=True, hash_name=False)['out'] == str(out)
    assert 'trainable_only' in torch.load(out, weights_only=True)['meta']
    with pytest.raises(ExportError, match='already a trainable-only export'):
        export_trainable(str(out), str(tmp_path / 'again.pth'))

    # a real full disk: the temporary file is /dev/full, whose writes fail with ENOSPC
    target = tmp_path / 'full_disk.pth'
    target.write_bytes(b'mine')
    full = tmp_path / 'dev_full'
    os.symlink('/dev/full', full)
    monkeypatch.setattr(atomic_write, '_new_temporary', lambda path: str(full))
    with pytest.raises(ExportError) as e:
        save_atomically({'w': torch.zeros(10000)}, str(target), force=True)
    assert str(target) in str(e.value) and 'disk full' in str(e.value)
    assert target.read_bytes() == b'mine'
    target.unlink()
    assert not [p for p in os.listdir(tmp_path) if p.startswith('full_disk')]


class Payload:
    def __reduce__(self):
        return (print, ('ran',))


def test_foreign_checkpoints_are_refused_with_a_clear_message(tmp_path, capsys):
    classifier = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(8, 3, 7, 7)}}, classifier)
    with pytest.raises(SystemExit) as e:
        main([str(classifier), str(tmp_path / 'a.pth')])
    assert "no config in meta['cfg']" in str(e.value) and str(classifier) in str(e.value)
    with pytest.raises(SystemExit) as e:
        main([str(classifier), str(tmp_path / 'a.pth'), '--config', str(ROOT / TOY_DET_CONFIG)])
    assert f'{classifier}: does not fit' in str(e.value)
    assert 'unexpected keys: conv1.weight' in str(e.value)
    crafted = tmp_path / 'crafted.pth'
    with open(crafted, 'wb') as f:
        pickle.dump({'state_dict': Payload()}, f)
    with pytest.raises(SystemExit) as e:
        main([str(crafted), str(tmp_path / 'a.pth')])
    assert 'refused by the safe checkpoint loader' in str(e.value)
    assert 'ran' not in capsys.readouterr().out
    assert not (tmp_path / 'a.pth').exists()


def test_only_frozen_trunk_weights_are_left_out_of_the_baselines():
    """Full fine-tuning trains its whole ViT: nothing to leave out; the frozen probe leaves out
    its whole ViT but not its pyramid's BatchNorm statistics."""

    def tiny(config):
        cfg = Config.fromfile(str(ROOT / 'configs/baselines' / config))
        return build_model(shrink_to_tiny(cfg, keep_pretrained=True))

    assert restorable_frozen_keys(tiny('mask-rcnn_vit-b-full_fpn_amp-1x_coco.py')) == []
    frozen = tiny('mask-rcnn_vit-b-frozen_fpn_amp-1x_coco.py')
    keys = restorable_frozen_keys(frozen)
    assert keys and all(k.startswith('backbone.trunk.vit.') for k in keys)
    assert set(keys) == {n for n, p in frozen.named_parameters() if not p.requires_grad}


@pytest.mark.slow
def test_tools_evaluate_and_draw_with_an_export(toy_det_run, toy_det_test, tmp_path, capsys):
    """The export tool's main on a trained toy checkpoint, then tools/test.py's and
    tools/demo.py's mains with the export: the same metrics as the full checkpoint
    (conftest.toy_det_test)."""
    given = tmp_path / 'trainable.pth'
    out = main([str(toy_det_run / 'iter_4.pth'), str(given)])['out']
    assert 'frozen trunk tensors left out' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='exists; pass --force'):
        main([str(toy_det_run / 'iter_4.pth'), str(given)])
    export_dir = tmp_path / 'export'
    tested = dict(
        full=toy_det_test,
        export=(
            export_dir,
            run_main(['tools/test.py', TOY_DET_CONFIG, out, '--work-dir', export_dir]),
        ),
    )
    metrics = {}
    for name, (work_dir, returned) in tested.items():
        logged = read_run(str(work_dir)).evaluations['test'].metrics
        metrics[name] = {k: v for k, v in logged.items() if k.startswith('coco/')}
        assert metrics[name] == {k: v for k, v in returned.items() if k.startswith('coco/')}
    assert len(metrics['full']) == 12 and metrics['export'] == metrics['full']
    image = ROOT / 'data/toy/coco/val/000002.png'
    demo = ['tools/demo.py', image, TOY_DET_CONFIG, out, '--out', tmp_path / 'det.png']
    assert run_main(demo) is None
    assert (tmp_path / 'det.png').stat().st_size > 1000


def test_an_export_with_a_malformed_omitted_field_is_named(exported):
    """``omitted`` as a list of the right names (not name -> digest) used to end in a bare
    TypeError while the trunk was restored."""
    out, ckpt, _, _ = exported
    info = dict(ckpt['meta']['trainable_only'])
    info['omitted'] = list(info['omitted'])
    claims = dict(meta=dict(ckpt['meta'], trainable_only=info), state_dict=ckpt['state_dict'])
    with pytest.raises(CheckpointMismatchError, match='omitted') as e:
        load_like_the_runner(build_model(toy_config()), claims, out)
    assert str(out) in str(e.value)
