"""The PETL rows' configs: trainable parameters (ViT-B), and one training step of each method
through tools/train.py on the toy set."""

from pathlib import Path

import pytest

from hst_mm.analysis import count_params

ROOT = Path(__file__).resolve().parents[1]
METHODS = ('lora', 'vpt', 'adaptformer', 'ssf')
PROBE = 27_779_568  # the frozen-trunk probe's Mask R-CNN 1x: pyramid + FPN + heads
PROBE_UPERNET = 41_229_356
# the same frozen ViT-B and pyramid under the Cascade 3x heads (ViT-Adapter's 4conv1fc)
PROBE_CASCADE = 65_614_770

# Mask R-CNN 1x, trainable parameters: (expected, relative tolerance). LoRA, VPT and SSF are
# the paper's; AdaptFormer (not reported there) is this project's bottleneck-64 figure.
MASK_RCNN_1X = {
    'lora': (28.4e6, 0.01),
    'vpt': (28.4e6, 0.01),
    'ssf': (28.0e6, 0.01),
    'adaptformer': (PROBE + 1_189_632, 0),
}
# PETL parameters alone (ViT-B): LoRA r16 on qkv 16*(768+2304)*12; VPT 64*768*12;
# AdaptFormer r64 12*(2*768*64+64+768); SSF 2*768 + 12*2*(5*768+2304).
PETL_PARAMS = {'lora': 589_824, 'vpt': 589_824, 'adaptformer': 1_189_632, 'ssf': 204_288}


def _count(config):
    from mmengine.config import Config

    # on the meta device: the same counts (tests/test_configs.py checks), no ViT-B in memory
    cfg = Config.fromfile(str(ROOT / config))
    return count_params.count(count_params.build_model(cfg, meta=True))


@pytest.mark.parametrize('method', METHODS)
def test_mask_rcnn_1x_trainable_parameters(method):
    rows = _count(f'configs/petl/mask-rcnn_vit-b-{method}_fpn_amp-1x_coco.py')
    n = rows['all']['trainable']
    expected, tol = MASK_RCNN_1X[method]
    assert abs(n - expected) <= tol * expected, (method, n)
    assert rows['petl'] == {'total': PETL_PARAMS[method], 'trainable': PETL_PARAMS[method]}
    assert n == PROBE + PETL_PARAMS[method]
    assert rows['trunk frozen']['trainable'] == 0 and 'trunk tuned' not in rows


@pytest.mark.parametrize('method', METHODS)
def test_upernet_trainable_parameters(method):
    """This project's figures, inside the paper's 41.4-42.4M for its UperNet PETL rows."""
    n = _count(f'configs/petl/upernet_vit-b-{method}_8xb2-amp-160k_ade20k-512x512.py')['all']
    assert n['trainable'] == PROBE_UPERNET + PETL_PARAMS[method]
    assert 41.4e6 <= round(n['trainable'], -5) <= 42.4e6, n


@pytest.mark.parametrize('method', METHODS)
def test_cascade_trainable_parameters(method):
    """This project's figures (the paper gives no count for its Cascade PETL rows)."""
    n = _count(
        f'configs/petl/cascade-mask-rcnn_vit-b-{method}_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
    )['all']
    assert n['trainable'] == PROBE_CASCADE + PETL_PARAMS[method], n


def test_every_row_has_its_configs():
    names = {p.name for p in (ROOT / 'configs' / 'petl').glob('*.py')}
    for m in METHODS:
        assert {
            f'mask-rcnn_vit-b-{m}_fpn_amp-1x_coco.py',
            f'mask-rcnn_vit-b-{m}_fpn_amp-ms-crop-3x_coco.py',
            f'cascade-mask-rcnn_vit-b-{m}_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
            f'upernet_vit-b-{m}_8xb2-amp-160k_ade20k-512x512.py',
        } <= names, m


def test_configs_change_only_the_backbone():
    """Each PETL config is its base's recipe with the method's backbone (and neck widths)."""
    from mmengine.config import Config

    pairs = {
        'mask-rcnn_vit-b-{}_fpn_amp-1x_coco.py': (
            'baselines/mask-rcnn_vit-b-frozen_fpn_amp-1x_coco.py'
        ),
        'mask-rcnn_vit-b-{}_fpn_amp-ms-crop-3x_coco.py': (
            'hst/mask-rcnn_hst-vit-b_fpn_amp-ms-crop-3x_coco.py'
        ),
        'cascade-mask-rcnn_vit-b-{}_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py': (
            'hst/cascade-mask-rcnn_hst-vit-b_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
        ),
        'upernet_vit-b-{}_8xb2-amp-160k_ade20k-512x512.py': (
            'baselines/upernet_vit-b-frozen_8xb2-amp-160k_ade20k-512x512.py'
        ),
    }
    for pattern, base in pairs.items():
        ref = Config.fromfile(str(ROOT / 'configs' / base))
        for m in METHODS:
            cfg = Config.fromfile(str(ROOT / 'configs' / 'petl' / pattern.format(m)))
            bb = cfg.model.backbone
            assert (bb.type, bb.frozen, bb.petl.method) == ('ViTPyramid', True, m)
            assert bb.pretrained == 'augreg_in21k' and bb.trunk == 'vit_base_patch16_224'
            for key in ('train_dataloader', 'train_cfg', 'param_scheduler'):
                assert cfg[key] == ref[key], (pattern, m, key)
            assert cfg.optim_wrapper.optimizer == ref.optim_wrapper.optimizer
            heads = [k for k in ref.model if k not in ('backbone', 'neck', 'decode_head')]
            for key in heads:
                assert cfg.model[key] == ref.model[key], (pattern, m, key)


@pytest.mark.slow
@pytest.mark.parametrize('method', METHODS)
def test_one_training_step_through_train_tool(method, tmp_path):
    """tools/train.py's main, one iteration of the toy Mask R-CNN with each method; the checkpoint
    holds the frozen trunk exactly as loaded and the method's trained parameters."""
    import torch

    from tool_runner import ensure_toy_data, logged_steps, run_main

    data = ensure_toy_data()
    exit_code = run_main(
        [
            'tools/train.py',
            'configs/toy/mask-rcnn_vit-ti-petl_fpn_toy.py',
            '--work-dir',
            tmp_path,
            '--cfg-options',
            f'model.backbone.petl.method={method}',
            'train_cfg.max_iters=1',
            'train_cfg.val_begin=2',
            'default_hooks.logger.interval=1',
            'default_hooks.checkpoint.interval=1',
        ]
    )
    assert exit_code is None
    assert logged_steps(tmp_path) == [1]
    state = torch.load(tmp_path / 'iter_1.pth', map_location='cpu', weights_only=False)
    state = state['state_dict']
    vit = torch.load(data / 'vit_tiny_patch16_224.random.pth', map_location='cpu')
    trunk = {
        k[len('backbone.trunk.vit.') :].replace('.base_layer.', '.'): v
        for k, v in state.items()
        if k.startswith('backbone.trunk.vit.') and '.lora_' not in k
    }
    assert trunk and all(torch.equal(v, vit[k]) for k, v in trunk.items())
    petl = [k for k in state if k.startswith('backbone.petl.') or '.lora_' in k]
    assert petl, 'no PETL parameters in the checkpoint'
    if method in ('lora', 'adaptformer'):  # zero-initialised branches moved off zero
        up = [k for k in petl if '.lora_B.' in k or '.up.weight' in k]
        assert up and all(state[k].abs().sum() > 0 for k in up)
