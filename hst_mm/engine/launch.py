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
import json
import os
import os.path as osp
import sys
from typing import Iterator, List, Optional, Tuple

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import MODEL_WRAPPERS

from ..datasets.coco_check import ERROR, FATAL, check_coco
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


DATA_LAYOUT = 'README.md, "2. Data"'


def check_training_data(cfg: Config) -> None:
    """Check the COCO annotation files a detection config trains on, before anything is built.

    mmdet drops broken annotations and images silently, or fails later with a bare
    ``KeyError`` / ``need at least one array to concatenate``. Rank 0 checks (or finds the
    verdict of an unchanged file in :mod:`hst_mm.datasets.coco_check_cache`); the other
    ranks wait for its verdict instead of each reading the file (at train2017 scale ~20 s
    and 1-3 GB each). Warnings (images training skips) are printed by rank 0; errors (data
    missing, lost, wrong or fatal) stop every rank, rank 0 with one ``error:`` line naming
    the file, the counts and the first ids. A distributed run starts its process group here
    for that (the Runner then uses it).
    """
    files = coco_training_sets(cfg)
    if not files:
        return
    init_distributed(cfg)
    from mmengine.dist import broadcast_object_list, get_rank

    verdicts = [_training_data_verdicts(files) if get_rank() == 0 else None]
    broadcast_object_list(verdicts)  # no-op without a process group
    rank = get_rank()
    for verdict in verdicts[0]:
        if rank == 0:
            for line in verdict['warnings']:
                print(line, flush=True)
        if verdict['error']:
            sys.exit(verdict['error'] if rank == 0 else 1)  # one message, from rank 0


def init_distributed(cfg: Config) -> None:
    """The process group of a distributed launch, as the Runner would start it (it skips its
    own ``init_dist`` when one exists): gloo without CUDA (:func:`init_cpu_distributed`)."""
    if cfg.get('launcher', 'none') == 'none' or torch.distributed.is_initialized():
        return
    if not torch.cuda.is_available():
        init_cpu_distributed(cfg)
        return
    from mmengine.dist import init_dist

    init_dist(cfg.launcher, **cfg.get('env_cfg', {}).get('dist_cfg', {}))


def _training_data_verdicts(files: List[dict]) -> List[dict]:
    """One verdict (``warnings``, ``error``) per training set, cached per unchanged file."""
    from ..datasets.coco_check_cache import cached_verdict, file_key, store_verdict

    verdicts = []
    for ds in files:
        ann_file, args = ds['ann_file'], ds['check_args']
        if '://' in ann_file:
            verdicts.append(
                dict(warnings=[f'note: {ann_file} is not a local file: not checked'], error=None)
            )
            continue
        missing = _missing_data(ds)
        if missing:
            verdicts.append(dict(warnings=[], error=missing))
            continue
        try:
            key = file_key(ann_file, json.loads(json.dumps(args, default=str)))
        except OSError:  # unreadable: check_coco names the error
            key = None
        verdict = cached_verdict(key) if key else None
        if verdict is None:
            verdict = _check_verdict(ann_file, args)
            if key:
                store_verdict(key, verdict)
        verdicts.append(verdict)
    return verdicts


def _check_verdict(ann_file: str, args: dict) -> dict:
    """The warning lines and the error line of :func:`check_coco` on ``ann_file``.

    ``tools/check_coco.py`` is offered where it adds something (entries to name one by one)
    and ``--no-data-check`` where mmdet would train at all (no file-level error)."""
    report = check_coco(ann_file, **args)
    error = report.summary()
    if error:
        fatal = any(p.kind == FATAL for p in report.problems if p.severity == ERROR)
        entries = any(p.kind != FATAL for p in report.problems if p.severity == ERROR)
        advice = (
            [f'`python tools/check_coco.py {ann_file}` names each problem'] if entries else []
        ) + ([] if fatal else ["--no-data-check trains anyway, with mmdet's silent handling"])
        error = f'error: {error}' + ('. ' + '; '.join(advice) if advice else '')
    return dict(warnings=[f'warning: {line}' for line in report.warning_summary()], error=error)


def _missing_data(ds: dict) -> Optional[str]:
    """One ``error:`` line if the annotation file or the image folder of a training set is
    not there: where the config looks (relative to which directory), where the data set is
    expected (README) and the ``--cfg-options`` key that moves it; None if both are there."""
    missing = [
        f'{what} {path}'
        for what, path in (('annotation file', ds['ann_file']), ('image folder', ds['img_dir']))
        if path and not (osp.isfile if what == 'annotation file' else osp.isdir)(path)
    ]
    if not missing:
        return None
    key, data_root = ds['key'], ds['data_root']
    relative = [p for p in (ds['ann_file'], ds['img_dir']) if p and not osp.isabs(p)]
    where = f' (relative to {os.getcwd()})' if relative else ''
    if data_root:
        fix = f'--cfg-options {key}.data_root=/path/to/the/data/set/'
        looked = f'{key}.data_root is {data_root!r}'
    else:
        fix = (
            f'--cfg-options {key}.ann_file=/path/to/ANN.json {key}.data_prefix.img=/path/to/images/'
        )
        looked = f'{key} has no data_root'
    return (
        f'error: the training data is not where the config looks: no {" and no ".join(missing)}'
        f'{where}; {looked}. Put the data set where {DATA_LAYOUT} shows, or point the '
        f'config at it: {fix}'
    )


def coco_training_files(cfg: Config) -> List[Tuple[str, dict]]:
    """``(annotation file, check_coco arguments)`` for each training set of a config that
    mmdet's ``CocoDataset`` loads (itself, or a subclass that parses and filters as it does),
    also inside dataset wrappers (``RepeatDataset``, ``ConcatDataset``, ...). Empty for
    configs of other frameworks (mmdet is not imported then)."""
    return [(ds['ann_file'], ds['check_args']) for ds in coco_training_sets(cfg)]


def coco_training_sets(cfg: Config) -> List[dict]:
    """Each training set of :func:`coco_training_files`, as a dict: ``ann_file`` and
    ``img_dir`` (``data_root`` joined as mmengine's ``BaseDataset`` does), ``data_root``,
    ``check_args`` (for ``check_coco``) and ``key``, its place in the config
    (``train_dataloader.dataset``, ``train_dataloader.dataset.datasets.1`` ...)."""
    loader = cfg.get('train_dataloader') or {}
    if cfg.get('default_scope') != 'mmdet' or not loader.get('dataset'):
        return []
    from mmdet.datasets import CocoDataset
    from mmdet.registry import DATASETS
    from mmengine.fileio import join_path
    from mmengine.utils import is_abs

    found = []
    for key, ds, pipelines in _leaf_datasets(loader['dataset'], 'train_dataloader.dataset'):
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
        data_root = ds.get('data_root') or ''

        def joined(path: str) -> str:  # as mmengine's BaseDataset
            return join_path(data_root, path) if path and data_root and not is_abs(path) else path

        img = (
            (ds.get('data_prefix') or {}).get('img')
            or (ds.get('data_prefix') or {}).get('img_path')
            or ''
        )
        classes = (ds.get('metainfo') or {}).get('classes') or cls.METAINFO['classes']
        found.append(
            dict(
                key=key,
                data_root=data_root,
                ann_file=joined(ds.get('ann_file') or ''),
                img_dir=joined(img) if img else (data_root or ''),
                check_args=dict(
                    classes=list(classes),
                    filter_cfg=ds.get('filter_cfg'),
                    with_mask=_loads_masks(pipelines),
                ),
            )
        )
    return found


def _leaf_datasets(ds: dict, key: str, pipelines: tuple = ()) -> Iterator[Tuple[str, dict, tuple]]:
    """The data sets inside wrappers (``dataset=``, ``datasets=``), with their key in the
    config and the pipelines of the wrappers around them and their own."""
    pipelines = pipelines + (ds.get('pipeline') or [],)
    if ds.get('datasets'):
        for i, inner in enumerate(ds['datasets']):
            yield from _leaf_datasets(inner, f'{key}.datasets.{i}', pipelines)
    elif ds.get('dataset'):
        yield from _leaf_datasets(ds['dataset'], f'{key}.dataset', pipelines)
    else:
        yield key, ds, pipelines


def _loads_masks(pipelines: tuple) -> bool:
    """Whether a ``LoadAnnotations(with_mask=True)`` is among the pipelines' steps."""
    return any(
        isinstance(t, dict)
        and str(t.get('type', '')).split('.')[-1] == 'LoadAnnotations'
        and t.get('with_mask', False)
        for p in pipelines
        for t in p
    )
