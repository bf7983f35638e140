"""Measuring one row inside its worker process: parameters, FLOPs, speed and memory.

Memory is the process's own, counted two ways. Tensor memory: the peak of the bytes held
by live tensors during a training step (on CUDA ``max_memory_allocated``; on the CPU the
same quantity from the profiler's allocation records, :func:`peak_tensor_mb`), which is
what a model asks of its device. Process memory: on the CPU the peak resident set size,
which adds the interpreter and libraries and the freed memory the C allocator keeps.
Each row runs in a fresh process (see :mod:`workshop.benchmark.cli`), so the peaks do not
depend on the other rows or on their order.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import timeit
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional

import torch

from .modes import CONFIG_MODE, hst_options, with_cp

# The numbers every successful row holds (besides with_cp, cpu_share, the raw times and,
# for rows that train, saved_mb); train_step_s and peak_tensor_mb are None in a row
# without training (trunk).
METRICS = (
    'trainable_params',
    'total_params',
    'gflops',
    'infer_img_per_s',
    'train_step_s',
    'peak_tensor_mb',
    'peak_mem_mb',
    'peak_rss_mb',
    'model_mem_mb',
)


def first_call_s(fn: Callable[[], None], clock: Callable[[], float]) -> float:
    """Seconds of one call of ``fn``: the first call of a row, reported apart from its
    steady calls (it pays for ``torch.compile``, lazy initialisation and cold caches)."""
    start = clock()
    fn()
    return clock() - start


def warmup_of(mode: str, args: argparse.Namespace) -> int:
    """The untimed calls before the timed ones: ``--warmup``, and at least the first call
    for a row that compiles (its compile time is not a step time)."""
    options = (args.config_backbone or {}) if mode == CONFIG_MODE else hst_options(mode)
    return max(args.warmup, 1) if options.get('compile', False) else args.warmup


# ---- memory of this process --------------------------------------------------------------
def _proc_status_mb(field: str) -> Optional[float]:
    """A ``kB`` field of /proc/self/status (Linux) in MB, or None elsewhere."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def current_rss_mb() -> float:
    """Resident set size now, in MB (falls back to the peak where /proc is missing)."""
    rss = _proc_status_mb('VmRSS')
    return rss if rss is not None else peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MB.

    On Linux this is ``VmHWM``, not ``getrusage().ru_maxrss``: the kernel carries the
    parent's high-water mark over into ``ru_maxrss`` across fork + exec, so a worker
    started from a large process (the benchmark's parent, or pytest) would report at least
    the parent's size. Elsewhere ``ru_maxrss`` (KB on Linux, bytes on macOS).
    """
    hwm = _proc_status_mb('VmHWM')
    if hwm is not None:
        return hwm
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == 'darwin' else maxrss / 1024


def model_memory_mb(device: torch.device) -> float:
    """Memory held now: CUDA, the tensors allocated; CPU, the process's RSS (MB)."""
    if device.type == 'cuda':
        return torch.cuda.memory_allocated(device) / 2**20
    return current_rss_mb()


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory: CUDA, since the last ``reset_peak_memory_stats``; CPU, the process's
    peak RSS (MB)."""
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


def live_tensor_mb() -> float:
    """MB of the distinct CPU tensor storages that Python objects hold now.

    Parameters, buffers, gradients, optimizer state and inputs: every ``torch.Tensor`` the
    garbage collector tracks, each storage counted once (views share theirs).
    """
    storages = {}
    for obj in gc.get_objects():
        try:
            if not (isinstance(obj, torch.Tensor) and obj.device.type == 'cpu'):
                continue
            storage = obj.untyped_storage()
            ptr = storage.data_ptr()
        # sparse and other storage-less kinds; fake tensors a torch.compile left behind; a
        # weak proxy whose object is gone
        except (RuntimeError, NotImplementedError, ReferenceError):
            continue
        storages[ptr] = storage.nbytes()
    return sum(storages.values()) / 2**20


def peak_tensor_mb(step: Callable[[], None], device: torch.device) -> float:
    """Peak tensor memory of one call of ``step`` (MB): what stays allocated from before
    plus the highest level its allocations reach.

    CUDA: ``torch.cuda.max_memory_allocated`` over the call. CPU, where torch keeps no
    allocator statistics: :func:`live_tensor_mb` before the call, plus the peak of the
    running total that ``torch.profiler`` (``profile_memory=True``) records for the
    allocations made during it. Freed memory the C allocator keeps resident, and the
    interpreter and libraries, are not tensor memory: the process's RSS includes them.
    """
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    before = live_tensor_mb()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == 'cpu':
            events.append((event.start_time_ns, event.extra_fields))
        stack.extend(event.children)
    if not events:
        return before
    events.sort(key=lambda e: e[0])
    # total_allocated is the profiler's running total of the bytes allocated while it
    # records (frees of older tensors are not in it); measured from its level at the start.
    first = events[0][1]
    start = first.total_allocated - first.alloc_size
    peak = max(fields.total_allocated for _, fields in events) - start
    return before + max(peak, 0) / 2**20


# ---- parameters, FLOPs, time -------------------------------------------------------------
def count_params(model: torch.nn.Module) -> Dict[str, int]:
    """``trainable_params`` (``requires_grad``) and ``total_params`` of ``model``."""
    return {
        'trainable_params': sum(p.numel() for p in model.parameters() if p.requires_grad),
        'total_params': sum(p.numel() for p in model.parameters()),
    }


def count_gflops(forward: Callable[[], None]) -> float:
    """GFLOPs of ``forward()`` run once, a multiply-add counted as 2 FLOPs.

    ``FlopCounterMode`` counts matmuls and convolutions (not norms, softmax or elementwise
    ops). It has no formula for the CPU's fused attention kernel, so the count runs on the
    math SDPA backend, whose attention matmuls it does count, on every device alike.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with (
        torch.inference_mode(),
        sdpa_kernel([SDPBackend.MATH]),
        FlopCounterMode(display=False) as counter,
    ):
        forward()
    return counter.get_total_flops() / 1e9


def clock_for(device: torch.device) -> Callable[[], float]:
    """The clock to time work on ``device`` with, in seconds.

    The two clocks ``torch.utils.benchmark.Timer`` uses: on CUDA its default ``timer``,
    which waits for the queued kernels first; on the CPU ``timeit.default_timer``, as the
    Timer is told for CPU-only code (the synchronising clock would start a CUDA context in
    a CPU run on a GPU machine, and with it the RSS this measures).
    """
    if device.type == 'cuda':
        from torch.utils.benchmark import timer

        return timer
    return timeit.default_timer


def time_calls(
    fn: Callable[[], None],
    warmup: int,
    iters: int,
    clock: Callable[[], float] = timeit.default_timer,
) -> List[float]:
    """Seconds of each of ``iters`` calls of ``fn``, after ``warmup`` untimed calls.

    Each call is timed on its own, rather than with ``Timer.timeit(n)`` or
    ``Timer.blocked_autorange()``: those add warm-up calls of their own and report one
    aggregate (or choose the number of calls themselves), while ``--warmup`` and ``--iters``
    promise exactly that many calls and the JSON keeps every call's time.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = clock()  # on CUDA, also waits for the kernels queued before
        fn()
        times.append(clock() - start)
    return times


# ---- all rows in one process, interleaved ------------------------------------------------
def _device_and_amp(args: argparse.Namespace):
    """The device and the autocast factory of a run (``--device``, ``--amp``, ``--threads``)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available')
    amp = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if args.amp == 'bf16'
        else nullcontext
    )
    return device, amp


def interleaved_times(modes: List[str], args: argparse.Namespace) -> Dict[str, Dict]:
    """Every row's inference and training step timed in one process, round-robin.

    All rows' models are built, each is run once untimed, then ``args.interleave`` rounds
    time one inference batch and one training step of each row in turn: a change of load
    on a shared machine hits every row alike, so their ratios stay comparable (rows timed
    in their own processes one after another are not, when the load drifts). Memory is not
    measured here (the models share the process). Returns ``{mode: {'infer_times_s': [...],
    'train_times_s': [...], 'first_call_s': {'infer': s, 'train': s}}}`` (no training times
    for a row without training).
    """
    from .workloads import WORKLOADS

    device, amp = _device_and_amp(args)
    clock = clock_for(device)
    torch.manual_seed(0)
    works = {m: WORKLOADS[args.model](m, args, device, amp) for m in modes}
    times = {m: {'infer_times_s': [], 'train_times_s': [], 'first_call_s': {}} for m in modes}

    def run_once(mode, work, record: bool) -> None:
        work.model.eval()
        steps = [('infer', work.infer)]
        if work.train_step:
            steps.append(('train', work.train_step))
        for key, fn in steps:
            if key == 'train':
                work.model.train()
            seconds = first_call_s(fn, clock)
            if record:
                times[mode][f'{key}_times_s'].append(seconds)
            else:
                times[mode]['first_call_s'][key] = seconds

    for mode, work in works.items():
        run_once(mode, work, record=False)
    for _ in range(args.interleave):
        for mode, work in works.items():
            run_once(mode, work, record=True)
    return times


# ---- one row -----------------------------------------------------------------------------
def measure_mode(mode: str, args: argparse.Namespace) -> Dict[str, object]:
    """Build ``mode``'s backbone or detector and measure it.

    Returns ``{'row': {...}, 'env': {...}}``: the row of the table (``METRICS``, ``with_cp``,
    ``cpu_share`` and every timed call) and the environment it was measured in.
    """
    import timm

    from .workloads import WORKLOADS

    device, amp = _device_and_amp(args)
    cuda = device.type == 'cuda'
    clock = clock_for(device)
    torch.manual_seed(0)

    work = WORKLOADS[args.model](mode, args, device, amp)
    model = work.model
    # Memory held once the model exists: the baseline the training run adds to.
    # CUDA: tensors allocated; CPU: the process's RSS (interpreter + libraries + weights).
    model_mem_mb = model_memory_mb(device)
    config = args.config_backbone if mode == CONFIG_MODE else None
    row: Dict[str, object] = {
        'with_cp': config.get('with_cp', False) if config else with_cp(mode),
        'options': config if config else hst_options(mode),
        **count_params(model),
    }

    model.eval()
    row['gflops'] = count_gflops(work.flops)

    # CPU seconds / wall seconds of the timed phases, over the threads torch may use.
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    warmup = warmup_of(mode, args)
    first = {}
    if warmup:
        first['infer'] = first_call_s(work.infer, clock)
    infer_times = time_calls(work.infer, max(warmup - 1, 0), args.iters, clock)

    model.train()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    # A row without training (the bare trunk): its peak is that of inference.
    train_times = []
    if work.train_step:
        if warmup:
            first['train'] = first_call_s(work.train_step, clock)
        train_times = time_calls(work.train_step, max(warmup - 1, 0), args.iters, clock)
    cpu_share = (time.process_time() - cpu_start) / (
        (time.perf_counter() - wall_start) * torch.get_num_threads()
    )
    # CPU: the peak over the whole process, which the training steps set (they hold the
    # activations, gradients and AdamW state on top of everything inference needs).
    peak_mem_mb = peak_memory_mb(device)
    rss_mb = peak_rss_mb()  # the same on the CPU; on CUDA the host process's
    # After the RSS peak is read (the profiler's records take memory of their own): one
    # more training step, profiled; then one more training forward + backward, with hooks.
    row['peak_tensor_mb'] = peak_tensor_mb(work.train_step, device) if work.train_step else None
    if work.loss is not None:
        from .saved import saved_activation_mb

        row['saved_mb'] = saved_activation_mb(model, work.loss)
    if mode in (getattr(args, 'profile', None) or ()):
        from .profile import profile_parts

        row['profile'] = profile_parts(model, work.infer, work.loss, work.optimizer_step)

    row.update(
        infer_img_per_s=args.batch / statistics.median(infer_times),
        train_step_s=statistics.median(train_times) if train_times else None,
        peak_mem_mb=peak_mem_mb,
        peak_rss_mb=rss_mb,
        model_mem_mb=model_mem_mb,
        first_call_s=first,
        # On CUDA the CPU mostly waits for the GPU: no contention measure there.
        cpu_share=None if cuda else round(cpu_share, 3),
        infer_times_s=infer_times,
        train_times_s=train_times,
    )
    env = {
        'device': str(device),
        'device_name': torch.cuda.get_device_name(device) if cuda else None,
        'torch': torch.__version__,
        'timm': timm.__version__,
        'torch_threads': torch.get_num_threads(),
    }
    return {'row': row, 'env': env}
