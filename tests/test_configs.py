"""Every shipped config loads and builds its model (trunk weights disabled), and the model
sizes match the paper's."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools' / 'analysis'))
CONFIGS = sorted(
    p.relative_to(ROOT).as_posix()
    for p in (ROOT / 'configs').rglob('*.py')
    if '_base_' not in p.parts
)

# (config, trainable params the paper reports, tolerance)
PAPER = {
    'configs/hst/mask-rcnn_hst-vit-b_fpn_1x_coco.py': (30.6e6, 'trainable', 0.02),
    'configs/hst/upernet_hst-vit-b_8xb2-160k_ade20k-512x512.py': (39.9e6, 'trainable', 0.02),
    'configs/baselines/mask-rcnn_vit-b-full_fpn_1x_coco.py': (113.6e6, 'total', 0.02),
}


def test_configs_found():
    assert len(CONFIGS) >= 11, CONFIGS


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds(config):
    import count_params
    from mmengine.config import Config

    cfg = Config.fromfile(str(ROOT / config))
    assert 'hst_mm' in cfg.custom_imports['imports'], f'{config}: custom_imports lacks hst_mm'
    rows = count_params.count(count_params.build_model(cfg))
    n = rows['all']
    assert 0 < n['trainable'] <= n['total']
    if config in PAPER:
        expected, which, tol = PAPER[config]
        assert abs(n[which] - expected) / expected < tol, (config, n)
    if '/hst/' in config or '_hst-' in config:
        # HST: the trunk is frozen but for its LayerNorms
        assert rows['trunk frozen']['trainable'] == 0 and rows['trunk tuned']['trainable'] > 0
    if 'frozen' in config:
        assert rows['trunk frozen']['trainable'] == 0 and 'trunk tuned' not in rows
    if 'petl' in config:
        # PETL rows: the trunk is frozen, only the method's parameters train inside it
        assert rows['trunk frozen']['trainable'] == 0 and 'trunk tuned' not in rows
        assert rows['petl']['trainable'] == rows['petl']['total'] > 0
