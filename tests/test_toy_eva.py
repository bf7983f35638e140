"""The toy config on a tiny timm Eva trunk (EVA-02 Ti/14) learns on the toy ADE20K-layout
set: four optimiser steps on one toy batch, in process, lower its training loss by a tenth
or more (about a third in six steps)."""

from pathlib import Path

import torch

from tool_runner import ensure_toy_data

ROOT = Path(__file__).resolve().parents[1]
CONFIG = 'configs/toy/upernet_hst-eva02-ti_toy.py'


def test_toy_eva_config_learns():
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from mmseg.registry import MODELS

    ensure_toy_data()
    cfg = Config.fromfile(str(ROOT / CONFIG))
    assert cfg.model.backbone.trunk == 'eva02_tiny_patch14_224'
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert type(model.backbone.trunk.vit).__name__ == 'Eva'
    loader_cfg = dict(cfg.train_dataloader, batch_size=2)
    loader_cfg['dataset']['data_root'] = str(ROOT / loader_cfg['dataset']['data_root'])
    batch = next(iter(Runner.build_dataloader(loader_cfg, seed=0)))
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    for group in optim.optimizer.param_groups:  # no warm-up: a few steps must show it
        group['lr'] = 1e-3
    model.train()
    losses = []
    for _ in range(4):
        log = model.train_step(batch, optim)
        losses.append(float(log['loss']))
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert losses[-1] < 0.9 * losses[0], losses
