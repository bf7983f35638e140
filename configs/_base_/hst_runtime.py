# The project's run-time behaviour, carried by every shipped config so that a run behaves the
# same whatever starts it (tools/train.py, tools/test.py, `mim train/test`): training stops
# at the first non-finite loss or weight, a resumed run continues torch's random state, a
# checkpoint of another model is refused instead of half-loaded, one training run at a time
# holds the work dir (hst_mm.engine.hooks), the console leaves out the known-harmless upstream
# lines (the run's log file keeps them), the work dir's config copy leaves out the bases'
# `_`-prefixed helper variables, and a config used under its former name warns with its new one.
# The label maps of the segmentation configs are checked in their pipelines (CheckSegLabels,
# configs/_base_/ade20k_checked-labels.py). None of mmdet's or mmseg's bases lists
# custom_hooks, so this composes with them; a config that sets its own custom_hooks replaces
# the list (add these to it).
custom_hooks = [
    dict(type='TorchRNGStateHook'),
    dict(type='CheckpointFitHook'),
    dict(type='WorkDirLockHook'),
    dict(type='CheckFiniteLossHook'),
    dict(type='QuietConsoleHook'),
    dict(type='RunConfigHook'),
]
# Checkpoints (default_hooks.checkpoint), written atomically (a crash mid-save leaves the
# previous file): the last 3 plus the best on the validation metric. Every checkpoint holds
# the whole model, frozen trunk included (~86M parameters for ViT-B): with the optimiser state
# a Mask R-CNN checkpoint is about 0.7 GB (README: Configs and model zoo), so keeping all 36
# of a 3x run would take ~25 GB.
_hst_det_checkpoint = dict(type='AtomicCheckpointHook', max_keep_ckpts=3, save_best='coco/bbox_mAP')
_hst_seg_checkpoint = dict(type='AtomicCheckpointHook', max_keep_ckpts=3, save_best='mIoU')
