"""Evaluate a checkpoint of an MMDetection or MMSegmentation config with mmengine's Runner.

python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE] [--show-dir DIR]
                                       [--tta] [--cfg-options k=v ...] [--launcher pytorch]
"""

import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout


def parse_args(argv=None):
    """The arguments, with argparse alone: ``--help`` and a wrong argument are answered before
    torch, mmengine or hst_mm is imported (below, after the first parse). ``--cfg-options``
    stays a list of ``key=value`` strings until ``cli.load_config`` reads it."""
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='the directory for logs, metrics and checkpoints')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        metavar='KEY=VALUE',
        help='override config settings, e.g. test_dataloader.batch_size=1',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out',
        help='dump predictions to this pickle file (mmdet) or '
        'save prediction maps to this directory (mmseg)',
    )
    parser.add_argument('--show-dir', help='directory to save painted predictions to')
    parser.add_argument(
        '--tta',
        action='store_true',
        help="test-time augmentation (the config's tta_model/tta_pipeline)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


if __name__ == '__main__':
    parse_args()  # --help and argument errors answer here, before the imports below

import hst_mm  # noqa: E402,F401  registers HST, allow-lists checkpoint types
from hst_mm.engine import cli, launch  # noqa: E402


def build_config(args):
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg = cli.load_config(args)
    cfg.load_from = args.checkpoint
    launch.add_hooks(cfg, ['CheckpointFitHook'])  # refuse a checkpoint of another model
    scope = cfg.get('default_scope', 'mmdet')
    if args.show_dir:
        vis = cfg.default_hooks.visualization
        vis.draw, vis.interval = True, 1
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
            evaluators = cfg.test_evaluator
            cfg.test_evaluator = [evaluators] if isinstance(evaluators, dict) else list(evaluators)
            cfg.test_evaluator.append(dict(type='DumpDetResults', out_file_path=args.out))
    return cfg


def main(argv=None):
    args = parse_args(argv)
    return cli.run(build_config(args), lambda runner: runner.test(), checkpoint=args.checkpoint)


if __name__ == '__main__':
    main()
