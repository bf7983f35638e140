"""Train an MMDetection or MMSegmentation config (HST or any other) with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--overwrite] [--no-nan-check] [--no-data-check] [--tensorboard]
                                 [--cfg-options k=v ...] [--launcher pytorch]

The config's ``default_scope`` (``mmdet`` or ``mmseg``) decides which framework runs it.
The shipped configs carry the reliability hooks (``configs/_base_/hst_runtime.py``; this tool
adds them to a config that lacks them): training stops at the first non-finite loss or weight
(``--no-nan-check`` takes that hook out), checkpoints are written atomically, a resumed run
continues torch's random state, a checkpoint of another model is refused; a work dir that
already holds checkpoints is not trained into again without ``--resume`` or ``--overwrite``;
the COCO annotation files of a detection config are checked first (``tools/check_coco.py``: errors
stop, warnings are printed; ``--no-data-check`` to skip); without CUDA, distributed runs use
the gloo backend and AMP configs train in float32.
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
    parser = shared['base_parser']('Train a detector or segmentor', 'train_cfg.max_iters=10')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT; without a value, from the latest checkpoint in the work dir',
    )
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual total batch size',
    )
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='train where checkpoints of an earlier run are, replacing those '
        'with the same names (default: refuse)',
    )
    parser.add_argument(
        '--no-nan-check',
        action='store_true',
        help='do not stop at the first non-finite loss (CheckFiniteLossHook)',
    )
    parser.add_argument(
        '--no-data-check',
        action='store_true',
        help='train without checking the COCO annotation files first '
        '(mmdet then drops broken annotations silently)',
    )
    parser.add_argument(
        '--tensorboard',
        action='store_true',
        help='also log to TensorBoard (mmengine TensorboardVisBackend; events in '
        '<work_dir>/<timestamp>/vis_data/)',
    )
    return shared['parse'](parser, argv)


if __name__ == '__main__':
    parse_args()  # --help and argument errors answer here, before the imports below

import hst_mm  # noqa: E402,F401  registers HST and the hooks, allow-lists checkpoint types
from hst_mm.engine import cli, launch  # noqa: E402
from hst_mm.engine.precision import float32_without_gpu  # noqa: E402
from hst_mm.extras import MissingExtraError  # noqa: E402


def build_config(args):
    cfg = cli.load_config(args, config_dirs=[osp.join(ROOT, 'configs')])
    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print('AMP training is already enabled in the config.')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise KeyError(
                f'{args.config}: --auto-scale-lr needs auto_scale_lr.base_batch_size in the config'
            )
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume checkpoint not found: {args.resume}')
        cfg.resume, cfg.load_from = True, args.resume
    note = float32_without_gpu(cfg.optim_wrapper)
    if note:
        print(f'note: {note}')
    if args.tensorboard:
        launch.add_tensorboard(cfg)
    launch.add_reliability_hooks(cfg, nan_check=not args.no_nan_check)
    launch.use_gloo_without_cuda(cfg)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = build_config(args)
    except MissingExtraError as e:
        sys.exit(f'error: {e}')
    # held for the whole run, taken before the checks: a second run into it is refused by name
    with launch.work_dir_locked(cfg):
        launch.check_work_dir(cfg, args.overwrite)
        launch.check_resume_checkpoint(cfg)
        if not args.no_data_check:
            launch.check_training_data(cfg)

        def before():
            launch.carry_resume_seed(cfg)
            launch.init_cpu_distributed(cfg)

        cli.run(
            cfg,
            lambda runner: runner.train(),
            before=before,
            checkpoint=lambda: launch.resume_checkpoint_path(cfg) or cfg.get('load_from'),
        )


if __name__ == '__main__':
    main()
