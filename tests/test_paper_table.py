"""tools/analysis/paper_table.py: the paper's tables beside a work dir's logged metrics, on
work dirs written here as mmengine writes them, and on one the real tools produced."""

import json
from pathlib import Path

import pytest
from mmengine.config import Config

from hst_mm.analysis.paper_table import (
    build_report,
    format_markdown,
    load_paper_results,
    main,
    read_run,
)
from hst_mm.engine.hooks.run_config import renamed_to

from conftest import ROOT, TOY_DET_CONFIG
from tool_runner import run_main

HST_1X = 'mask-rcnn_hst-vit-b_fpn_amp-1x_coco'
HST_UPERNET = 'upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512'


def write_run(work_dir: Path, stamp: str, scalars=None, test=None, model_type='MaskRCNN'):
    """One mmengine run directory: training/validation lines in vis_data/scalars.json, or a
    tools/test.py result in <stamp>/<stamp>.json, and the run's config dump."""
    run_dir = work_dir / stamp
    (run_dir / 'vis_data').mkdir(parents=True)
    Config(dict(model=dict(type=model_type))).dump(str(run_dir / 'vis_data' / 'config.py'))
    if scalars is not None:
        text = '\n'.join(json.dumps(r) for r in scalars) + '\n'
        (run_dir / 'vis_data' / 'scalars.json').write_text(text)
    if test is not None:
        (run_dir / f'{stamp}.json').write_text(json.dumps(test))
    return run_dir


def train_lines(*vals):
    """Loss lines with validation lines (bbox, segm mAP in [0, 1]) in between."""
    rows = []
    for i, (box, mask) in enumerate(vals, 1):
        rows.append({'loss': 1.0 / i, 'lr': 1e-4, 'iter': i * 100, 'step': i * 100})
        rows.append({'coco/bbox_mAP': box, 'coco/segm_mAP': mask, 'step': i})
    return rows


@pytest.fixture
def det_work_dir(tmp_path):
    work_dir = tmp_path / HST_1X
    write_run(work_dir, '20260101_000000', scalars=train_lines((0.301, 0.28), (0.4123, 0.3712)))
    (work_dir / f'{HST_1X}.py').write_text('# config dump\n')
    return work_dir


def row(report, table, config):
    return next(r for r in report['tables'][table]['rows'] if r['config'] == config)


def md_line(markdown, config):
    return next(ln for ln in markdown.splitlines() if f'`{config}`' in ln)


def test_last_validation_beside_the_paper_and_rows_without_run(det_work_dir):
    report = build_report([read_run(str(det_work_dir))], load_paper_results())
    hst = row(report, 'coco', HST_1X)
    assert hst['paper'] == {'box_AP': 40.5, 'mask_AP': None}
    (entry,) = hst['runs']
    assert entry['values'] == pytest.approx({'box_AP': 41.23, 'mask_AP': 37.12})
    assert entry['evaluated'] == 'val'
    assert row(report, 'coco', 'mask-rcnn_vit-b-full_fpn_amp-1x_coco')['runs'] == []
    markdown = format_markdown(report)
    cells = [c.strip() for c in md_line(markdown, HST_1X).split('|')[1:-1]]
    assert cells[3:7] == ['40.5', '41.2', 'n/a', '37.1']
    assert cells[7] == f'{det_work_dir} (val)'
    full = [c.strip() for c in md_line(markdown, 'mask-rcnn_vit-b-full_fpn_amp-1x_coco').split('|')]
    assert full[4:9] == ['43.1', '—', 'n/a', '—', 'not run']
    atss = [
        c.strip() for c in md_line(markdown, 'atss_hst-vit-b_fpn_amp-ms-crop-3x_coco').split('|')
    ]
    assert atss[4:9] == ['46.0', '—', '', '', 'not run']  # boxes only


def test_a_later_test_replaces_validation(det_work_dir):
    write_run(
        det_work_dir,
        '20260102_000000',
        test={'coco/bbox_mAP': 0.455, 'coco/segm_mAP': 0.401, 'time': 0.2},
    )
    write_run(det_work_dir, '20251231_000000', test={'coco/bbox_mAP': 0.1, 'coco/segm_mAP': 0.1})
    entry = read_run(str(det_work_dir))
    assert entry.evaluations['test'].file.endswith('20260102_000000/20260102_000000.json')
    assert entry.values() == pytest.approx({'box_AP': 45.5, 'mask_AP': 40.1})
    assert entry.evaluated() == 'test'


def test_multi_scale_test_fills_its_own_column(tmp_path):
    work_dir = tmp_path / 'any_name'
    (work_dir).mkdir()
    (work_dir / f'{HST_UPERNET}.py').write_text('# dump\n')
    write_run(work_dir, '20260101_000000', scalars=[{'loss': 1.0, 'step': 1}, {'mIoU': 45.1}])
    write_run(work_dir, '20260102_000000', test={'mIoU': 46.84, 'aAcc': 80.0})
    write_run(work_dir, '20260103_000000', test={'mIoU': 47.66}, model_type='SegTTAModel')
    report = build_report([read_run(str(work_dir))], load_paper_results())
    upernet = row(report, 'ade20k', HST_UPERNET)
    assert upernet['paper'] == {'mIoU': 47.0, 'mIoU_ms': 47.5}
    assert upernet['runs'][0]['values'] == pytest.approx({'mIoU': 46.84, 'mIoU_ms': 47.66})
    cells = [c.strip() for c in md_line(format_markdown(report), HST_UPERNET).split('|')]
    assert cells[4:9] == ['47.0', '46.8', '47.5', '47.7', f'{work_dir} (test + tta)']


def test_unrecognised_config_is_listed_not_dropped(tmp_path, capsys):
    work_dir = tmp_path / 'mine'
    write_run(work_dir, '20260101_000000', scalars=train_lines((0.5, 0.25)))
    (work_dir / 'my-detector_coco.py').write_text('# dump\n')
    assert main([str(work_dir)]) == 0
    out = capsys.readouterr().out
    assert '## Runs that are not a paper row' in out
    line = md_line(out, 'my-detector_coco')
    assert '| 50.0 | 25.0 | — | — | val |' in line
    assert main([str(work_dir), '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['not_paper_rows'][0]['config'] == 'my-detector_coco'
    assert report['not_paper_rows'][0]['values'] == {'box_AP': 50.0, 'mask_AP': 25.0}


def test_config_name_from_the_newest_dump_or_the_work_dir(tmp_path):
    work_dir = tmp_path / 'work_dirs' / HST_1X  # mmengine's default work dir
    write_run(work_dir, '20260101_000000', scalars=train_lines((0.4, 0.3)))
    assert read_run(str(work_dir)).config == HST_1X
    newest = write_run(work_dir, '20260102_000000', scalars=train_lines((0.4, 0.3)))
    (work_dir / 'old-config.py').write_text('# another\n')
    (work_dir / 'new-config.py').write_text((newest / 'vis_data' / 'config.py').read_text())
    assert read_run(str(work_dir)).config == 'new-config'


def test_work_dirs_without_metrics_get_one_line_naming_the_file(tmp_path, capsys):
    no_val = tmp_path / HST_1X
    write_run(no_val, '20260101_000000', scalars=[{'loss': 1.0, 'step': 1}])
    broken = tmp_path / 'broken'
    run_dir = write_run(broken, '20260101_000000', scalars=train_lines((0.4, 0.3)))
    with open(run_dir / 'vis_data' / 'scalars.json', 'a') as f:
        f.write('{"loss": 0.5, "st\n')  # a run killed mid-line
    assert main([str(no_val), str(broken), str(tmp_path / 'missing')]) == 1
    captured = capsys.readouterr()
    messages = captured.err.strip().splitlines()
    scalars = no_val / '20260101_000000' / 'vis_data' / 'scalars.json'
    assert messages[0] == (
        f'{no_val}: no evaluation found (no validation metrics in {scalars} and no test results)'
    )
    scalars_broken = run_dir / 'vis_data' / 'scalars.json'
    assert messages[1].startswith(f'{scalars_broken}: line 3 is not JSON')
    assert messages[1].endswith('; skipped')
    assert messages[2] == f'{broken}: no evaluation found (unreadable: {scalars_broken})'
    assert messages[-1] == f'{tmp_path / "missing"}: no such directory'
    assert '| Mask R-CNN 1x | HST |' in captured.out  # the table is still printed


# The shipped and planned config names, each of which must be a paper row.
PAPER_CONFIGS = {
    'hst': [
        'mask-rcnn_hst-vit-b_fpn_amp-1x_coco',
        'mask-rcnn_hst-vit-b_fpn_amp-ms-crop-3x_coco',
        'cascade-mask-rcnn_hst-vit-b_fpn_4conv1fc-giou_amp-ms-crop-3x_coco',
        'atss_hst-vit-b_fpn_amp-ms-crop-3x_coco',
        'upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512',
        'fpn_hst-vit-b_8xb2-amp-80k_ade20k-512x512',
        'mask-rcnn_hst-vit-l_fpn_amp-1x_coco',
        'mask-rcnn_hst-vit-b-mae_fpn_amp-1x_coco',
        'upernet_hst-vit-b-mae_8xb2-amp-160k_ade20k-512x512',
    ]
    + [
        pattern.format(trunk=t)
        for t in ('dinov2-b-reg4', 'dinov3-b', 'dinov3-l', 'eva02-b')
        for pattern in (
            'mask-rcnn_hst-{trunk}_fpn_amp-1x_coco',
            'mask-rcnn_hst-{trunk}_fpn_amp-ms-crop-3x_coco',
            'upernet_hst-{trunk}_8xb2-amp-160k_ade20k-512x512',
        )
    ],
    'baselines': [
        'mask-rcnn_vit-b-full_fpn_amp-1x_coco',
        'mask-rcnn_vit-b-frozen_fpn_amp-1x_coco',
        'mask-rcnn_vit-b-full_fpn_amp-ms-crop-3x_coco',
        'cascade-mask-rcnn_vit-b-full_fpn_4conv1fc-giou_amp-ms-crop-3x_coco',
        'atss_vit-b-full_fpn_amp-ms-crop-3x_coco',
        'upernet_vit-b-full_8xb2-amp-160k_ade20k-512x512',
        'upernet_vit-b-frozen_8xb2-amp-160k_ade20k-512x512',
        'fpn_vit-b-full_8xb2-amp-80k_ade20k-512x512',
        'mask-rcnn_vit-l-full_fpn_amp-1x_coco',
        'mask-rcnn_vit-l-frozen_fpn_amp-1x_coco',
        'mask-rcnn_dinov3-b-frozen_fpn_amp-1x_coco',
        'upernet_dinov3-b-frozen_8xb2-amp-160k_ade20k-512x512',
    ],
    'petl': [
        pattern.format(method=m)
        for m in ('lora', 'vpt', 'adaptformer', 'ssf')
        for pattern in (
            'mask-rcnn_vit-b-{method}_fpn_amp-1x_coco',
            'mask-rcnn_vit-b-{method}_fpn_amp-ms-crop-3x_coco',
            'cascade-mask-rcnn_vit-b-{method}_fpn_4conv1fc-giou_amp-ms-crop-3x_coco',
            'upernet_vit-b-{method}_8xb2-amp-160k_ade20k-512x512',
        )
    ],
}


def test_every_paper_config_is_a_row_with_the_papers_numbers():
    paper = load_paper_results()
    expected = {c for names in PAPER_CONFIGS.values() for c in names}
    assert set(paper['configs']) == expected
    shipped = {
        p.stem
        for d in PAPER_CONFIGS
        for p in (ROOT / 'configs' / d).glob('*.py')
        if renamed_to(str(p)) is None
    }
    assert shipped <= expected, f'configs without a paper row: {sorted(shipped - expected)}'
    given = {stem: row['paper'] for stem, row in paper['configs'].items() if row['paper']}
    assert given == {
        'mask-rcnn_hst-vit-b_fpn_amp-1x_coco': {'box_AP': 40.5},
        'mask-rcnn_vit-b-full_fpn_amp-1x_coco': {'box_AP': 43.1},
        'mask-rcnn_hst-vit-b_fpn_amp-ms-crop-3x_coco': {'box_AP': 43.9, 'mask_AP': 40.4},
        'mask-rcnn_vit-b-full_fpn_amp-ms-crop-3x_coco': {'box_AP': 45.1},
        'mask-rcnn_vit-b-lora_fpn_amp-ms-crop-3x_coco': {'box_AP': 39.3},
        'cascade-mask-rcnn_hst-vit-b_fpn_4conv1fc-giou_amp-ms-crop-3x_coco': {
            'box_AP': 49.7,
            'mask_AP': 43.2,
        },
        'cascade-mask-rcnn_vit-b-full_fpn_4conv1fc-giou_amp-ms-crop-3x_coco': {
            'box_AP': 48.7,
            'mask_AP': 42.2,
        },
        'cascade-mask-rcnn_vit-b-lora_fpn_4conv1fc-giou_amp-ms-crop-3x_coco': {'box_AP': 46.9},
        'atss_hst-vit-b_fpn_amp-ms-crop-3x_coco': {'box_AP': 46.0},
        'atss_vit-b-full_fpn_amp-ms-crop-3x_coco': {'box_AP': 46.7},
        'upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512': {'mIoU': 47.0, 'mIoU_ms': 47.5},
        'upernet_vit-b-full_8xb2-amp-160k_ade20k-512x512': {'mIoU': 49.5},
        'fpn_hst-vit-b_8xb2-amp-80k_ade20k-512x512': {'mIoU': 44.3},
        'fpn_vit-b-full_8xb2-amp-80k_ade20k-512x512': {'mIoU': 46.0},
    }


@pytest.mark.slow
def test_reads_work_dirs_the_tools_wrote(toy_det_run, toy_det_test, capsys):
    """The toy training (trained to 2, resumed to 4 and validated at its end) and a
    tools/test.py run of its checkpoint (conftest): both toy runs are listed as not a paper
    row by tools/analysis/paper_table.py's main."""
    test_dir, _ = toy_det_test
    capsys.readouterr()
    assert run_main(['tools/analysis/paper_table.py', toy_det_run, test_dir, '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    trained, tested = report['not_paper_rows']
    assert trained['config'] == tested['config'] == Path(TOY_DET_CONFIG).stem
    assert trained['evaluated'] == 'val' and tested['evaluated'] == 'test'
    newest = sorted(toy_det_run.glob('2*/vis_data/scalars.json'))[-1]
    assert trained['evaluations']['val']['file'] == str(newest)
    with open(newest) as f:
        last_val = [json.loads(ln) for ln in f if 'coco/bbox_mAP' in ln][-1]
    (logged,) = [json.loads(p.read_text()) for p in test_dir.glob('2*/2*.json')]
    for entry, metrics in ((trained, last_val), (tested, logged)):
        assert entry['values']['box_AP'] == pytest.approx(metrics['coco/bbox_mAP'] * 100)
        assert entry['values']['mask_AP'] == pytest.approx(metrics['coco/segm_mAP'] * 100)
