"""The main job in one command (``make demo``): toy data -> train -> evaluate -> pictures.

    python tools/run_demo.py [--out work_dirs/demo] [--det-iters N] [--seg-iters N]

Trains HST (ViT-Ti/16 trunk) Mask R-CNN and UperNet on the generated toy sets on the CPU
through the real tools (tools/train.py, tools/test.py), evaluates both on the held-out
split, prints the metrics and writes to the output folder one overview picture per task
(validation images upscaled, ground truth beside prediction: workshop/overview.py) and the
loss curves. The console shows the stage lines and mmengine's progress lines; each tool's
whole console output is in ``<out>/<task>_{train,test}.log``, mmengine's full log in the
work dir (``<out>/<task>/<timestamp>/<timestamp>.log``).
"""

import argparse
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import time
from glob import glob

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)  # the checkout: workshop, hst_mm

from hst_mm.engine.quiet import quiet_upstream_warnings  # noqa: E402

DET_CONFIG = 'configs/toy/mask-rcnn_hst-vit-ti_fpn_toy.py'
SEG_CONFIG = 'configs/toy/upernet_hst-vit-ti_toy.py'
# Progress lines worth showing from the tools' logs (the rest goes to the log files), and
# every warning that is left: the tools filter the known-harmless upstream ones
# (hst_mm.engine.quiet), so what remains deserves a look.
SHOW = re.compile(
    r'Iter\(train\)|Iter\(val\)|Epoch\(val\)|Iter\(test\)|Epoch\(test\)|'
    r'Error|error:|Traceback|Saving checkpoint|- WARNING -|Warning|^warning:|^note:'
)
METRIC = re.compile(r'((?:coco|mIoU|aAcc|mAcc)[\w/]*): (-?[0-9.]+)')


def step(msg):
    print(f'\n==> {msg}', flush=True)


def run_tool(args, log_file):
    """Run a project tool, echo its progress lines, keep the full log; return its output."""
    cmd = [sys.executable, *args]
    lines = []
    with (
        open(log_file, 'w') as log,
        subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED='1'),
        ) as proc,
    ):
        for line in proc.stdout:
            log.write(line)
            lines.append(line)
            if SHOW.search(line):
                print('   ' + line.rstrip()[:160], flush=True)
    if proc.returncode:
        sys.exit(f'{" ".join(args[:2])} failed (exit {proc.returncode}); full log: {log_file}')
    return ''.join(lines)


def last_metrics(output):
    """The metrics of the last evaluation printed by mmengine."""
    rows = [line for line in output.splitlines() if METRIC.search(line)]
    return {k: float(v) for k, v in METRIC.findall(rows[-1])} if rows else {}


def train_and_test(name, config, iters, out_dir):
    work_dir = osp.join(out_dir, name)
    step(f'training {name}: {config} ({iters} iterations) -> {work_dir}')
    t0 = time.time()
    run_tool(
        [
            'tools/train.py',
            config,
            '--work-dir',
            work_dir,
            '--cfg-options',
            f'train_cfg.max_iters={iters}',
            # no validation inside the run: tools/test.py evaluates the same split right after
            f'train_cfg.val_begin={iters + 1}',
            f'default_hooks.checkpoint.interval={iters}',
            f'default_hooks.logger.interval={min(10, iters)}',
        ],
        osp.join(out_dir, f'{name}_train.log'),
    )
    train_s = time.time() - t0
    ckpt = osp.join(work_dir, f'iter_{iters}.pth')
    step(f'evaluating {name} on the held-out split: tools/test.py {config} {ckpt}')
    out = run_tool(
        ['tools/test.py', config, ckpt, '--work-dir', osp.join(work_dir, 'test')],
        osp.join(out_dir, f'{name}_test.log'),
    )
    return ckpt, last_metrics(out), train_s


def plot_losses(work_dir, out_file, title):
    """Loss curves from mmengine's scalars.json."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    runs = sorted(glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    with open(runs[-1]) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = [r for r in rows if 'loss' in r]
    if not rows:
        print(f'   no losses logged in {work_dir}: no loss curve drawn')
        return
    keys = [k for k in rows[0] if k.startswith('loss') or k.endswith('loss_ce')]
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in keys:  # the total loss bold, its terms thin
        steps, values = [r['step'] for r in rows], [r[k] for r in rows]
        marker = 'o' if len(steps) < 20 else None  # a short run: points, not a line
        ax.plot(steps, values, label=k, lw=2 if k == 'loss' else 1, marker=marker)
    ax.set_xlabel('iteration')
    ax.set_ylabel('loss')
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)


def prepare_out_dir(out_dir):
    """Make an empty ``out_dir``; a previous demo's results there move to ``<out_dir>.prev``
    (one generation is kept: the one before is the only thing ever deleted)."""
    if osp.isdir(out_dir):
        prev = out_dir.rstrip('/') + '.prev'
        shutil.rmtree(prev, ignore_errors=True)
        os.replace(out_dir, prev)
        print(f'previous demo results moved to {prev}')
    os.makedirs(out_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='work_dirs/demo')
    parser.add_argument(
        '--det-iters',
        type=int,
        default=None,
        help="Mask R-CNN iterations (default: the toy config's)",
    )
    parser.add_argument(
        '--seg-iters', type=int, default=None, help="UperNet iterations (default: the toy config's)"
    )
    parser.add_argument(
        '--num-pictures', type=int, default=4, help='validation images in each overview picture'
    )
    args = parser.parse_args(argv)
    quiet_upstream_warnings()
    from mmengine.config import Config

    det_iters = args.det_iters or Config.fromfile(osp.join(ROOT, DET_CONFIG)).train_cfg.max_iters
    seg_iters = args.seg_iters or Config.fromfile(osp.join(ROOT, SEG_CONFIG)).train_cfg.max_iters
    out_dir = osp.join(ROOT, args.out) if not osp.isabs(args.out) else args.out
    os.chdir(ROOT)  # the toy configs name their data relative to the repository root
    prepare_out_dir(out_dir)
    t_start = time.time()

    step('generating the toy data (tools/make_toy_data.py)')
    from workshop.toy_data import main as make_toy_data

    if make_toy_data([]):
        raise SystemExit('toy data generation failed (see above)')

    det_ckpt, det_metrics, det_s = train_and_test('det', DET_CONFIG, det_iters, out_dir)
    seg_ckpt, seg_metrics, seg_s = train_and_test('seg', SEG_CONFIG, seg_iters, out_dir)

    step(f'drawing ground truth | prediction on validation images, and loss curves -> {out_dir}')
    from workshop.overview import draw_overview

    pictures = [
        ('det_overview.png', DET_CONFIG, det_ckpt, 'Mask R-CNN + HST (ViT-Ti), toy COCO val'),
        ('seg_overview.png', SEG_CONFIG, seg_ckpt, 'UperNet + HST (ViT-Ti), toy ADE20K val'),
    ]
    for name, config, ckpt, title in pictures:
        draw_overview(config, ckpt, osp.join(out_dir, name), num=args.num_pictures, title=title)
        print(f'   {osp.join(out_dir, name)}')
    for task, title in (
        ('det', 'Mask R-CNN + HST (ViT-Ti), toy COCO'),
        ('seg', 'UperNet + HST (ViT-Ti), toy ADE20K'),
    ):
        plot_losses(osp.join(out_dir, task), osp.join(out_dir, f'{task}_loss.png'), title)
        print(f'   {osp.join(out_dir, f"{task}_loss.png")}')

    bbox, segm, miou = (
        det_metrics.get('coco/bbox_mAP'),
        det_metrics.get('coco/segm_mAP'),
        seg_metrics.get('mIoU'),
    )
    summary = dict(
        det_metrics=det_metrics,
        seg_metrics=seg_metrics,
        det_train_s=det_s,
        seg_train_s=seg_s,
        total_s=time.time() - t_start,
        det_iters=det_iters,
        seg_iters=seg_iters,
    )
    with open(osp.join(out_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    step('results on the held-out toy validation split')
    print(f'   Mask R-CNN + HST: bbox mAP {bbox}  segm mAP {segm}')
    print(f'   UperNet + HST:    mIoU {miou} (percent, as mmseg reports it)')
    print(
        f'   training time: det {det_s / 60:.1f} min, seg {seg_s / 60:.1f} min; '
        f'demo total {(time.time() - t_start) / 60:.1f} min'
    )
    print(f'   pictures: {out_dir}/{{det,seg}}_overview.png')
    print(f'   loss curves: {out_dir}/{{det,seg}}_loss.png')
    print(f'   logs and checkpoints: {out_dir}/{{det,seg}}/, tool output: {out_dir}/*.log')


if __name__ == '__main__':
    main()
