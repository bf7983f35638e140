"""The paper's COCO and ADE20K tables with this project's runs beside them.

    python tools/analysis/paper_table.py WORK_DIR [WORK_DIR ...] [--json]

What is read, per WORK_DIR (the ``--work-dir`` of ``tools/train.py`` / ``tools/test.py``):

* the config: the copy mmengine writes as ``WORK_DIR/<config name>.py`` (with several, the
  one equal to the newest run's ``<timestamp>/vis_data/config.py``); without one, the work
  dir's own name (the default work dir is ``work_dirs/<config name>``). The config name
  (file stem) picks the paper row (``paper_results.yaml``, beside this module); a run of a
  config under its former name (its copy says ``config_renamed_to``) counts for the new one;
* validation during training: ``<timestamp>/vis_data/scalars.json``, one JSON object per
  line; the lines with ``coco/bbox_mAP``, ``coco/segm_mAP`` or ``mIoU`` are evaluations;
* ``tools/test.py``: mmengine writes a test's metrics once, to
  ``<timestamp>/<timestamp>.json`` (not to scalars.json); the test is multi-scale
  (``--tta``) when that run's ``vis_data/config.py`` has a test-time-augmentation model.

Of each kind (validation, test, multi-scale test) the last one counts (timestamp order, then
line order). A run's single-scale number is its last test if it has one, else its last
validation; the multi-scale mIoU column takes the last ``--tta`` test. mmdet logs mAP in
[0, 1] and is multiplied by 100; mmseg's mIoU is already in percent.
"""

from __future__ import annotations

import argparse
import glob
import json
import os.path as osp
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import yaml

RESULTS_FILE = Path(__file__).with_name('paper_results.yaml')
TIMESTAMP = re.compile(r'^\d{8}_\d{6}$')  # mmengine's run directories
# paper metric -> (key in mmengine's logs, factor to percent)
LOG_KEYS = {
    'box_AP': ('coco/bbox_mAP', 100.0),
    'mask_AP': ('coco/segm_mAP', 100.0),
    'mIoU': ('mIoU', 1.0),
}
KINDS = ('val', 'test', 'test_tta')  # the evaluations of a work dir, by kind
NOT_RUN = 'not run'
NO_VALUE = '—'  # a run without this metric
NOT_GIVEN = 'n/a'  # the paper gives no number


class PaperTableError(ValueError):
    """An unreadable results file or log (names the file)."""


@dataclass
class Evaluation:
    """One evaluation in a work dir's logs; ``metrics`` as logged (mAP in [0, 1])."""

    kind: str
    file: str
    metrics: Dict[str, float]
    step: Optional[int] = None


@dataclass
class Run:
    """What one work dir holds: its config name and its last evaluation of each kind."""

    work_dir: str
    config: Optional[str]
    evaluations: Dict[str, Evaluation] = field(default_factory=dict)
    messages: List[str] = field(default_factory=list)

    def values(self) -> Dict[str, float]:
        """``{paper metric: value in percent}``: single-scale from the last test, else the
        last validation; ``mIoU_ms`` from the last multi-scale test."""
        out = {}
        single = self.evaluations.get('test') or self.evaluations.get('val')
        for metric, (key, factor) in LOG_KEYS.items():
            if single is not None and _valid(single.metrics.get(key)):
                out[metric] = single.metrics[key] * factor
        tta = self.evaluations.get('test_tta')
        if tta is not None and _valid(tta.metrics.get('mIoU')):
            out['mIoU_ms'] = tta.metrics['mIoU']
        return out

    def evaluated(self) -> str:
        """Which evaluations the numbers come from, e.g. ``'test + tta'``, ``'val'``."""
        single = 'test' if 'test' in self.evaluations else 'val' * ('val' in self.evaluations)
        parts = [single] if single else []
        return ' + '.join(parts + ['tta'] * ('test_tta' in self.evaluations))


def _valid(value) -> bool:
    # mmdet logs -1 for a metric without ground truth
    return isinstance(value, (int, float)) and value >= 0


def load_paper_results(path=RESULTS_FILE) -> dict:
    """The paper's tables and rows, checked for consistency (a bad file names the row)."""
    with open(path) as f:
        data = yaml.safe_load(f)
    tables = data['tables']
    for stem, row in data['configs'].items():
        if row.get('table') not in tables:
            raise PaperTableError(f'{path}: {stem}: table {row.get("table")!r} is not in tables')
        unknown = set(row['metrics']) - set(tables[row['table']]['metrics'])
        unknown |= set(row.get('paper', {})) - set(row['metrics'])
        if unknown:
            raise PaperTableError(f'{path}: {stem}: metrics {sorted(unknown)} not in its table')
    return data


def _json_lines(path: str) -> List[dict]:
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise PaperTableError(f'{path}: line {n} is not JSON ({e.msg})') from None
            if not isinstance(row, dict):
                raise PaperTableError(f'{path}: line {n} is not a JSON object')
            rows.append(row)
    return rows


def _is_evaluation(row: dict) -> bool:
    return any(key in row for key, _ in LOG_KEYS.values())


def last_validation(scalars: str) -> Optional[Evaluation]:
    """The last validation line of a ``vis_data/scalars.json``, or None."""
    rows = [r for r in _json_lines(scalars) if _is_evaluation(r)]
    if not rows:
        return None
    return Evaluation('val', scalars, rows[-1], rows[-1].get('step'))


def is_multi_scale(run_dir: str) -> bool:
    """Whether a test run evaluated mmengine's test-time-augmentation model (``--tta``)."""
    config = osp.join(run_dir, 'vis_data', 'config.py')
    if not osp.isfile(config):
        return False
    # read as data: a work dir's files are never run (nor imported)
    from ..engine.config_data import ConfigDataError, config_data

    try:
        model = config_data(Path(config).read_text(), config, names={'model'}).get('model')
    except ConfigDataError as e:
        raise PaperTableError(str(e)) from None
    return isinstance(model, dict) and str(model.get('type', '')).endswith('TTAModel')


def test_result(run_dir: str) -> Optional[Evaluation]:
    """The metrics ``tools/test.py`` logged in ``<timestamp>/<timestamp>.json``, or None."""
    path = osp.join(run_dir, osp.basename(run_dir) + '.json')
    if not osp.isfile(path):
        return None
    rows = [r for r in _json_lines(path) if _is_evaluation(r)]
    if not rows:
        return None
    kind = 'test_tta' if is_multi_scale(run_dir) else 'test'
    return Evaluation(kind, path, rows[-1])


def config_name(work_dir: str, run_dirs: List[str]) -> Optional[str]:
    """The stem of the config a work dir ran (see the module docstring)."""
    dumps = sorted(glob.glob(osp.join(work_dir, '*.py')))
    if len(dumps) > 1:
        for run_dir in reversed(run_dirs):
            newest = osp.join(run_dir, 'vis_data', 'config.py')
            if osp.isfile(newest):
                text = Path(newest).read_text()
                same = [d for d in dumps if Path(d).read_text() == text]
                if same:
                    return _current_name(same[0])
                break
        return None
    if dumps:
        return _current_name(dumps[0])
    return Path(osp.abspath(work_dir)).name


def _current_name(dump: str) -> str:
    """The stem of a config copy, or of the config it was renamed to (the former names
    kept for one release carry ``config_renamed_to``)."""
    from ..engine.config_data import ConfigDataError, config_data
    from ..engine.hooks.run_config import RENAMED_KEY

    try:
        new = config_data(Path(dump).read_text(), dump, names={RENAMED_KEY}).get(RENAMED_KEY)
    except ConfigDataError:
        new = None
    return Path(new).stem if isinstance(new, str) and new else Path(dump).stem


def read_run(work_dir: str) -> Run:
    """A work dir's config name and last evaluation of each kind; problems as messages."""
    if not osp.isdir(work_dir):
        return Run(work_dir, None, messages=[f'{work_dir}: no such directory'])
    run_dirs = sorted(
        d
        for d in glob.glob(osp.join(work_dir, '*'))
        if osp.isdir(d) and TIMESTAMP.match(osp.basename(d))
    )
    run = Run(work_dir, config_name(work_dir, run_dirs))
    if run.config is None:
        copies = ', '.join(sorted(glob.glob(osp.join(work_dir, '*.py'))))
        run.messages.append(
            f'{work_dir}: several config copies ({copies}) and none equal to the newest '
            f"run's vis_data/config.py: config not recognised"
        )
    read, unreadable = [], []  # scalars.json files
    for run_dir in run_dirs:
        scalars = osp.join(run_dir, 'vis_data', 'scalars.json')
        readers = [(test_result, run_dir)]
        if osp.isfile(scalars):
            readers.append((last_validation, scalars))
        for reader, path in readers:
            try:
                evaluation = reader(path)
            except (PaperTableError, OSError, UnicodeDecodeError) as e:
                text = str(e) if isinstance(e, PaperTableError) else f'{path}: unreadable ({e})'
                run.messages.append(f'{text}; skipped')
                unreadable.append(path)
                continue
            if reader is last_validation:
                read.append(path)
            if evaluation is not None:  # a later run replaces an earlier one
                run.evaluations[evaluation.kind] = evaluation
    if not run.evaluations:
        if read:
            where = f'no validation metrics in {", ".join(read)} and no test results'
        elif unreadable:
            where = f'unreadable: {", ".join(unreadable)}'
        else:
            where = 'no <timestamp>/vis_data/scalars.json or <timestamp>/<timestamp>.json in it'
        run.messages.append(f'{work_dir}: no evaluation found ({where})')
    return run


def build_report(runs: List[Run], paper: dict) -> dict:
    """The paper's tables with each run beside its row (JSON-ready)."""
    rows_by_config = paper['configs']
    tables = {}
    for name, table in paper['tables'].items():
        rows = []
        for stem, row in rows_by_config.items():
            if row['table'] != name:
                continue
            matching = [r for r in runs if r.config == stem]
            rows.append(
                dict(
                    config=stem,
                    setting=row['setting'],
                    method=row['method'],
                    metrics=list(row['metrics']),
                    paper={m: row.get('paper', {}).get(m) for m in row['metrics']},
                    note=row.get('note'),
                    runs=[_run_entry(r) for r in matching],
                )
            )
        tables[name] = dict(title=table['title'], source=table['source'], rows=rows)
    others = [_run_entry(r) for r in runs if r.config not in rows_by_config and r.evaluations]
    return dict(
        source=paper['source'],
        metric_names=paper['metric_names'],
        tables=tables,
        not_paper_rows=others,
        messages=[m for r in runs for m in r.messages],
    )


def _run_entry(run: Run) -> dict:
    return dict(
        work_dir=run.work_dir,
        config=run.config,
        values=run.values(),
        evaluated=run.evaluated(),
        evaluations={
            k: dict(file=e.file, step=e.step, metrics=e.metrics) for k, e in run.evaluations.items()
        },
    )


def _cell(value: Optional[float]) -> str:
    return f'{value:.1f}' if value is not None else NO_VALUE


def format_markdown(report: dict) -> str:
    """Markdown: one table per paper table, then the runs that are not a paper row."""
    names = report['metric_names']
    lines = []
    for table in report['tables'].values():
        metrics = list(dict.fromkeys(m for row in table['rows'] for m in row['metrics']))
        head = ['setting', 'method', 'config']
        for m in metrics:
            head += [f'{names[m]} paper', f'{names[m]} run']
        lines += [f'## {table["title"]}', '', f'Paper: {table["source"]}.', '']
        lines += ['| ' + ' | '.join(head + ['run']) + ' |', '|' + '---|' * (len(head) + 1)]
        notes = []
        for row in table['rows']:
            method = row['method']
            if row['note']:
                notes.append(row['note'])
                method += f' [{len(notes)}]'
            for run in row['runs'] or [None]:
                cells = [row['setting'], method, f'`{row["config"]}`']
                for m in metrics:
                    if m not in row['metrics']:
                        cells += ['', '']
                        continue
                    given = row['paper'][m]
                    cells.append(f'{given:.1f}' if given is not None else NOT_GIVEN)
                    cells.append(_cell(run['values'].get(m)) if run else NO_VALUE)
                where = f'{run["work_dir"]} ({run["evaluated"]})' if run else NOT_RUN
                lines.append('| ' + ' | '.join(cells + [where]) + ' |')
        lines += [''] + [f'[{i}] {note}' for i, note in enumerate(notes, 1)] + [''] * bool(notes)
    if report['not_paper_rows']:
        metrics = list(names)
        lines += ['## Runs that are not a paper row', '']
        lines += [
            '| work dir | config | ' + ' | '.join(names[m] for m in metrics) + ' | evaluated |'
        ]
        lines += ['|' + '---|' * (len(metrics) + 3)]
        for run in report['not_paper_rows']:
            cells = [run['work_dir'], f'`{run["config"]}`']
            cells += [_cell(run['values'].get(m)) for m in metrics] + [run['evaluated']]
            lines.append('| ' + ' | '.join(cells) + ' |')
        lines.append('')
    lines.append(
        f'Run columns: the last test of each work dir (else its last validation), in percent; '
        f'{NO_VALUE}: the run has no such metric; {NOT_GIVEN}: the paper gives no number; '
        f'"{NOT_RUN}": no work dir of that config was given.'
    )
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="The paper's COCO and ADE20K tables with your runs' numbers beside them"
    )
    parser.add_argument('work_dirs', nargs='+', metavar='WORK_DIR', help='run work dirs')
    parser.add_argument('--json', action='store_true', help='print JSON instead of markdown')
    args = parser.parse_args(argv)
    runs = [read_run(w) for w in args.work_dirs]
    report = build_report(runs, load_paper_results())
    print(
        json.dumps(report, indent=2) if args.json else format_markdown(report), end='\n' * args.json
    )
    for message in report['messages']:
        print(message, file=sys.stderr)
    # every work dir must have given something to compare
    return 0 if all(r.evaluations for r in runs) else 1
