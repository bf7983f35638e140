"""Check hst_mm on a CUDA machine in a few minutes: operators, training speed, benchmark.

Three parts, each in its own subprocess with a time limit (a part that fails or times out
is reported and the others still run):

1. ``parity``: mmcv's operators as this project installs them (``mmcv._ext``, source
   ``mmcv_ext/_ext.py``), called through mmcv's public wrappers on the device under test:
   ``roi_align`` forward and backward (aligned True/False, sampling_ratio 0/2, output 7/14;
   float32, and float16 / bfloat16 under ``torch.autocast``), ``nms`` (offset 0/1) and
   ``sigmoid_focal_loss`` (values and gradients). References: the same wrappers on the CPU
   in float64, and for NMS also a greedy float64 NMS written here. On CUDA the device's
   float32 results are also compared with the CPU's float32 results. With ``--device cpu``
   the device under test is the CPU itself, so the check measures float32 / autocast
   against float64 only (the operators' CPU semantics are tested against independent
   references in ``tests/test_mmcv_ext.py``).
2. ``train``: ``model.train_step`` throughput of HST vs full fine-tuning for Mask R-CNN
   (1024x1024, batch 2) and UperNet (512x512, batch 8), each model built from its config
   (trunk weights not loaded) and trained with the config's own optimizer wrapper (AMP:
   float16 for detection, bfloat16 for segmentation) on a synthetic batch. One process per
   model, so ``torch.cuda.max_memory_allocated`` is that model's peak.
3. ``benchmark``: ``python -m workshop.benchmark.cli --device cuda --amp bf16 --img-size 1024``
   with the ladder's rows (``workshop.benchmark.modes.LADDER_MODES``), at batch 1 and at
   batch 16 (the backbones alone), their JSON included in the report.

The modules, by job: :mod:`~workshop.gpu_check.parity` (part 1, run in a worker),
:mod:`~workshop.gpu_check.throughput` (part 2, run in a worker),
:mod:`~workshop.gpu_check.harness` (the parent: subprocesses with time limits, part 3, the
report and the JSON) and :mod:`~workshop.gpu_check.cli` (arguments; a worker is this
module re-run with a hidden ``--_worker PART``). Nothing is imported here.

Usage::

    python tools/gpu_check.py                         # on a CUDA machine, about 7 minutes
    python tools/gpu_check.py --skip benchmark --iters 20
    python tools/gpu_check.py --device cpu --tiny --iters 2 --warmup 1   # smoke run on a CPU

Writes every number to ``--out`` (JSON, default ``work_dirs/gpu_check.json``; rewritten
after each part) and exits 1 if any part failed, 2 on a usage error.
"""
