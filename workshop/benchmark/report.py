"""The ratios between rows, and the markdown report of a run."""

from __future__ import annotations

import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from .ratios import MIN_ROUNDS, RATIOS, SPEED_METRICS, Ratio

# A speed ratio is printed when its rounds spread by at most this share of their median.
DEFAULT_MARGIN = 0.05

# The saved-activation parts (workshop.benchmark.saved), in the order of the model.
PART_ORDER = (
    'trunk',
    'bridge',
    'side',
    *(f'side stage {s}' for s in range(1, 9)),
    'pyramid',
    'backbone',
    'neck',
    'heads',
    'other',
)


def train_increment_mb(row: Dict[str, object]) -> float:
    """Memory the training run added to the built model (MB)."""
    return row['peak_mem_mb'] - row['model_mem_mb']


def speed_rounds(metric: str, a: dict, b: dict) -> Tuple[List[float], str]:
    """The per-round ratios ``a.metric / b.metric`` of a speed metric, and where the rounds
    come from (``'interleaved'`` or ``'iterations'``).

    Rounds of ``--interleave`` where both rows have them, else each row's own-process
    iterations paired in order. ``infer_img_per_s`` is ``batch / time``: its ratio is
    ``b``'s time over ``a``'s.
    """
    key = 'train_times_s' if metric == 'train_step_s' else 'infer_times_s'
    ia, ib = a.get('interleaved_times_s'), b.get('interleaved_times_s')
    source = 'interleaved' if ia and ib else 'iterations'
    ta, tb = (ia[key], ib[key]) if source == 'interleaved' else (a.get(key), b.get(key))
    pairs = list(zip(ta or (), tb or ()))
    if metric == 'train_step_s':
        return [x / y for x, y in pairs], source
    return [y / x for x, y in pairs], source


def ratio_of(t: Ratio, a: dict, b: dict, margin: float) -> Optional[dict]:
    """The ratio ``t`` of the rows ``a`` and ``b``, or None where either row lacks it (failed,
    no training, an older run).

    ``{'metric', 'num', 'den', 'value'}``; a speed ratio also has ``median``, ``spread``
    (the rounds' ``[min, max]``), ``rounds`` and ``source``, and its ``value`` is None
    (not measured) when it has fewer than :data:`MIN_ROUNDS` rounds or they spread by more
    than ``margin`` of the median.
    """
    if not a or not b or 'error' in a or 'error' in b:
        return None
    if t.metric != 'infer_img_per_s' and None in (a['train_step_s'], b['train_step_s']):
        return None  # a row without training (trunk)
    out = {'metric': t.metric, 'num': t.num, 'den': t.den}
    if t.metric in SPEED_METRICS:
        rounds, source = speed_rounds(t.metric, a, b)
        if not rounds:
            return None
        median = statistics.median(rounds)
        agree = len(rounds) >= MIN_ROUNDS and max(rounds) - min(rounds) <= margin * median
        return dict(
            out,
            value=median if agree else None,
            median=median,
            spread=[min(rounds), max(rounds)],
            rounds=len(rounds),
            source=source,
        )
    if t.metric == 'train_increment_mb':
        return dict(out, value=train_increment_mb(a) / train_increment_mb(b))
    if a.get(t.metric) is None or b.get(t.metric) is None:
        return None  # a run from before this memory was measured
    return dict(out, value=a[t.metric] / b[t.metric])


def compute_ratios(
    results: Dict[str, dict], ratios: Sequence[Ratio] = RATIOS, margin: float = DEFAULT_MARGIN
) -> List[dict]:
    """The ratios whose two rows were measured (rows that failed are skipped), in the order
    of ``ratios``; each as :func:`ratio_of` gives it."""
    out = []
    for t in ratios:
        q = ratio_of(t, results.get(t.num), results.get(t.den), margin)
        if q is not None:
            out.append(q)
    return out


def _header(meta: dict) -> str:
    """The report's title line: model, trunk, input, batch, device and precision."""
    a = meta['args']
    cuda = meta['device'].startswith('cuda')
    detector = a.get('model') == 'detector'
    config = f' ({a["config"]})' if a.get('config') else ''
    return (
        f'### {"Mask R-CNN" if detector else "backbones"}{config}, '
        f'{a["trunk"]} at {a["img_size"]}x{a["img_size"]}, batch {a["batch"]}, '
        f'{meta["device_name"] or meta["device"]}'
        f'{"" if cuda else ", %s threads" % meta["torch_threads"]}'
        f'{", bf16 autocast" if a["amp"] == "bf16" else ", fp32"}'
    )


def _spread(times: Optional[List[float]], batch: Optional[int] = None) -> str:
    """`` [min-max]`` over ``times`` (two or more; with ``batch``, of the images/s
    ``batch / t``), else nothing."""
    if not times or len(times) < 2:
        return ''
    values = sorted(batch / t if batch else t for t in times)
    return f' [{values[0]:.3g}-{values[-1]:.3g}]'


def _times(r: dict, key: str) -> Optional[List[float]]:
    """The times the row's speed is the median of (interleaved rounds, else iterations)."""
    return (r.get('interleaved_times_s') or r).get(key)


def _rows_table(results: Dict[str, dict], batch: int) -> List[str]:
    """One table line per row; a failed row says so and leaves its cells empty. Speeds are
    medians, with the [min-max] of their rounds."""
    lines = [
        '| mode | trainable params (M) | total params (M) | GFLOPs | infer img/s '
        '| train step (s) | peak tensors (MB) | peak RSS (MB) | model mem (MB) '
        '| train +mem (MB) |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for mode, r in results.items():
        if 'error' in r:
            lines.append(f'| {mode} | failed (see stderr) | | | | | | | | |')
            continue
        trains = r['train_step_s'] is not None
        rss = r.get('peak_rss_mb', r['peak_mem_mb'])
        infer = f'{r["infer_img_per_s"]:.3g}' + _spread(_times(r, 'infer_times_s'), batch)
        lines.append(
            f'| {mode} | {r["trainable_params"] / 1e6:.2f} | '
            f'{r["total_params"] / 1e6:.2f} | {r["gflops"]:.4g} | {infer} | '
            + (
                f'{r["train_step_s"]:.3g}{_spread(_times(r, "train_times_s"))} | '
                f'{r["peak_tensor_mb"]:.0f} | {rss:.0f} | {r["model_mem_mb"]:.0f} | '
                f'{train_increment_mb(r):.0f} |'
                if trains
                else f'- | - | ({rss:.0f}, inference) | {r["model_mem_mb"]:.0f} | - |'
            )
        )
    return lines


def _first_calls(results: Dict[str, dict]) -> List[str]:
    """The first call of each row that compiles, apart from its steady calls."""
    lines = []
    for mode, r in results.items():
        first = r.get('first_call_s') or {}
        if 'error' in r or not (r.get('options') or {}).get('compile') or not first:
            continue
        steady = {'infer': statistics.median(_times(r, 'infer_times_s'))}
        if r['train_step_s'] is not None:
            steady['train'] = r['train_step_s']
        parts = [
            f'{what} {first[key]:.3g} s (steady {steady[key]:.3g} s)'
            for key, what in (('infer', 'inference'), ('train', 'train step'))
            if key in first and key in steady
        ]
        lines.append(f'{mode}: first call (compiles) ' + ', '.join(parts) + '.')
    return [''] + lines if lines else []


def _cell(q: Optional[dict]) -> str:
    """A ratio's table cell: its value, or why it is not printed."""
    if q is None:
        return '-'
    if q['value'] is not None:
        return f'{q["value"]:.3f}'
    lo, hi = q['spread']
    return f'not measured ({q["rounds"]} rounds, {lo:.3f}-{hi:.3f})'


def _saved_table(results: Dict[str, dict]) -> List[str]:
    """MB saved for backward per part of the model, one line per row that trains."""
    rows = {m: r['saved_mb'] for m, r in results.items() if 'error' not in r and 'saved_mb' in r}
    if not rows:
        return []
    parts = list(dict.fromkeys(p for saved in rows.values() for p in saved['parts']))
    # Columns in the model's order, whichever row first had each part (a row leaves out the
    # parts it saved nothing in).
    parts.sort(key=lambda p: PART_ORDER.index(p) if p in PART_ORDER else len(PART_ORDER))
    lines = [
        '',
        'Saved for backward (MB, one training forward):',
        '',
        '| mode | ' + ' | '.join(parts) + ' | total |',
        '|---|' + '---:|' * (len(parts) + 1),
    ]
    for mode, saved in rows.items():
        cells = [f'{saved["parts"][p]:.0f}' if p in saved['parts'] else '-' for p in parts]
        lines.append(f'| {mode} | ' + ' | '.join(cells) + f' | {saved["total"]:.0f} |')
    return lines


def _levers_table(results: Dict[str, dict], margin: float) -> List[str]:
    """Each HST row that ran, what it adds, and its ratios to full fine-tuning and the trunk."""
    from .modes import LEVERS

    ok = {m: r for m, r in results.items() if 'error' not in r}
    rows = [m for m in LEVERS if m in ok]
    if not rows:
        return []
    lines = [
        '',
        'HST rows (each: the row it is built on + what it adds):',
        '',
        '| row | built as | train step / full | peak tensors / full | peak RSS / full '
        '| saved (MB) | infer / trunk |',
        '|---|---|---:|---:|---:|---:|---:|',
    ]
    full, trunk = ok.get('full'), ok.get('trunk')
    for m in rows:
        r = ok[m]
        cells = [
            _cell(ratio_of(Ratio(metric, m, 'full'), r, full, margin))
            for metric in ('train_step_s', 'peak_tensor_mb', 'peak_rss_mb')
        ]
        saved = f'{r["saved_mb"]["total"]:.0f}' if 'saved_mb' in r else '-'
        infer = _cell(ratio_of(Ratio('infer_img_per_s', m, 'trunk'), r, trunk, margin))
        lines.append(f'| {m} | {LEVERS[m]} | ' + ' | '.join(cells) + f' | {saved} | {infer} |')
    return lines


def _ratios_table(ratios: List[dict], margin: float) -> List[str]:
    """The ratios measured (nothing if none was); speed ratios with their rounds."""
    if not ratios:
        return []
    lines = [
        '',
        f"Speed ratios: the median of the rounds' ratios [min-max]; printed when at least "
        f'{MIN_ROUNDS} rounds spread by at most {margin:.0%} of the median.',
        '',
        '| ratio | value | rounds [min-max] |',
        '|---|---:|---|',
    ]
    for q in ratios:
        name = f'{q["num"]}.{q["metric"]} / {q["den"]}.{q["metric"]}'
        if 'rounds' in q:
            lo, hi = q['spread']
            rounds = f'{q["rounds"]} {q["source"]} [{lo:.3f}-{hi:.3f}]'
            value = f'{q["value"]:.3f}' if q['value'] is not None else 'not measured'
        else:
            rounds, value = '-', f'{q["value"]:.3f}'
        lines.append(f'| {name} | {value} | {rounds} |')
    return lines


def _profile_table(results: Dict[str, dict]) -> List[str]:
    """Where each profiled row's time goes, per part and phase (seconds)."""
    from .profile import COLUMNS, column

    rows = {m: r['profile'] for m, r in results.items() if 'error' not in r and 'profile' in r}
    if not rows:
        return []
    lines = [
        '',
        'Where the time goes (seconds of one profiled call per phase, torch calls charged '
        "to the part that ran them; rest = Python between calls and the profiling's own "
        'cost, so compare parts, not totals, with the timed rows):',
        '',
        '| row | phase | ' + ' | '.join(COLUMNS) + ' | total |',
        '|---|---|' + '---:|' * (len(COLUMNS) + 1),
    ]
    for mode, phases in rows.items():
        for phase, p in phases.items():
            cols = dict.fromkeys(COLUMNS, 0.0)
            for part, sec in p['parts'].items():
                cols[column(part)] += sec
            cols['rest'] = p['rest_s']
            cells = ' | '.join(f'{cols[c]:.3f}' for c in COLUMNS)
            lines.append(f'| {mode} | {phase} | {cells} | {p["wall_s"]:.3f} |')
    return lines


def _notes(results: Dict[str, dict], meta: dict) -> List[str]:
    """How the numbers were measured, and how loaded the machine was."""
    a = meta['args']
    cuda = meta['device'].startswith('cuda')
    detector = a.get('model') == 'detector'
    mem = (
        'peak tensors = torch.cuda.max_memory_allocated during a training step; peak RSS = '
        "the host process's peak resident set (VmHWM); model mem = memory_allocated once "
        'the model is on the device'
        if cuda
        else 'peak tensors = the most bytes live tensors held during one training step '
        '(parameters, optimizer state, inputs, activations, gradients; torch.profiler '
        "allocation records, as CUDA's max_memory_allocated counts them); peak RSS = peak "
        "resident set of the mode's own process (VmHWM: also the interpreter, libraries and freed "
        'memory the C allocator keeps); model mem = RSS once the model is built'
    )
    return [
        '',
        f'GFLOPs: one batch-1 forward at {a["img_size"]}x{a["img_size"]} counted by '
        'torch.utils.flop_counter.FlopCounterMode (multiply-add = 2 FLOPs; matmuls, '
        'convolutions and attention only).',
        (
            f'Speed: median over {a["interleave"]} rounds in one process, the rows '
            'interleaved (one call of each row per round, after one untimed call each), '
            f"batch {a['batch']}; each row's own-process median over {a['iters']} "
            f'iterations after {a["warmup"]} warm-up is in the JSON (*_alone); '
            if a.get('interleave')
            else f'Speed: median over {a["iters"]} iterations after {a["warmup"]} warm-up, '
            f'batch {a["batch"]}; '
        )
        + (
            'a train step is model.train_step on a synthetic batch (4 random boxes and '
            "masks per image): forward + the detector's losses + backward + the "
            "config's AdamW step; inference is model.test_step."
            if detector
            else 'a train step is forward + sum of output means + backward + AdamW step '
            'over the trainable parameters.'
        ),
        'Speeds are medians; [min-max] is the spread of the calls they are the median of.',
        f'Memory: {mem}; train +mem = peak - model.',
        # Timings of rows that got different shares of the CPU are not comparable.
        *(
            []
            if cuda
            else [
                'CPU share while timed (1.0 = uncontended; rows with different shares are '
                'not comparable): '
                + ', '.join(
                    f'{m} {r["cpu_share"]:.2f}' for m, r in results.items() if 'error' not in r
                )
                + '.'
            ]
        ),
        f'Load average (1/5/15 min) at start {meta["loadavg_start"]}, '
        f'at end {meta["loadavg_end"]}; {meta["cpu_count"]} CPUs.',
    ]


def format_report(results: Dict[str, dict], ratios: List[dict], meta: dict) -> str:
    """A markdown table of the rows, one of the ratios, and how they were measured.

    ``results``: row name -> row (or ``{'error': ...}``); ``ratios``: from
    ``compute_ratios``; ``meta``: the run's ``meta`` object of the JSON.
    """
    margin = meta['args'].get('margin', DEFAULT_MARGIN)
    lines = [
        _header(meta),
        '',
        *_rows_table(results, meta['args']['batch']),
        *_first_calls(results),
        *_ratios_table(ratios, margin),
        *_levers_table(results, margin),
        *_saved_table(results),
        *_profile_table(results),
        *_notes(results, meta),
    ]
    return '\n'.join(lines)
