"""What ``tools/train.py`` adds to a config before mmengine's Runner takes over.

* the reliability hooks (:mod:`hst_mm.engine.hooks`) a config does not list (the shipped
  configs list them), and ``--no-nan-check``'s removal of the finite-loss check;
* on a machine without CUDA, distributed runs on the gloo backend;
* a guard against training into a work dir (or checkpoint ``out_dir``) that holds another
  run's checkpoints, or that another run is training into (its lock);
* on resume, a check that the checkpoint (or the ``last_checkpoint`` pointer) is complete;
* on resume without ``randomness.seed``, the interrupted run's seed;
* the COCO checks of :mod:`hst_mm.datasets.coco_check` on the training annotation files.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import os
import os.path as osp
import sys
from typing import Iterator, List, Optional, Tuple

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import MODEL_WRAPPERS

from ..datasets.coco_check import check_coco
from ..extras import import_extra
from .checkpoint_safety import incomplete_checkpoint
from .hooks import work_dir_lock


def add_hooks(cfg: Config, types: List[str]) -> None:
    """Append ``dict(type=t)`` to ``cfg.custom_hooks`` for each type the config lacks."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    listed = {h.get('type') for h in hooks}
    cfg.custom_hooks = hooks + [dict(type=t) for t in types if t not in listed]


def add_reliability_hooks(cfg: Config, nan_check: bool = True) -> None:
    """Add the hooks of :mod:`hst_mm.engine.hooks` that ``cfg`` lacks: atomic checkpoints,
    torch RNG state across resumes, the checkpoint-fit check, the work-dir lock and
    (``nan_check``) the finite-loss check; hooks the config already lists are kept as they are.

    The shipped configs list them all (``configs/_base_/hst_runtime.py``), so this only
    matters for other configs (mmdet's, mmseg's, a user's), for which ``tools/train.py``
    keeps its safety. ``nan_check=False`` (``--no-nan-check``) removes
    ``CheckFiniteLossHook`` from the config's list as well.
    """
    add_hooks(
        cfg,
        ['TorchRNGStateHook', 'CheckpointFitHook', 'WorkDirLockHook']
        + (['CheckFiniteLossHook'] if nan_check else []),
    )
    if not nan_check:
        cfg.custom_hooks = [
            h
            for h in cfg.custom_hooks
            if str(h.get('type')).split('.')[-1] != 'CheckFiniteLossHook'
        ]
    checkpoint = cfg.get('default_hooks', {}).get('checkpoint', None)
    # Only mmengine's own hook is swapped: a custom checkpoint hook is the config's choice.
    if checkpoint is not None and checkpoint.get('type') in (
        'CheckpointHook',
        'mmengine.CheckpointHook',
    ):
        checkpoint.type = 'AtomicCheckpointHook'


TENSORBOARD = dict(type='TensorboardVisBackend')


def add_tensorboard(cfg: Config) -> None:
    """Log to TensorBoard as well: append mmengine's ``TensorboardVisBackend`` to
    ``cfg.visualizer.vis_backends`` (the local back-end, whose ``scalars.json`` the log tools
    read, stays). Events go to ``<work_dir>/<timestamp>/vis_data/``."""
    import_extra('tensorboard', 'tensorboard', '--tensorboard')  # not in the default install
    visualizer = cfg.get('visualizer', None)
    if visualizer is None:
        raise KeyError(f'{cfg.filename}: --tensorboard needs a visualizer in the config')
    backends = list(visualizer.get('vis_backends', None) or [])
    if not any(str(b.get('type', '')).endswith('TensorboardVisBackend') for b in backends):
        backends.append(dict(TENSORBOARD))
    visualizer.vis_backends = backends


def use_gloo_without_cuda(cfg: Config) -> None:
    """:func:`use_gloo` for a distributed launch on a machine without CUDA."""
    if cfg.launcher != 'none' and not torch.cuda.is_available():
        use_gloo(cfg)


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
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False),
    )
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
        sys.exit(
            f'error: --launcher {cfg.launcher} needs CUDA (mmengine sets one GPU per '
            f'process); without a GPU launch with tools/dist_train.sh (torchrun, '
            f'--launcher pytorch), which uses the gloo backend'
        )
    timeout = cfg.env_cfg.dist_cfg.get('timeout', 1800)
    torch.distributed.init_process_group(
        backend='gloo', timeout=datetime.timedelta(seconds=timeout)
    )


def checkpoint_dirs(cfg: Config) -> List[str]:
    """Where this run writes checkpoints (``iter_N.pth``, ``best_*.pth``): the work dir and,
    with ``default_hooks.checkpoint.out_dir``, ``out_dir/<work dir name>`` (mmengine's rule)."""
    dirs = [cfg.work_dir]
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    out_dir = hook.get('out_dir')
    if out_dir and '://' not in str(out_dir):  # remote back-ends are not checked
        dirs.append(osp.join(out_dir, osp.basename(osp.normpath(cfg.work_dir))))
    return dirs


@contextlib.contextmanager
def work_dir_locked(cfg: Config) -> Iterator[None]:
    """Hold the work dir's run lock (:mod:`hst_mm.engine.hooks.work_dir_lock`) on rank 0;
    another live run holding it ends this one with one ``error:`` line naming it."""
    if int(os.environ.get('RANK', '0')) != 0 or '://' in str(cfg.work_dir):
        yield
        return
    try:
        work_dir_lock.lock_work_dir(cfg.work_dir)
    except work_dir_lock.WorkDirLockedError as e:
        sys.exit(f'error: {e}')
    try:
        yield
    finally:
        work_dir_lock.unlock_work_dir(cfg.work_dir)


def check_work_dir(cfg: Config, overwrite: bool) -> None:
    """Refuse to train where checkpoints of an earlier run would be overwritten.

    mmengine never asks: a new run's ``iter_N.pth`` silently replaces the old run's
    ``iter_N.pth``, and its ``last_checkpoint`` the old pointer. Both the work dir and the
    checkpoint hook's ``out_dir`` are checked.
    """
    # escaped: a work dir named 'r[1]' is a directory, not a pattern matching 'r1'
    ckpts = sorted(
        c for d in checkpoint_dirs(cfg) for c in glob.glob(osp.join(glob.escape(d), '*.pth'))
    )
    if not ckpts or overwrite:
        return
    names = ', '.join(ckpts[:3]) + (' ...' if len(ckpts) > 3 else '')
    if not cfg.get('resume'):  # set by --resume, or in the config
        sys.exit(
            f'error: checkpoints of an earlier run are where this run would write its '
            f'own ({names}); pass --resume to continue that run, --overwrite to start a '
            f'new run there (replacing checkpoints of the same names), or choose another '
            f'--work-dir'
        )
    if not cfg.get('load_from') and not osp.isfile(osp.join(cfg.work_dir, 'last_checkpoint')):
        # mmengine would find nothing to resume and silently start from scratch
        sys.exit(
            f'error: --resume: work dir {cfg.work_dir} holds checkpoints ({names}) but '
            f'no last_checkpoint file naming the latest; pass it: --resume '
            f'{osp.join(cfg.work_dir, "CHECKPOINT.pth")}'
        )


def resume_checkpoint_path(cfg: Config) -> Optional[str]:
    """The checkpoint a resumed run will load (``load_from``, else ``last_checkpoint``)."""
    if not cfg.get('resume'):
        return None
    if cfg.get('load_from'):
        return cfg.load_from
    pointer = osp.join(cfg.work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    try:
        return read_checkpoint_pointer(pointer)
    except ValueError:
        return None


def read_checkpoint_pointer(pointer: str) -> str:
    """The checkpoint a ``last_checkpoint`` file names; ``ValueError`` naming the pointer
    file and what is wrong with it (not text, empty, or naming a missing file)."""
    with open(pointer, 'rb') as f:
        raw = f.read(4097)
    example = osp.join(osp.dirname(pointer), 'CHECKPOINT.pth')
    remedy = f'pass the checkpoint to resume from: --resume {example}'
    try:
        path = raw.decode('utf-8').strip()
    except UnicodeDecodeError:
        path = None
    if path is None or len(raw) > 4096 or '\n' in path or '\x00' in path:
        raise ValueError(f'{pointer}: not a checkpoint path (binary or garbled content); {remedy}')
    if not path:
        raise ValueError(f'{pointer}: empty (it should name the latest checkpoint); {remedy}')
    if not osp.isfile(path):
        raise ValueError(f'{pointer}: names {path}, which does not exist; {remedy}')
    return path


def check_resume_checkpoint(cfg: Config) -> None:
    """Before anything is built: the file a resumed run loads exists and is a complete torch
    checkpoint, and a ``last_checkpoint`` pointer names one (one ``error:`` line otherwise)."""
    if not cfg.get('resume'):
        return
    path = cfg.get('load_from')
    if not path:
        pointer = osp.join(cfg.work_dir, 'last_checkpoint')
        if not osp.isfile(pointer):
            return  # nothing to resume: check_work_dir has refused a work dir with checkpoints
        try:
            path = read_checkpoint_pointer(pointer)
        except ValueError as e:
            sys.exit(f'error: --resume: {e}')
    problem = incomplete_checkpoint(path)
    if problem:
        sys.exit(f'error: --resume: {path}: {problem}; resume from an earlier checkpoint')


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
    seed = (
        torch.load(path, map_location='cpu', weights_only=True, mmap=True)
        .get('meta', {})
        .get('seed')
    )
    if seed is not None:
        cfg.randomness = {**cfg.get('randomness', {}), 'seed': seed}


def check_training_data(cfg: Config) -> None:
    """Check the COCO annotation files a detection config trains on, before anything is built.

    mmdet drops broken annotations and images silently, or fails later with a bare
    ``KeyError`` / ``need at least one array to concatenate``. Warnings (images training
    skips) are printed, by rank 0; errors (data lost, wrong or fatal) stop every rank with
    one ``error:`` line naming the file, the counts and the first ids.
    """
    for ann_file, kwargs in coco_training_files(cfg):
        if '://' in ann_file:
            _print_rank0(f'note: {ann_file} is not a local file: not checked')
            continue
        report = check_coco(ann_file, **kwargs)
        for line in report.warning_summary():
            _print_rank0(f'warning: {line}')
        summary = report.summary()
        if summary:
            sys.exit(
                f'error: {summary}. `python tools/check_coco.py {ann_file}` names each '
                f'problem; --no-data-check trains anyway'
            )


def _print_rank0(line: str) -> None:
    if int(os.environ.get('RANK', '0')) == 0:
        print(line, flush=True)


def coco_training_files(cfg: Config) -> List[Tuple[str, dict]]:
    """``(annotation file, check_coco arguments)`` for each training set of a config that
    mmdet's ``CocoDataset`` loads (itself, or a subclass that parses and filters as it does),
    also inside dataset wrappers (``RepeatDataset``, ``ConcatDataset``, ...). Empty for
    configs of other frameworks (mmdet is not imported then)."""
    loader = cfg.get('train_dataloader') or {}
    if cfg.get('default_scope') != 'mmdet' or not loader.get('dataset'):
        return []
    from mmdet.datasets import CocoDataset
    from mmdet.registry import DATASETS
    from mmengine.fileio import join_path
    from mmengine.utils import is_abs

    found = []
    for ds, pipelines in _leaf_datasets(loader['dataset']):
        cls = DATASETS.get(ds.get('type')) if isinstance(ds.get('type'), str) else ds.get('type')
        if not (
            isinstance(cls, type)
            and issubclass(cls, CocoDataset)
            and all(
                getattr(cls, m) is getattr(CocoDataset, m)
                for m in ('load_data_list', 'parse_data_info', 'filter_data')
            )
        ):
            continue
        ann_file = ds.get('ann_file') or ''
        if ann_file and ds.get('data_root') and not is_abs(ann_file):
            ann_file = join_path(ds['data_root'], ann_file)  # as mmengine's BaseDataset
        classes = (ds.get('metainfo') or {}).get('classes') or cls.METAINFO['classes']
        found.append(
            (
                ann_file,
                dict(
                    classes=list(classes),
                    filter_cfg=ds.get('filter_cfg'),
                    with_mask=_loads_masks(pipelines),
                ),
            )
        )
    return found


def _leaf_datasets(ds: dict, pipelines: tuple = ()) -> Iterator[Tuple[dict, tuple]]:
    """The data sets inside wrappers (``dataset=``, ``datasets=``), with the pipelines of
    the wrappers around them and their own."""
    pipelines = pipelines + (ds.get('pipeline') or [],)
    if ds.get('datasets'):
        for inner in ds['datasets']:
            yield from _leaf_datasets(inner, pipelines)
    elif ds.get('dataset'):
        yield from _leaf_datasets(ds['dataset'], pipelines)
    else:
        yield ds, pipelines


def _loads_masks(pipelines: tuple) -> bool:
    """Whether a ``LoadAnnotations(with_mask=True)`` is among the pipelines' steps."""
    return any(
        isinstance(t, dict)
        and str(t.get('type', '')).split('.')[-1] == 'LoadAnnotations'
        and t.get('with_mask', False)
        for p in pipelines
        for t in p
    )
