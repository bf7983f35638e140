"""The default install is the runtime stack: the extras (pyproject.toml) stay out of it, a
config that needs one names it, and the tools answer --help without the heavy imports."""

import re
import subprocess
import sys

import pytest
import tomllib

from hst_mm.engine import launch
from hst_mm.engine.errors import user_error_message
from hst_mm.models import ViTPyramid
from workshop.fixtures import TINY_TRUNK

import tools.train as train_py
from tool_runner import ROOT

CONFIG = str(ROOT / 'configs/toy/upernet_hst-vit-ti_toy.py')
PYPROJECT = tomllib.loads((ROOT / 'pyproject.toml').read_text())
# What the default install must not carry: LoRA's stack, TensorBoard, plots, development tools
# (and fvcore, which nothing uses).
NOT_DEFAULT = {'peft', 'transformers', 'accelerate', 'tensorboard', 'seaborn', 'fvcore'}
NOT_DEFAULT |= {'pytest', 'pytest-timeout', 'ruff', 'pre-commit'}


def name(requirement: str) -> str:
    return re.match(r'[A-Za-z0-9_.-]+', requirement).group(0).lower()


def test_default_dependencies_leave_out_the_extras():
    project = PYPROJECT['project']
    assert not {name(r) for r in project['dependencies']} & NOT_DEFAULT
    extras = {name(r) for reqs in project['optional-dependencies'].values() for r in reqs}
    assert NOT_DEFAULT - {'fvcore'} <= extras  # each one installable on request
    assert 'fvcore' not in extras


def test_lora_without_peft_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, 'peft', None)  # as if not installed
    with pytest.raises(ImportError, match=re.escape("pip install 'hst_mm[lora]'")) as e:
        ViTPyramid(**TINY_TRUNK, frozen=True, petl=dict(method='lora'))
    assert user_error_message(e.value) == str(e.value)  # the tools print it as one line


def test_tensorboard_switch_without_tensorboard_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, 'tensorboard', None)
    with pytest.raises(ImportError, match=re.escape("pip install 'hst_mm[tensorboard]'")):
        launch.add_tensorboard(train_py.build_config(train_py.parse_args([CONFIG])))
    with pytest.raises(SystemExit, match=re.escape('error: --tensorboard needs tensorboard')):
        train_py.main([CONFIG, '--tensorboard'])


def test_cfg_options_read_as_mmengine_reads_them(monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '0')
    argv = [CONFIG, '--cfg-options', 'train_cfg.max_iters=3', 'model.backbone.out_indices=[0,1]']
    cfg = train_py.build_config(train_py.parse_args(argv))
    assert cfg.train_cfg.max_iters == 3
    assert list(cfg.model.backbone.out_indices) == [0, 1]


@pytest.mark.slow
@pytest.mark.parametrize('tool', ['tools/train.py', 'tools/test.py'])
def test_help_imports_nothing_heavy(tool):
    """--help answers from argparse: torch, mmengine, hst_mm and (where installed)
    transformers and peft are not imported."""
    proc = subprocess.run(
        [sys.executable, '-X', 'importtime', tool, '--help'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert '--cfg-options' in proc.stdout
    imported = set(re.findall(r'^import time:.*\|\s*(\S+)$', proc.stderr, flags=re.M))
    heavy = {'torch', 'mmengine', 'hst_mm', 'transformers', 'peft'}
    assert imported and not imported & heavy, imported & heavy
