"""Evaluate a checkpoint of an MMDetection or MMSegmentation config with mmengine's Runner.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE] [--show-dir DIR]
                                           [--tta] [--cfg-options k=v ...] [--launcher pytorch]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import hst_mm  # noqa: E402,F401  registers HST, allow-lists checkpoint types
from hst_mm.engine.errors import user_error_message  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the evaluation metrics')
    parser.add_argument('--out', help='dump predictions to this pickle file (mmdet) or '
                                      'save prediction maps to this directory (mmseg)')
    parser.add_argument('--show-dir', help='directory to save painted predictions to')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation '
                                                           '(the config\'s tta_model/tta_pipeline)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args) -> Config:
    for path, what in ((args.config, 'config file'), (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} not found: {path}')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    scope = cfg.get('default_scope', 'mmdet')
    if args.show_dir:
        vis = cfg.default_hooks.visualization
        vis.draw = True
        vis.interval = 1
        if scope == 'mmseg':
            vis.show = False
            cfg.visualizer.save_dir = args.show_dir
        else:
            vis.test_out_dir = osp.abspath(args.show_dir)
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise KeyError(f'{args.config}: --tta needs tta_model and tta_pipeline in the config')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out:
        if scope == 'mmseg':
            cfg.test_evaluator['output_dir'] = args.out
            cfg.test_evaluator['keep_results'] = True
        else:
            if not args.out.endswith(('.pkl', '.pickle')):
                raise ValueError(f'--out must be a .pkl or .pickle file, got {args.out}')
            cfg.test_evaluator = [cfg.test_evaluator] if isinstance(cfg.test_evaluator, dict) \
                else list(cfg.test_evaluator)
            cfg.test_evaluator.append(dict(type='DumpDetResults', out_file_path=args.out))
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    runner = None
    try:
        # mmdet's test.py: a config's custom runner_type is built through the registry.
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        return runner.test()
    except Exception as e:
        message = user_error_message(e, args.checkpoint)
        if message is None:
            raise
        if runner is not None:
            runner.logger.error(message)
        sys.exit(f'error: {message}')


if __name__ == '__main__':
    main()
