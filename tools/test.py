"""Evaluate a checkpoint of an MMDetection or MMSegmentation config with mmengine's Runner.

python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE] [--show-dir DIR]
                                       [--tta] [--cfg-options k=v ...] [--launcher pytorch]

``--show-dir DIR``: the painted predictions go to ``<work_dir>/<timestamp>/DIR`` (an absolute
DIR as it is), as with mmdet's and mmseg's ``tools/test.py``.
"""

import os.path as osp
import runpy
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout


def parse_args(argv=None):
    """The arguments, with argparse alone: ``--help`` and a wrong argument are answered before
    torch, mmengine or hst_mm is imported (below, after the first parse). The arguments both
    tools take come from hst_mm/engine/tool_args.py, run by its path: imported through the
    package, hst_mm/__init__ would load mmengine and torch first."""
    shared = runpy.run_path(osp.join(ROOT, 'hst_mm', 'engine', 'tool_args.py'))
    parser = shared['base_parser']('Test (and evaluate) a model', 'test_dataloader.batch_size=1')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out',
        help='dump predictions to this pickle file (mmdet) or '
        'save prediction maps to this directory (mmseg)',
    )
    parser.add_argument(
        '--show-dir',
        help='draw the predictions into WORK_DIR/<timestamp>/SHOW_DIR (as mmdet and mmseg do)',
    )
    parser.add_argument(
        '--tta',
        action='store_true',
        help="test-time augmentation (the config's tta_model/tta_pipeline)",
    )
    return shared['parse'](parser, argv)


if __name__ == '__main__':
    parse_args()  # --help and argument errors answer here, before the imports below

import hst_mm  # noqa: E402,F401  registers HST, allow-lists checkpoint types
from hst_mm.engine import cli, launch  # noqa: E402
from hst_mm.engine.show_dir import show_dir  # noqa: E402


def build_config(args):
    cfg = cli.load_config(args, config_dirs=[osp.join(ROOT, 'configs')])
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg.load_from = args.checkpoint
    launch.add_hooks(cfg, ['CheckpointFitHook'])  # refuse a checkpoint of another model
    scope = cfg.get('default_scope', 'mmdet')
    if args.show_dir:
        show_dir(cfg, args.show_dir)
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
