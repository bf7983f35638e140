"""The ratios between rows, and the markdown report of a run."""

from __future__ import annotations

from typing import Dict, List, Sequence

from .ratios import RATIOS, Ratio

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


def compute_ratios(results: Dict[str, dict], ratios: Sequence[Ratio] = RATIOS) -> List[dict]:
    """The ratios whose two rows were measured (rows that failed are skipped).

    Each: ``{'metric', 'num', 'den', 'value'}``.
    """
    out = []
    for t in ratios:
        a, b = results.get(t.num), results.get(t.den)
        if not a or not b or 'error' in a or 'error' in b:
            continue
        if t.metric != 'infer_img_per_s' and None in (a['train_step_s'], b['train_step_s']):
            continue  # a row without training (trunk)
        if t.metric == 'peak_tensor_mb' and None in (a.get(t.metric), b.get(t.metric)):
            continue  # a run from before tensor memory was measured
        get = train_increment_mb if t.metric == 'train_increment_mb' else (lambda r: r[t.metric])
        value = get(a) / get(b)
        out.append({'metric': t.metric, 'num': t.num, 'den': t.den, 'value': value})
    return out


def _header(meta: dict) -> str:
    """The report's title line: model, trunk, input, batch, device and precision."""
    a = meta['args']
    cuda = meta['device'].startswith('cuda')
    detector = a.get('model') == 'detector'
    return (
        f'### {"Mask R-CNN" if detector else "backbones"}, '
        f'{a["trunk"]} at {a["img_size"]}x{a["img_size"]}, batch {a["batch"]}, '
        f'{meta["device_name"] or meta["device"]}'
        f'{"" if cuda else ", %s threads" % meta["torch_threads"]}'
        f'{", bf16 autocast" if a["amp"] == "bf16" else ", fp32"}'
    )


def _rows_table(results: Dict[str, dict]) -> List[str]:
    """One table line per row; a failed row says so and leaves its cells empty."""
    lines = [
        '| mode | trainable params (M) | total params (M) | GFLOPs | infer img/s '
        '| train step (s) | peak tensors (MB) | peak mem (MB) | model mem (MB) '
        '| train +mem (MB) |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for mode, r in results.items():
        if 'error' in r:
            lines.append(f'| {mode} | failed (see stderr) | | | | | | | | |')
            continue
        trains = r['train_step_s'] is not None
        lines.append(
            f'| {mode} | {r["trainable_params"] / 1e6:.2f} | '
            f'{r["total_params"] / 1e6:.2f} | {r["gflops"]:.4g} | '
            f'{r["infer_img_per_s"]:.3g} | '
            + (
                f'{r["train_step_s"]:.3g} | {r["peak_tensor_mb"]:.0f} | '
                f'{r["peak_mem_mb"]:.0f} | {r["model_mem_mb"]:.0f} | '
                f'{train_increment_mb(r):.0f} |'
                if trains
                else f'- | - | ({r["peak_mem_mb"]:.0f}, inference) | {r["model_mem_mb"]:.0f} | - |'
            )
        )
    return lines


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


def _levers_table(results: Dict[str, dict]) -> List[str]:
    """What each of HST's levers bought: its row against full fine-tuning and the trunk."""
    from .modes import LEVERS

    ok = {m: r for m, r in results.items() if 'error' not in r}
    rows = [m for m in LEVERS if m in ok]
    if len(rows) < 2:
        return []
    full, trunk = ok.get('full'), ok.get('trunk')
    lines = [
        '',
        'Levers, each row adding one to the row above:',
        '',
        '| row | lever | train step / full | peak tensors / full | peak mem / full '
        '| saved (MB) | infer / trunk |',
        '|---|---|---:|---:|---:|---:|---:|',
    ]
    ratio = lambda a, b: f'{a / b:.3f}' if a is not None and b else '-'  # noqa: E731
    for m in rows:
        r = ok[m]
        lines.append(
            f'| {m} | {LEVERS[m]} | '
            f'{ratio(r["train_step_s"], full and full["train_step_s"])} | '
            f'{ratio(r["peak_tensor_mb"], full and full["peak_tensor_mb"])} | '
            f'{ratio(r["peak_mem_mb"], full and full["peak_mem_mb"])} | '
            f'{r["saved_mb"]["total"]:.0f} | '
            f'{ratio(r["infer_img_per_s"], trunk and trunk["infer_img_per_s"])} |'
        )
    return lines


def _ratios_table(ratios: List[dict]) -> List[str]:
    """The ratios measured (nothing if none was)."""
    if not ratios:
        return []
    lines = ['', '| ratio | value |', '|---|---:|']
    for q in ratios:
        lines.append(f'| {q["num"]}.{q["metric"]} / {q["den"]}.{q["metric"]} | {q["value"]:.3f} |')
    return lines


def _notes(results: Dict[str, dict], meta: dict) -> List[str]:
    """How the numbers were measured, and how loaded the machine was."""
    a = meta['args']
    cuda = meta['device'].startswith('cuda')
    detector = a.get('model') == 'detector'
    mem = (
        'peak tensors and peak mem = torch.cuda.max_memory_allocated during a training '
        'step / the training steps; model mem = memory_allocated once the model is on the '
        'device'
        if cuda
        else 'peak tensors = the most bytes live tensors held during one training step '
        '(parameters, optimizer state, inputs, activations, gradients; torch.profiler '
        "allocation records, as CUDA's max_memory_allocated counts them); peak mem = peak "
        "RSS of the mode's own process (VmHWM: also the interpreter, libraries and freed "
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
    lines = [
        _header(meta),
        '',
        *_rows_table(results),
        *_ratios_table(ratios),
        *_levers_table(results),
        *_saved_table(results),
        *_notes(results, meta),
    ]
    return '\n'.join(lines)
