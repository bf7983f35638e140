"""mmcv's operators as hst_mm installs them (``mmcv_ext/_ext.py`` as ``mmcv._ext``), checked
against slow references written here, through mmcv's own Python wrappers."""

import math
import sys
import zipfile
from pathlib import Path

import mmcv._ext as ext
import pytest
import torch
from mmcv.ops import RoIAlign, nms, roi_align, sigmoid_focal_loss

from tool_runner import run_together

ROOT = Path(__file__).resolve().parents[1]


def test_installed_module_is_the_repositorys():
    """`make install` rebuilds the wheel when mmcv_ext/_ext.py changes (setup stamp)."""
    assert Path(ext.__file__).read_bytes() == (ROOT / 'mmcv_ext' / '_ext.py').read_bytes()


# ---- RoIAlign -------------------------------------------------------------------------------


def reference_roi_align(feat, rois, out_hw, scale, sampling_ratio, aligned):
    """mmcv's RoIAlign (average), spelled out: bilinear samples on a grid per bin, averaged.

    ``feat (N, C, H, W)``, ``rois (K, 5)`` -> ``(K, C, oh, ow)``; differentiable in ``feat``.
    """
    oh, ow = out_hw
    _, c, h, w = feat.shape
    outs = []
    for roi in rois.tolist():
        b, x1, y1, x2, y2 = roi
        off = 0.5 if aligned else 0.0
        x1, y1, x2, y2 = x1 * scale - off, y1 * scale - off, x2 * scale - off, y2 * scale - off
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / oh)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / ow)
        count = max(gh * gw, 1)
        if gh == 0 or gw == 0:
            outs.append(feat.new_zeros(c, oh, ow))
            continue
        ys = torch.tensor(
            [y1 + p * rh / oh + (i + 0.5) * rh / oh / gh for p in range(oh) for i in range(gh)],
            dtype=torch.float64,
        )
        xs = torch.tensor(
            [x1 + p * rw / ow + (i + 0.5) * rw / ow / gw for p in range(ow) for i in range(gw)],
            dtype=torch.float64,
        )
        y, x = torch.meshgrid(ys, xs, indexing='ij')
        outside = (y < -1) | (y > h) | (x < -1) | (x > w)
        y, x = y.clamp(min=0), x.clamp(min=0)
        y0, x0 = y.floor().long(), x.floor().long()
        y_edge, x_edge = y0 >= h - 1, x0 >= w - 1
        y0, x0 = y0.clamp(max=h - 1), x0.clamp(max=w - 1)
        y = torch.where(y_edge, y0.double(), y)
        x = torch.where(x_edge, x0.double(), x)
        y1i, x1i = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
        ly, lx = (y - y0).to(feat.dtype), (x - x0).to(feat.dtype)
        f = feat[int(b)]
        val = (
            (1 - ly) * (1 - lx) * f[:, y0, x0]
            + (1 - ly) * lx * f[:, y0, x1i]
            + ly * (1 - lx) * f[:, y1i, x0]
            + ly * lx * f[:, y1i, x1i]
        )
        val = val * (~outside).to(feat.dtype)
        outs.append(val.reshape(c, oh, gh, ow, gw).sum((2, 4)) / count)
    return torch.stack(outs)


def _rois(n_images=2, h=12, w=16, scale=0.5):
    """Boxes in image pixels (features at ``scale``): inside, partly outside, degenerate."""
    g = torch.Generator().manual_seed(0)
    x1 = torch.rand(8, generator=g) * w / scale
    y1 = torch.rand(8, generator=g) * h / scale
    wh = torch.rand(8, 2, generator=g) * 20 + 1
    boxes = torch.stack([x1, y1, x1 + wh[:, 0], y1 + wh[:, 1]], 1)
    extra = torch.tensor(
        [
            [-6.0, -4.0, 10.0, 9.0],  # starts outside
            [25.0, 18.0, 40.0, 30.0],  # ends outside
            [5.0, 5.0, 5.0, 5.0],  # zero size
            [7.0, 3.0, 6.5, 9.0],
        ]
    )  # x2 < x1
    boxes = torch.cat([boxes, extra])
    idx = (torch.arange(len(boxes)) % n_images).float().unsqueeze(1)
    return torch.cat([idx, boxes], 1)


CASES = [(out, sr, aligned) for out in (7, 14) for sr in (0, 2) for aligned in (True, False)]


@pytest.mark.parametrize('out, sampling_ratio, aligned', CASES)
def test_roi_align_forward_and_backward_match_reference(out, sampling_ratio, aligned):
    feat = torch.randn(2, 3, 12, 16, dtype=torch.float64, requires_grad=True)
    rois = _rois().double()
    got = roi_align(feat, rois, (out, out), 0.5, sampling_ratio, 'avg', aligned)
    want = reference_roi_align(feat, rois, (out, out), 0.5, sampling_ratio, aligned)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(got)
    (g_got,) = torch.autograd.grad(got, feat, grad)
    (g_want,) = torch.autograd.grad(want, feat, grad)
    torch.testing.assert_close(g_got, g_want, rtol=1e-10, atol=1e-10)


def test_roi_align_gradcheck():
    feat = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.7, 9.1, 8.2], [0, 2.2, 1.4, 5.3, 12.6]], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda f: roi_align(f, rois, (3, 3), 0.5, 2, 'avg', True), (feat,)
    )


def test_roi_align_float32_module():
    feat = torch.randn(2, 4, 12, 16)
    rois = _rois()
    got = RoIAlign((7, 7), spatial_scale=0.5, sampling_ratio=0)(feat, rois)
    want = reference_roi_align(feat.double(), rois.double(), (7, 7), 0.5, 0, True)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_roi_align_honours_strides():
    """mmcv's compiled kernels read any input as dense NCHW (a channels-last map gives wrong
    features; the hst_mm backbones return dense maps for that reason); these do not."""
    x = torch.randn(1, 8, 16, 16)
    rois = torch.tensor([[0, 2.0, 2.0, 12.0, 12.0]])
    align = RoIAlign((7, 7), spatial_scale=1.0, sampling_ratio=0)
    assert torch.equal(align(x.to(memory_format=torch.channels_last), rois), align(x, rois))


def test_roi_align_bf16_under_autocast():
    """bf16 features under CPU autocast: computed in float32, returned in bf16."""
    feat = torch.randn(2, 4, 12, 16)
    rois = _rois()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = roi_align(feat.bfloat16(), rois, (7, 7), 0.5, 0, 'avg', True)
    assert got.dtype == torch.bfloat16
    want = reference_roi_align(feat.bfloat16().double(), rois.double(), (7, 7), 0.5, 0, True)
    torch.testing.assert_close(got.double(), want, rtol=1e-2, atol=1e-2)


def test_roi_align_max_pooling_says_what_to_do():
    with pytest.raises(ext.OperatorNotProvided, match='pool_mode="max".*MMCV_OPS=compiled'):
        roi_align(
            torch.randn(1, 1, 4, 4), torch.tensor([[0.0, 0, 0, 3, 3]]), (2, 2), 1.0, 0, 'max', True
        )


# ---- NMS ------------------------------------------------------------------------------------


def reference_nms(boxes, scores, iou_threshold, offset):
    """Greedy NMS as mmcv's CPU kernel computes it (highest score first, drop IoU > thr)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    area = [(b[2] - b[0] + offset) * (b[3] - b[1] + offset) for b in boxes]
    keep, dropped = [], set()
    for n, i in enumerate(order):
        if i in dropped:
            continue
        keep.append(i)
        for j in order[n + 1 :]:
            bi, bj = boxes[i], boxes[j]
            w = max(0.0, min(bi[2], bj[2]) - max(bi[0], bj[0]) + offset)
            h = max(0.0, min(bi[3], bj[3]) - max(bi[1], bj[1]) + offset)
            inter = w * h
            if inter / (area[i] + area[j] - inter) > iou_threshold:
                dropped.add(j)
    return keep


@pytest.mark.parametrize('offset', [0, 1])
@pytest.mark.parametrize('iou', [0.3, 0.5, 0.7])
def test_nms_matches_greedy_reference(offset, iou):
    g = torch.Generator().manual_seed(offset * 10 + int(iou * 10))
    for _ in range(20):
        n = int(torch.randint(1, 60, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 50
        boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 30 + 1], 1).double()
        scores = torch.randperm(n, generator=g).double() / n  # distinct scores
        _, keep = nms(boxes, scores, iou, offset=offset)
        assert keep.tolist() == reference_nms(boxes.tolist(), scores.tolist(), iou, offset)


def test_nms_edge_cases():
    empty = torch.zeros(0, 4)
    dets, keep = nms(empty, torch.zeros(0), 0.5)
    assert keep.dtype == torch.long and keep.numel() == 0 and dets.shape == (0, 5)
    # ties: both kept (no overlap); which comes first is not specified
    boxes = torch.tensor([[0.0, 0, 1, 1], [5, 5, 6, 6]])
    assert sorted(nms(boxes, torch.tensor([0.5, 0.5]), 0.5)[1].tolist()) == [0, 1]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        keep = nms(
            torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10]]).bfloat16(),
            torch.tensor([0.9, 0.8]).bfloat16(),
            0.5,
        )[1]
    assert keep.tolist() == [0]


# ---- sigmoid focal loss ---------------------------------------------------------------------


@pytest.mark.parametrize('gamma, alpha', [(2.0, 0.25), (1.5, 0.5), (0.0, 0.75)])
def test_sigmoid_focal_loss_matches_mmdet_python_version(gamma, alpha):
    from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss

    pred = (torch.randn(40, 5, dtype=torch.float64) * 4).requires_grad_()
    target = torch.randint(0, 6, (40,))  # 5 = background
    onehot = torch.nn.functional.one_hot(target, 6)[:, :5]
    got = sigmoid_focal_loss(pred, target, gamma, alpha, None, 'none')
    want = py_sigmoid_focal_loss(pred, onehot, None, gamma, alpha, reduction='none')
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    grad = torch.rand_like(got)
    torch.testing.assert_close(
        torch.autograd.grad(got, pred, grad)[0],
        torch.autograd.grad(want, pred, grad)[0],
        rtol=1e-7,
        atol=1e-10,
    )
    # mean reduction and class weights, as mmcv's op defines them
    weight = torch.rand(5, dtype=torch.float64)
    pos = torch.randint(0, 5, (40,))
    weighted = sigmoid_focal_loss(pred, pos, gamma, alpha, weight, 'mean')
    plain = sigmoid_focal_loss(pred, pos, gamma, alpha, None, 'none')
    torch.testing.assert_close(weighted, (plain * weight[pos, None]).sum() / 40)


def test_sigmoid_focal_loss_bf16():
    pred = torch.randn(16, 3)
    target = torch.randint(0, 4, (16,))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = sigmoid_focal_loss(pred.bfloat16(), target, 2.0, 0.25, None, 'none')
    want = sigmoid_focal_loss(pred.bfloat16().float(), target, 2.0, 0.25, None, 'none')
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=1e-2, atol=1e-3)


# ---- operators not provided -----------------------------------------------------------------


def test_other_operators_exist_and_say_how_to_get_them():
    from mmcv.ops import DeformConv2d

    conv = DeformConv2d(4, 4, 3)
    with pytest.raises(
        ext.OperatorNotProvided, match=r"'deform_conv_forward' is not provided.*MMCV_OPS=compiled"
    ):
        conv(torch.randn(1, 4, 8, 8), torch.zeros(1, 18, 6, 6))


COLLECT_ENV = (
    'import mmcv.ops, mmcv._ext as e; from mmcv.utils import collect_env; '
    'env = collect_env(); print(env["MMCV Compiler"], "|", env["MMCV CUDA Compiler"])'
)
FRESH_IMPORTS = [
    'import mmdet.models',
    'import mmseg.models',
    'from mmdet.apis import DetInferencer',
    'from mmcv.ops import batched_nms, RoIAlign; import hst_mm',
    'import hst_mm; import mmcv.ops',
]


@pytest.fixture(scope='module')
def fresh_processes():
    """{code: (exit status, stdout, stderr)} of each snippet in a fresh interpreter, all
    started at once: each is an import that runs on one core for seconds."""
    codes = [COLLECT_ENV, *FRESH_IMPORTS]
    done = run_together([[sys.executable, '-c', code] for code in codes], cwd='/', check=False)
    return {code: (proc.returncode, proc.stdout, proc.stderr) for code, proc in zip(codes, done)}


@pytest.mark.slow
def test_every_name_mmcv_ops_asks_for_exists(fresh_processes):
    """``import mmcv.ops`` asserts each name; a fresh process sees the same."""
    _, out, err = fresh_processes[COLLECT_ENV]
    assert 'torchvision' in out and 'not compiled' in out, err[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize('code', FRESH_IMPORTS)
def test_imports_in_a_fresh_process(code, fresh_processes):
    status, _, err = fresh_processes[code]
    assert status == 0, err[-2000:]


# ---- against mmcv's compiled kernels, when a compiled wheel is at hand ------------------------


def _compiled_ext():
    """mmcv's compiled ``_ext`` from a cached ``MMCV_OPS=compiled`` wheel, or None."""
    import glob
    import importlib.machinery
    import importlib.util
    import os

    cache = os.environ.get('HST_MM_CACHE', os.path.expanduser('~/.cache/hst_mm'))
    torch_tag = torch.__version__.replace('+', '_')
    py = f'py{sys.version_info[0]}{sys.version_info[1]}'
    wheels = glob.glob(f'{cache}/wheels/mmcv-*-torch{torch_tag}-cpu-{py}/mmcv-*.whl')
    if not wheels:
        return None
    target = Path(cache) / 'compiled_ext' / Path(wheels[0]).stem
    if not target.is_dir():
        with zipfile.ZipFile(wheels[0]) as z:
            names = [n for n in z.namelist() if n.startswith('mmcv/_ext') and n.endswith('.so')]
            z.extract(names[0], target)
    so = next(target.glob('mmcv/_ext*.so'))
    loader = importlib.machinery.ExtensionFileLoader('_ext', str(so))
    spec = importlib.util.spec_from_file_location('_ext', str(so), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_same_as_mmcv_compiled_cpu_kernels():
    compiled = _compiled_ext()
    if compiled is None:
        pytest.skip(
            'no MMCV_OPS=compiled wheel for this torch in the cache: '
            'MMCV_OPS=compiled bash tools/build_mmcv.sh builds one'
        )
    feat = torch.randn(2, 3, 12, 16)
    rois = _rois()[:-1]  # mmcv's kernel asserts on the x2 < x1 box (torchvision gives zeros)
    for out, sr, aligned in CASES:
        mine = torch.zeros(len(rois), 3, out, out)
        theirs = torch.zeros_like(mine)
        kw = dict(
            aligned_height=out,
            aligned_width=out,
            spatial_scale=0.5,
            sampling_ratio=sr,
            pool_mode=1,
            aligned=aligned,
        )
        e = torch.zeros(0)
        ext.roi_align_forward(feat, rois, mine, e, e, **kw)
        compiled.roi_align_forward(feat, rois, theirs, e, e, **kw)
        assert torch.equal(mine, theirs), (out, sr, aligned)
        grad = torch.randn_like(mine)
        g_mine, g_theirs = torch.zeros_like(feat), torch.zeros_like(feat)
        ext.roi_align_backward(grad, rois, e, e, g_mine, **kw)
        compiled.roi_align_backward(grad, rois, e, e, g_theirs, **kw)
        torch.testing.assert_close(g_mine, g_theirs, rtol=1e-6, atol=1e-6)
    g = torch.Generator().manual_seed(1)
    for offset in (0, 1):
        for _ in range(50):
            xy = torch.rand(40, 2, generator=g) * 50
            boxes = torch.cat([xy, xy + torch.rand(40, 2, generator=g) * 30 + 1], 1)
            scores = torch.randperm(40, generator=g).float() / 40
            assert torch.equal(
                ext.nms(boxes, scores, 0.5, offset),
                compiled.nms(boxes, scores, iou_threshold=0.5, offset=offset),
            )
