"""Part 1 of the GPU check, run in a worker process: mmcv's operators on the device under test.

``roi_align`` (forward and backward), ``nms`` and ``sigmoid_focal_loss`` through mmcv's
public wrappers, against the same wrappers on the CPU in float64 (NMS: also a greedy
float64 NMS written here); on CUDA, float32 results also against the CPU's float32.
"""

from __future__ import annotations

import argparse
import itertools
from typing import Callable, Dict, List, Optional

# Parity tolerances: the largest |result - reference| allowed, relative to max |reference|.
# Low-precision results are rounded once to their dtype (the operators compute in float32),
# so 4 units of that dtype's roundoff (2^-11 float16, 2^-8 bfloat16) leave a margin.
# float32 results carry float32's rounding of the sampling coordinates (RoIAlign: ~5e-6 here)
# and of 1 - sigmoid(x) for large logits (focal loss, as in mmcv's kernel): 10x margin.
PARITY_TOL = {'float32': 5e-5, 'float16': 2e-3, 'bfloat16': 1.6e-2}
# NMS boxes are made so that no pair's IoU lies within this of a tested threshold: kept
# indices must then agree exactly in every precision (no ties for rounding to break).
NMS_IOU_MARGIN = 1e-4
NMS_THRESHOLDS = (0.5, 0.7)


def _diff(test, ref, cpu32=None) -> Dict[str, Optional[float]]:
    """Max |test - ref| (absolute and relative to max |ref|), and max |test - cpu32|."""
    test, ref = test.detach().double().cpu(), ref.detach().double().cpu()
    max_abs = (test - ref).abs().max().item() if ref.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 0.0
    out = {
        'max_abs': max_abs,
        'max_ref': scale,
        'rel': max_abs / scale if scale > 0 else max_abs,
        'max_abs_vs_cpu_float32': None,
    }
    if cpu32 is not None:
        out['max_abs_vs_cpu_float32'] = (
            (test - cpu32.detach().double().cpu()).abs().max().item() if ref.numel() else 0.0
        )
    return out


def _roi_inputs(torch, gen):
    """Features ``(2, 16, 48, 64)`` at stride 4 and rois ``(64, 5)`` in image pixels.

    Boxes from under one feature pixel to 120 px, some crossing the border, to reach the
    adaptive sampling grid, ``aligned=False``'s minimum size and the edge rules.
    """
    feats = torch.randn(2, 16, 48, 64, generator=gen, dtype=torch.float64)
    k = 64
    xy = torch.rand(k, 2, generator=gen, dtype=torch.float64) * torch.tensor([264.0, 200.0]) - 8
    wh = torch.rand(k, 2, generator=gen, dtype=torch.float64) * 118 + 2
    batch_idx = torch.randint(0, 2, (k, 1), generator=gen).double()
    rois = torch.cat([batch_idx, xy, xy + wh], 1)
    return feats, rois


def _run_case(meta: dict, compute: Callable[[], dict]) -> dict:
    """``meta`` plus what ``compute()`` measured; an exception fails this case only."""
    try:
        return {**meta, **compute()}
    except Exception as exc:  # noqa: BLE001  one broken case must not hide the others
        return {**meta, 'error': f'{type(exc).__name__}: {exc}', 'pass': False}


def _value_and_grad_checks(device, dtype, run, value_name: str) -> dict:
    """Compare ``run`` on ``device`` in ``dtype`` (autocast unless float32) with the CPU.

    ``run(device, dtype, autocast) -> (value, grad_input)``. The reference is the CPU in
    float64; on CUDA, float32 results are also compared with the CPU in float32.
    """
    import torch

    cpu = torch.device('cpu')
    low = dtype != torch.float32
    value, grad = run(device, dtype, low)
    ref_value, ref_grad = run(cpu, torch.float64, False)
    cpu_value = cpu_grad = None
    if device.type == 'cuda' and not low:
        cpu_value, cpu_grad = run(cpu, torch.float32, False)
    checks = {
        value_name: _diff(value, ref_value, cpu_value),
        'grad_input': _diff(grad, ref_grad, cpu_grad),
    }
    tol = PARITY_TOL[str(dtype).split('.')[-1]]
    # Results must come back in the caller's dtype (mmcv allocates them so).
    ok = (
        value.dtype == dtype
        and grad.dtype == dtype
        and all(c['rel'] <= tol for c in checks.values())
    )
    return {'checks': checks, 'tol_rel': tol, 'pass': ok}


def _autocast(torch, device, dtype, enabled: bool):
    return (
        torch.autocast(device.type, dtype=dtype)
        if enabled
        else torch.autocast(device.type, enabled=False)
    )


def parity_roi_align(device, torch, ops, gen) -> List[dict]:
    """RoIAlign forward and backward on ``device`` vs the CPU in float64 (24 cases)."""
    feats64, rois64 = _roi_inputs(torch, gen)
    cases = []
    for dtype, aligned, sampling_ratio, out_size in itertools.product(
        (torch.float32, torch.float16, torch.bfloat16), (True, False), (0, 2), (7, 14)
    ):
        # Inputs and output gradient rounded to the dtype under test, for the reference
        # too: the difference then measures the operator, not the rounding of its inputs.
        feats, rois = feats64.to(dtype), rois64.to(dtype)
        grad_out = torch.randn(
            rois.size(0), feats.size(1), out_size, out_size, generator=gen, dtype=torch.float64
        ).to(dtype)
        kwargs = dict(
            output_size=(out_size, out_size),
            spatial_scale=0.25,
            sampling_ratio=sampling_ratio,
            pool_mode='avg',
            aligned=aligned,
        )

        def run(
            dev,
            cast,
            autocast,
            feats=feats,
            rois=rois,
            grad_out=grad_out,
            kwargs=kwargs,
            dtype=dtype,
        ):
            x = feats.detach().to(dev, cast).requires_grad_()
            with _autocast(torch, dev, dtype, autocast):
                out = ops.roi_align(x, rois.to(dev, cast), **kwargs)
            (out.double() * grad_out.to(dev, torch.float64)).sum().backward()
            return out, x.grad

        meta = {
            'op': 'roi_align',
            'dtype': str(dtype).split('.')[-1],
            'autocast': dtype != torch.float32,
            'params': {
                'aligned': aligned,
                'sampling_ratio': sampling_ratio,
                'output_size': out_size,
                'spatial_scale': 0.25,
                'features': list(feats.shape),
                'rois': rois.size(0),
            },
        }
        cases.append(
            _run_case(
                meta,
                lambda run=run, dtype=dtype: _value_and_grad_checks(device, dtype, run, 'output'),
            )
        )
    return cases


def _iou_matrix(boxes, offset: int):
    """Pairwise IoU ``(N, N)`` of float64 boxes ``(N, 4)`` with mmcv's ``offset``."""
    import torch

    wh = (boxes[:, 2:] - boxes[:, :2] + offset).clamp(min=0)
    area = wh[:, 0] * wh[:, 1]
    lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter_wh = (rb - lt + offset).clamp(min=0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    return inter / (area[:, None] + area[None, :] - inter)


def _nms_boxes(torch, gen, n: int = 600):
    """``(M, 4)`` float32 boxes in clusters (many overlaps) and distinct scores ``(M,)``.

    Boxes whose IoU with another box lies within ``NMS_IOU_MARGIN`` of a tested threshold,
    for either offset, are dropped, so float32 and float64 arithmetic keep the same boxes.
    """
    centres = torch.rand(12, 2, generator=gen, dtype=torch.float64) * 400 + 50
    pick = torch.randint(0, 12, (n,), generator=gen)
    xy = centres[pick] + torch.randn(n, 2, generator=gen, dtype=torch.float64) * 12
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 60 + 20
    boxes = torch.cat([xy, xy + wh], 1).float().double()  # exactly float32 values
    keep = torch.ones(n, dtype=torch.bool)
    for offset in (0, 1):
        iou = _iou_matrix(boxes, offset)
        iou.fill_diagonal_(-1.0)
        for thr in NMS_THRESHOLDS:
            near = (iou - thr).abs() < NMS_IOU_MARGIN
            for i, j in near.nonzero().tolist():
                if keep[i] and keep[j]:
                    keep[max(i, j)] = False
    boxes = boxes[keep].float()
    scores = (torch.randperm(boxes.size(0), generator=gen).float() + 1) / (boxes.size(0) + 1)
    return boxes, scores


def reference_nms(boxes, scores, iou_threshold: float, offset: int) -> List[int]:
    """Greedy NMS in float64: highest score first, drop boxes with IoU > threshold."""
    import torch

    iou = _iou_matrix(boxes.double(), offset)
    order = torch.argsort(scores.double(), descending=True).tolist()
    removed = torch.zeros(len(order), dtype=torch.bool)
    kept = []
    for i in order:
        if removed[i]:
            continue
        kept.append(i)
        removed |= iou[i] > iou_threshold
    return kept


def parity_nms(device, torch, ops, gen) -> List[dict]:
    """NMS on ``device`` vs the CPU and the float64 greedy reference: same kept indices."""
    boxes, scores = _nms_boxes(torch, gen)
    cases = []
    for offset, thr in itertools.product((0, 1), NMS_THRESHOLDS):

        def compare(offset=offset, thr=thr) -> dict:
            dets, inds = ops.nms(boxes.to(device), scores.to(device), thr, offset=offset)
            cpu_inds = ops.nms(boxes, scores, thr, offset=offset)[1].tolist()
            ref = reference_nms(boxes, scores, thr, offset)
            inds = inds.cpu().tolist()
            # dets: the kept boxes and their scores, exactly.
            dets_ok = torch.equal(dets.cpu(), torch.cat([boxes[inds], scores[inds, None]], 1))
            return {
                'kept': len(inds),
                'kept_cpu': len(cpu_inds),
                'kept_reference': len(ref),
                'same_as_cpu': inds == cpu_inds,
                'same_as_reference': inds == ref,
                'dets_match_boxes': dets_ok,
                'pass': inds == cpu_inds == ref and dets_ok,
            }

        meta = {
            'op': 'nms',
            'dtype': 'float32',
            'autocast': False,
            'params': {'offset': offset, 'iou_threshold': thr, 'boxes': boxes.size(0)},
        }
        cases.append(_run_case(meta, compare))
    return cases


def parity_focal_loss(device, torch, ops, gen) -> List[dict]:
    """sigmoid_focal_loss values and gradients on ``device`` vs CPU float64 (12 cases)."""
    n, c = 256, 80
    # Logits about -9 to 7: beyond that, float32's 1 - sigmoid(x) (mmcv's formula) loses
    # more digits than the tolerance allows, on every device alike.
    logits64 = torch.randn(n, c, generator=gen, dtype=torch.float64) * 2 - 1
    # Background (= c) included without class weights; mmcv's kernel needs targets < c
    # when weighted.
    targets = {
        'none': torch.randint(0, c + 1, (n,), generator=gen),
        'class': torch.randint(0, c, (n,), generator=gen),
    }
    class_weight = torch.rand(c, generator=gen, dtype=torch.float64) + 0.5
    cases = []
    for dtype, weighting, reduction in itertools.product(
        (torch.float32, torch.float16, torch.bfloat16), ('none', 'class'), ('none', 'mean')
    ):
        logits, weight = logits64.to(dtype), class_weight.to(dtype)  # rounded, as above
        grad_seed = (
            torch.randn(n, c, generator=gen, dtype=torch.float64).to(dtype)
            if reduction == 'none'
            else torch.ones((), dtype=dtype)
        )

        def run(
            dev,
            cast,
            autocast,
            logits=logits,
            weight=weight,
            grad_seed=grad_seed,
            target=targets[weighting],
            weighting=weighting,
            reduction=reduction,
            dtype=dtype,
        ):
            x = logits.detach().to(dev, cast).requires_grad_()
            w = weight.to(dev, cast) if weighting == 'class' else None
            with _autocast(torch, dev, dtype, autocast):
                loss = ops.sigmoid_focal_loss(x, target.to(dev), 2.0, 0.25, w, reduction)
            (loss.double() * grad_seed.to(dev, torch.float64)).sum().backward()
            return loss, x.grad

        meta = {
            'op': 'sigmoid_focal_loss',
            'dtype': str(dtype).split('.')[-1],
            'autocast': dtype != torch.float32,
            'params': {
                'gamma': 2.0,
                'alpha': 0.25,
                'weight': weighting,
                'reduction': reduction,
                'logits': [n, c],
            },
        }
        cases.append(
            _run_case(
                meta,
                lambda run=run, dtype=dtype: _value_and_grad_checks(device, dtype, run, 'loss'),
            )
        )
    return cases


def parity_worker(args: argparse.Namespace) -> dict:
    """All parity cases on ``args.device``; returns the part's JSON."""
    import mmcv
    import mmcv._ext as ext
    import mmcv.ops as ops
    import torch

    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    cases = (
        parity_roi_align(device, torch, ops, gen)
        + parity_nms(device, torch, ops, gen)
        + parity_focal_loss(device, torch, ops, gen)
    )
    if device.type == 'cuda':
        reference = (
            'CPU float64 through the same mmcv wrappers (NMS: also a greedy float64 '
            'NMS); float32 CUDA results also compared with CPU float32'
        )
    else:
        reference = (
            'no CUDA: the CPU in float32 / autocast vs the CPU in float64 through '
            'the same mmcv wrappers (NMS: also a greedy float64 NMS)'
        )
    provider = (
        'hst_mm (mmcv_ext/_ext.py: torch + torchvision)'
        if hasattr(ext, 'OperatorNotProvided')
        else "mmcv's compiled extension"
    )
    return {
        'device': str(device),
        'reference': reference,
        'mmcv': mmcv.__version__,
        'mmcv_ext': provider,
        'mmcv_ext_file': getattr(ext, '__file__', None),
        'tolerances_rel': PARITY_TOL,
        'nms_iou_margin': NMS_IOU_MARGIN,
        'cases': cases,
        'passed': sum(c['pass'] for c in cases),
        'total': len(cases),
    }


def format_case(case: dict) -> str:
    """One parity case as a line of the report."""
    p = case['params']
    if case['op'] == 'roi_align':
        what = f'aligned={p["aligned"]!s:<5} sr={p["sampling_ratio"]} out={p["output_size"]}'
    elif case['op'] == 'nms':
        what = f'offset={p["offset"]} iou={p["iou_threshold"]}'
    else:
        what = f'weight={p["weight"]:<5} reduction={p["reduction"]}'
    head = f'  {case["op"]:<18} {what:<30} {case["dtype"]:<8}'
    if 'error' in case:
        return f'{head} FAIL: {case["error"]}'
    if case['op'] == 'nms':
        return (
            f'{head} kept {case["kept"]} (cpu {case["kept_cpu"]}, reference '
            f'{case["kept_reference"]}){"":14} {"ok" if case["pass"] else "FAIL"}'
        )
    a, b = case['checks'].values()
    return (
        f'{head} out {a["rel"]:.1e}  grad {b["rel"]:.1e}  tol {case["tol_rel"]:.2g}  '
        f'{"ok" if case["pass"] else "FAIL"}'
    )
