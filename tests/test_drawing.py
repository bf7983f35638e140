"""The demo pictures (workshop/drawing.py, workshop/overview.py, tools/demo.py): the layout
checked on the rendered matplotlib artists (Agg), the colours on the drawn pixels."""

import matplotlib.image as iio
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.structures import InstanceData

from workshop import overview
from workshop.drawing import IGNORED_LEGEND, IGNORED_RGB, keep_labels_inside, label_extent

from conftest import ROOT, TOY_DET_CONFIG, TOY_SEG_CONFIG
from tool_runner import ensure_toy_data

CLASSES = ('circle', 'square', 'triangle')


def _extents(fig):
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    titles = [ax.title.get_window_extent(r) for ax in fig.axes if ax.title.get_text()]
    return r, titles


@pytest.mark.parametrize('size, n, legend', [(384, 6, False), (128, 1, True), (96, 3, True)])
def test_figure_title_clears_the_panel_titles(size, n, legend):
    """The suptitle, the panel titles, the panels and the legend do not overlap (six rows of
    384 px panels: the demo's overview, where the title used to cover the first titles)."""
    rows = [
        (f'{i:06d}.png', np.zeros((size, size, 3), np.uint8), np.zeros((size, size, 3), np.uint8))
        for i in range(n)
    ]
    fig = overview.grid_figure(
        rows,
        'mask-rcnn_hst-vit-ti_fpn_toy.py',
        'prediction (score >= 0.3)',
        [IGNORED_LEGEND] if legend else [],
    )
    r, titles = _extents(fig)
    suptitle = fig._suptitle.get_window_extent(r)
    panels = [ax.get_window_extent(r) for ax in fig.axes]
    legends = [lg.get_window_extent(r) for lg in fig.legends]
    assert len(titles) == 2 * n and len(legends) == int(legend)
    for box in titles + panels + legends:
        assert not box.overlaps(suptitle)
    for i, a in enumerate(titles):
        assert not any(a.overlaps(b) for b in titles[i + 1 :])
    assert not any(lg.overlaps(p) for lg in legends for p in panels)
    assert all(fig.bbox.contains(*b.p0) and fig.bbox.contains(*b.p1) for b in [suptitle, *titles])


def _det_visualizer(name):
    from mmdet.registry import VISUALIZERS

    init_default_scope('mmdet')
    cfg = Config.fromfile(ROOT / TOY_DET_CONFIG)
    vis = VISUALIZERS.build(dict(cfg.visualizer, vis_backends=None, name=name))
    vis.dataset_meta = dict(classes=CLASSES, palette=[(220, 20, 60), (119, 11, 32), (0, 0, 142)])
    return vis


@pytest.mark.parametrize('inside', [False, True])
def test_box_labels_stay_inside_the_picture(inside):
    """A box in the corner of a 128 px image: mmdet writes its label ("circle: 90.0") past the
    right border, where it is cut; moved, it lies inside."""
    from mmdet.structures import DetDataSample

    vis = _det_visualizer(f'labels_{inside}')
    if inside:
        keep_labels_inside(vis)
    seen = []
    get_image = vis.get_image

    def spy():  # the texts as they are rendered (add_datasample then replaces them)
        r = vis.fig_save_canvas.get_renderer()
        frame = vis.ax_save.get_window_extent(r)
        seen.extend((t.get_text(), label_extent(t, r), frame) for t in vis.ax_save.texts)
        return get_image()

    vis.get_image = spy
    pred = InstanceData(
        bboxes=torch.tensor([[100.0, 100.0, 127.0, 127.0], [2.0, 60.0, 60.0, 90.0]]),
        labels=torch.tensor([0, 2]),
        scores=torch.tensor([0.9, 0.8]),
    )
    image = np.full((128, 128, 3), 100, np.uint8)
    vis.add_datasample('x', image, DetDataSample(pred_instances=pred), draw_gt=False)
    assert [t for t, _, _ in seen] == ['circle: 90.0', 'triangle: 80.0']
    outside = [
        t for t, box, frame in seen if not (frame.contains(*box.p0) and frame.contains(*box.p1))
    ]
    assert outside == ([] if inside else ['circle: 90.0'])


def test_a_class_has_one_colour_in_truth_and_prediction():
    """mmdet jitters each mask's colour at random; in the overview one class keeps one colour
    in both panels."""
    from mmdet.structures import DetDataSample

    vis = _det_visualizer('colours')
    mask = np.zeros((1, 64, 64), bool)
    mask[0, 20:40, 20:40] = True
    box = torch.tensor([[20.0, 20.0, 40.0, 40.0]])
    inst = dict(bboxes=box, labels=torch.tensor([1]), masks=mask)
    sample = DetDataSample(
        gt_instances=InstanceData(**inst),
        pred_instances=InstanceData(**inst, scores=torch.tensor([0.9])),
    )
    image = np.full((64, 64, 3), 128, np.uint8)
    colours = set()
    for _ in range(3):
        truth, pred = overview._panels(vis, image, sample, predicted=True)
        colours |= {tuple(truth[30, 25]), tuple(pred[30, 25])}  # inside the mask, off the label
    assert len(colours) == 1 and colours != {(128, 128, 128)}


def test_ignored_pixels_are_hatched_grey_with_a_legend(tmp_path, monkeypatch):
    """The toy ADE set's outlines are label 0, 255 after reduce_zero_label: grey stripes (not
    near-black as mmseg's blending leaves them), listed in the legend."""
    ensure_toy_data()
    ignored = []
    ((_, truth, _),) = overview.segmentation_rows(
        str(ROOT / TOY_SEG_CONFIG), None, num=1, scale=1, ignored=ignored
    )
    from mmseg.datasets.transforms import LoadAnnotations
    from mmseg.registry import DATASETS

    init_default_scope('mmseg')
    ds = DATASETS.build(Config.fromfile(ROOT / TOY_SEG_CONFIG).test_dataloader.dataset)
    labels = LoadAnnotations()(dict(ds.get_data_info(0), seg_fields=[]))['gt_seg_map']
    where = labels == 255
    assert ignored[0] > 0 and where.any()
    # grey stripes of both shades (the few other pixels: mmseg's class names written there)
    shades = [tuple(c) for c in truth[where]]
    assert np.mean([c in IGNORED_RGB for c in shades]) > 0.9
    assert set(IGNORED_RGB) <= set(shades)
    saved = {}
    monkeypatch.setattr(overview, 'save_grid', lambda rows, *args: saved.setdefault('args', args))
    overview.draw_overview(str(ROOT / TOY_SEG_CONFIG), None, str(tmp_path / 'seg.png'), num=1)
    assert saved['args'][-1] == [IGNORED_LEGEND]


def test_demo_scales_up_and_reads_the_checkpoint_once(toy_det_run, tmp_path, monkeypatch):
    import tools.demo as demo

    reads = []
    load = CheckpointLoader.load_checkpoint.__func__

    def counted(cls, filename, *args, **kwargs):
        reads.append(filename)
        return load(cls, filename, *args, **kwargs)

    monkeypatch.setattr(CheckpointLoader, 'load_checkpoint', classmethod(counted))
    image = ensure_toy_data() / 'coco' / 'val' / '000002.png'
    out = tmp_path / 'det.png'
    ckpt = str(toy_det_run / 'iter_4.pth')
    demo.main([str(image), str(ROOT / TOY_DET_CONFIG), ckpt, '--out', str(out), '--scale', '3'])
    assert reads == [ckpt]
    assert iio.imread(out).shape[:2] == (3 * 128, 3 * 128)
