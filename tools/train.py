"""Train an MMDetection or MMSegmentation config (HST or any other) with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                                 [--overwrite] [--no-nan-check]
                                 [--cfg-options k=v ...] [--launcher pytorch]

The config's ``default_scope`` (``mmdet`` or ``mmseg``) decides which framework runs it.

Every run also gets the reliability hooks of ``hst_mm.hooks`` (README, "Reliability"):
training stops at the first NaN / inf loss (``--no-nan-check`` to skip), checkpoints are
written atomically, a resumed run continues torch's random state; a work dir that already
holds checkpoints is not trained into again without ``--resume`` or ``--overwrite``; on a
machine without CUDA, distributed runs use the gloo backend.
"""
import argparse
import datetime
import glob
import os
import os.path as osp
import sys
from typing import Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import hst_mm  # noqa: E402,F401  registers HST and the hooks, allow-lists checkpoint types
from hst_mm.engine.precision import float32_without_gpu  # noqa: E402
from hst_mm.engine.errors import user_error_message  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402
from mmengine.registry import MODEL_WRAPPERS, RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector or segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CKPT; without a value, from the latest checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision training')
    parser.add_argument('--overwrite', action='store_true',
                        help='train into a work dir that already holds checkpoints, replacing '
                             'those with the same names (default: refuse)')
    parser.add_argument('--no-nan-check', action='store_true',
                        help='do not stop at the first NaN / inf loss (CheckFiniteLossHook)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual total batch size')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. train_cfg.max_iters=10')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args) -> Config:
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # work_dir: command line > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print('AMP training is already enabled in the config.')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise KeyError(f'{args.config}: --auto-scale-lr needs auto_scale_lr.base_batch_size '
                           f'in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume checkpoint not found: {args.resume}')
        cfg.resume = True
        cfg.load_from = args.resume
    note = float32_without_gpu(cfg.optim_wrapper)
    if note:
        print(f'note: {note}')
    add_reliability_hooks(cfg, nan_check=not args.no_nan_check)
    if cfg.launcher != 'none' and not torch.cuda.is_available():
        use_gloo(cfg)
    return cfg


def add_reliability_hooks(cfg: Config, nan_check: bool = True) -> None:
    """Add ``hst_mm.hooks`` to ``cfg``: atomic checkpoints, torch RNG state across resumes
    and (``nan_check``) the finite-loss check; hooks the config already lists are kept."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    listed = {h.get('type') for h in hooks}
    wanted = ['TorchRNGStateHook'] + (['CheckFiniteLossHook'] if nan_check else [])
    hooks += [dict(type=t) for t in wanted if t not in listed]
    cfg.custom_hooks = hooks
    checkpoint = cfg.get('default_hooks', {}).get('checkpoint', None)
    # Only mmengine's own hook is swapped: a custom checkpoint hook is the config's choice.
    if checkpoint is not None and checkpoint.get('type') in ('CheckpointHook',
                                                              'mmengine.CheckpointHook'):
        checkpoint.type = 'AtomicCheckpointHook'


def use_gloo(cfg: Config) -> None:
    """Distributed training without CUDA: gloo backend, CPU model wrapper.

    mmengine picks the backend from ``env_cfg.dist_cfg.backend`` (``nccl`` in mmdet's and
    mmseg's runtime configs), and wraps the model in DDP with ``device_ids=[LOCAL_RANK]``,
    which DDP refuses for a CPU module.
    """
    cfg.setdefault('env_cfg', ConfigDict())
    cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg', None) or ConfigDict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    kind = wrapper['type']
    kind = MODEL_WRAPPERS.get(kind) if isinstance(kind, str) else kind
    if isinstance(kind, type) and issubclass(kind, torch.nn.parallel.DistributedDataParallel):
        wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def init_cpu_distributed(cfg: Config) -> None:
    """Start the gloo process group ourselves on a machine without CUDA.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` for every launcher, which
    fails without a GPU; the Runner skips ``init_dist`` when a process group exists.
    """
    if cfg.launcher == 'none' or torch.cuda.is_available() or torch.distributed.is_initialized():
        return
    if cfg.launcher != 'pytorch':
        sys.exit(f'error: --launcher {cfg.launcher} needs CUDA (mmengine sets one GPU per '
                 f'process); without a GPU launch with tools/dist_train.sh (torchrun, '
                 f'--launcher pytorch), which uses the gloo backend')
    timeout = cfg.env_cfg.dist_cfg.get('timeout', 1800)
    torch.distributed.init_process_group(backend='gloo',
                                         timeout=datetime.timedelta(seconds=timeout))


def check_work_dir(cfg: Config, overwrite: bool) -> None:
    """Refuse to train into a work dir holding checkpoints of an earlier run.

    mmengine never asks: a new run's ``iter_N.pth`` silently replaces the old run's
    ``iter_N.pth``, and its ``last_checkpoint`` the old pointer.
    """
    ckpts = sorted(glob.glob(osp.join(cfg.work_dir, '*.pth')))
    if not ckpts or overwrite:
        return
    names = ', '.join(osp.basename(c) for c in ckpts[:3]) + (' ...' if len(ckpts) > 3 else '')
    if not cfg.get('resume'):                   # set by --resume, or in the config
        sys.exit(f'error: work dir {cfg.work_dir} already holds checkpoints ({names}); pass '
                 f'--resume to continue that run, --overwrite to start a new run there '
                 f'(replacing checkpoints of the same names), or choose another --work-dir')
    if not cfg.get('load_from') and not osp.isfile(osp.join(cfg.work_dir, 'last_checkpoint')):
        # mmengine would find nothing to resume and silently start from scratch
        sys.exit(f'error: --resume: work dir {cfg.work_dir} holds checkpoints ({names}) but '
                 f'no last_checkpoint file naming the latest; pass it: --resume '
                 f'{osp.join(cfg.work_dir, "CHECKPOINT.pth")}')


def resume_checkpoint_path(cfg: Config) -> Optional[str]:
    """The checkpoint a resumed run will load (``load_from``, else ``last_checkpoint``)."""
    if not cfg.get('resume'):
        return None
    if cfg.get('load_from'):
        return cfg.load_from
    pointer = osp.join(cfg.work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        path = f.read().strip()
    return path if osp.isfile(path) else None


def carry_resume_seed(cfg: Config) -> None:
    """On resume with no ``randomness.seed``, reuse the seed the checkpointed run drew.

    mmdet's and mmseg's configs leave the seed unset, so each run draws one. mmengine
    restores the checkpoint's seed only after it has built the train sampler with a newly
    drawn one: the resumed run would see another data order. Setting the seed in the config
    builds the sampler with the original run's seed.
    """
    path = resume_checkpoint_path(cfg)
    if path is None or cfg.get('randomness', {}).get('seed') is not None:
        return
    # mmap: only the small 'meta' entry is read from disk, not the weights.
    seed = torch.load(path, map_location='cpu', weights_only=True,
                      mmap=True).get('meta', {}).get('seed')
    if seed is not None:
        cfg.randomness = {**cfg.get('randomness', {}), 'seed': seed}


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    check_work_dir(cfg, args.overwrite)
    runner = None
    try:
        carry_resume_seed(cfg)
        init_cpu_distributed(cfg)
        # mmdet's train.py: a config's custom runner_type is built through the registry.
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        runner.train()
    except Exception as e:
        message = user_error_message(e, resume_checkpoint_path(cfg) or cfg.get('load_from'))
        if message is None:
            raise
        # a diagnosis, not a bug: the message (also in the work dir's log) without traceback
        if runner is not None:
            runner.logger.error(message)
        sys.exit(f'error: {message}')


if __name__ == '__main__':
    main()
