"""The installed stack is the one README.md states (tools/setup_env.sh pins it)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = (ROOT / 'tools' / 'setup_env.sh').read_text()


def pinned(name: str) -> str:
    return re.search(rf'^{name}_VERSION=(\S+)$', SETUP, re.M).group(1)


@pytest.mark.parametrize('dist, pin', [
    ('torch', 'TORCH'), ('torchvision', 'TORCHVISION'), ('setuptools', 'SETUPTOOLS'),
    ('mmengine', 'MMENGINE'), ('mmcv', 'MMCV'), ('mmdet', 'MMDET'), ('mmsegmentation', 'MMSEG'),
    ('timm', 'TIMM'), ('openmim', 'OPENMIM'),
])
def test_installed_versions_are_the_pinned_ones(dist, pin):
    from importlib.metadata import version
    installed = version(dist)
    assert installed.split('+')[0] == pinned(pin), f'{dist} {installed} != pinned {pinned(pin)}'


def test_readme_states_the_pinned_versions():
    readme = (ROOT / 'README.md').read_text()
    for name, pin in (('torch', 'TORCH'), ('torchvision', 'TORCHVISION'),
                      ('setuptools', 'SETUPTOOLS'), ('mmengine', 'MMENGINE'), ('mmcv', 'MMCV'),
                      ('mmdet', 'MMDET'), ('mmsegmentation', 'MMSEG'), ('timm', 'TIMM'),
                      ('openmim', 'OPENMIM')):
        assert re.search(rf'{name}\**\s+{re.escape(pinned(pin))}', readme), \
            f'README does not state {name} {pinned(pin)}'


def test_mmcv_ops_are_compiled():
    import torch
    from mmcv.ops import RoIAlign, nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    feats = torch.arange(16.).reshape(1, 1, 4, 4)
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=1)(feats, torch.tensor([[0., 0., 0., 4., 4.]]))
    assert out.shape == (1, 1, 2, 2)


def test_hst_mm_is_installed_in_the_venv():
    """mim and custom_imports need hst_mm importable from anywhere (pip install -e .)."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, '-c', 'import hst_mm; print(hst_mm.__file__)'],
                         cwd='/', capture_output=True, text=True, check=True).stdout
    assert Path(out.strip()).resolve().is_relative_to(ROOT)
