"""The config a run saves (WORK_DIR/<config name>.py, the log's dump, print_config through the
tools) holds what the run uses: not the bases' helper variables, and for a toy config no ViT-B
backbone above the ViT-Ti it trains."""

import logging

from mmengine.config import Config

from hst_mm.engine.hooks import RunConfigHook

import tools.train as train_py
from conftest import ROOT, TOY_DET_CONFIG


def helpers(cfg):
    return [k for k in cfg.keys() if k.startswith('_')]


def test_tools_drop_the_helpers_and_keep_the_run():
    """(The raw config has them: the test below.)"""
    cfg = train_py.build_config(train_py.parse_args([str(ROOT / TOY_DET_CONFIG)]))
    assert not helpers(cfg)
    # str of the dict: what pretty_text formats, without yapf's seconds of formatting
    text = str(cfg.to_dict())
    assert 'vit_base_patch16_224' not in text and 'vit_tiny_patch16_224' in text
    assert cfg.model.neck.in_channels == cfg.model.backbone.embed_dims  # read from the helper


class _Runner:
    """What RunConfigHook uses of mmengine's Runner: the config, the logger, the dump."""

    def __init__(self, cfg, work_dir):
        self.cfg, self.path = cfg, work_dir / 'config.json'  # .py: the same, formatted slowly
        self.logger = logging.getLogger('test_saved_config')
        self.dump_config()

    def dump_config(self):
        self.cfg.dump(str(self.path))


def test_the_hook_rewrites_the_work_dirs_copy_for_other_runners(tmp_path):
    """mim train builds the Runner from the config as it is: the hook writes the copy again."""
    runner = _Runner(Config.fromfile(str(ROOT / TOY_DET_CONFIG)), tmp_path)
    assert helpers(runner.cfg) and 'vit_base_patch16_224' in runner.path.read_text()
    RunConfigHook().before_run(runner)
    saved = Config.fromfile(str(runner.path))
    assert not helpers(saved) and saved.model.backbone.trunk == 'vit_tiny_patch16_224'
