"""``mmcv._ext`` on torch and torchvision: the operators the hst_mm configs reach, for CPU
and CUDA tensors, in float32/float64 and under autocast (float16, bfloat16).

This file is installed as ``mmcv/_ext.py`` inside a pure-Python build of mmcv 2.1.0
(``MMCV_WITH_OPS=0``; see ``tools/build_mmcv.sh``), where mmcv's own build would put its
compiled extension. mmcv's op modules call these functions with the compiled extension's
calling convention: outputs are written into the tensors mmcv passes in.

Provided (each computes what mmcv's kernels compute; see ``tests/test_mmcv_ext.py``):

* ``nms``: torchvision's NMS (same greedy rule: a box is dropped when its IoU with a kept,
  higher-scoring box is ``> iou_threshold``). ``offset=1`` (the legacy ``+1`` box
  arithmetic) is the same IoU computed on boxes with ``x2 + 1, y2 + 1``. Boxes of equal
  score may be kept in another order than mmcv's compiled kernel keeps them (neither sorts
  stably).
* ``roi_align_forward`` / ``roi_align_backward``: torchvision's RoIAlign (average pooling;
  ``aligned`` and ``sampling_ratio`` mean the same in both).
* ``sigmoid_focal_loss_forward`` / ``_backward``: mmcv's CUDA kernel formulas in torch.
* ``get_compiler_version`` / ``get_compiling_cuda_version``: what the environment
  report (``mmcv.utils.collect_env``) prints.

Every other name that ``import mmcv.ops`` asks for exists and raises
:class:`OperatorNotProvided`, naming the operator and how to build mmcv's compiled one.
Half and bfloat16 inputs are computed in float32 and written back in the caller's dtype.
"""

from __future__ import annotations

from typing import Callable

import torch
import torchvision  # noqa: F401  registers torch.ops.torchvision.*

BUILD_HINT = (
    "it needs mmcv's compiled operators: rebuild the environment with "
    '`make install MMCV_OPS=compiled` (a C++ compiler, and nvcc for CUDA, needed)'
)

_FLT_MIN = torch.finfo(torch.float32).tiny


class OperatorNotProvided(NotImplementedError):
    """An mmcv operator that the pure-Python mmcv of hst_mm does not implement."""


def get_compiler_version() -> str:
    return (
        f'none: operators from torch {torch.__version__} / torchvision '
        f'{torchvision.__version__} (hst_mm)'
    )


def get_compiling_cuda_version() -> str:
    return 'not compiled'


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32


def _no_autocast(t: torch.Tensor):
    return torch.autocast(device_type=t.device.type, enabled=False)


# ---- NMS -------------------------------------------------------------------------------------


def nms(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, offset: int = 0
) -> torch.Tensor:
    """Greedy NMS. ``boxes (N, 4)`` as x1, y1, x2, y2; ``scores (N,)``.

    Returns the kept indices ``(K,)`` (int64), highest score first, as mmcv's kernel does.
    """
    if offset not in (0, 1):
        raise ValueError(f'nms: offset must be 0 or 1, got {offset}')
    if boxes.dim() != 2 or boxes.size(1) != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(
            f'nms: expected boxes (N, 4) and scores (N,), got '
            f'{tuple(boxes.shape)} and {tuple(scores.shape)}'
        )
    if boxes.numel() == 0:
        return boxes.new_empty(0, dtype=torch.long)
    dtype = _compute_dtype(boxes)
    with _no_autocast(boxes):
        boxes = boxes.to(dtype)
        if offset:
            boxes = boxes + boxes.new_tensor([0, 0, 1, 1])
        return torch.ops.torchvision.nms(boxes, scores.to(dtype), float(iou_threshold))


# ---- RoIAlign --------------------------------------------------------------------------------


def _check_roi_align(name: str, feats_shape, rois: torch.Tensor, pool_mode: int) -> None:
    if pool_mode != 1:
        raise OperatorNotProvided(
            f'mmcv.ops.RoIAlign with pool_mode="max": hst_mm provides average pooling only; '
            f'{BUILD_HINT}'
        )
    if len(feats_shape) != 4 or rois.dim() != 2 or rois.size(1) != 5:
        raise ValueError(
            f'{name}: expected features (N, C, H, W) and rois (K, 5) as '
            f'(batch index, x1, y1, x2, y2), got {tuple(feats_shape)} and '
            f'{tuple(rois.shape)}'
        )


def roi_align_forward(
    input: torch.Tensor,
    rois: torch.Tensor,
    output: torch.Tensor,
    argmax_y: torch.Tensor,
    argmax_x: torch.Tensor,
    aligned_height: int,
    aligned_width: int,
    spatial_scale: float,
    sampling_ratio: int,
    pool_mode: int,
    aligned: bool,
) -> None:
    """``input (N, C, H, W)``, ``rois (K, 5)`` -> writes ``output (K, C, ah, aw)``."""
    _check_roi_align('roi_align_forward', input.shape, rois, pool_mode)
    dtype = _compute_dtype(input)
    with _no_autocast(input):
        out = torch.ops.torchvision.roi_align(
            input.to(dtype).contiguous(),
            rois.to(dtype),
            float(spatial_scale),
            int(aligned_height),
            int(aligned_width),
            int(sampling_ratio),
            bool(aligned),
        )
    output.copy_(out)


def roi_align_backward(
    grad_output: torch.Tensor,
    rois: torch.Tensor,
    argmax_y: torch.Tensor,
    argmax_x: torch.Tensor,
    grad_input: torch.Tensor,
    aligned_height: int,
    aligned_width: int,
    spatial_scale: float,
    sampling_ratio: int,
    pool_mode: int,
    aligned: bool,
) -> None:
    """``grad_output (K, C, ah, aw)`` -> writes ``grad_input (N, C, H, W)``."""
    _check_roi_align('roi_align_backward', grad_input.shape, rois, pool_mode)
    dtype = _compute_dtype(grad_output)
    n, c, h, w = grad_input.shape
    with _no_autocast(grad_output):
        grad = torch.ops.torchvision._roi_align_backward(
            grad_output.to(dtype).contiguous(),
            rois.to(dtype),
            float(spatial_scale),
            int(aligned_height),
            int(aligned_width),
            n,
            c,
            h,
            w,
            int(sampling_ratio),
            bool(aligned),
        )
    grad_input.copy_(grad)


# ---- sigmoid focal loss ----------------------------------------------------------------------


def _focal_terms(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor):
    """Shared set-up: probabilities in the compute dtype, positive/negative masks (N, C)."""
    if input.dim() != 2 or target.shape != input.shape[:1]:
        raise ValueError(
            f'sigmoid_focal_loss: expected input (N, C) and target (N,), got '
            f'{tuple(input.shape)} and {tuple(target.shape)}'
        )
    num_classes = input.size(1)
    if weight.numel() and bool(((target < 0) | (target >= num_classes)).any()):
        # mmcv's kernel reads weight[target] out of bounds for background targets.
        raise ValueError(
            'sigmoid_focal_loss: a class weight needs every target in '
            f'[0, {num_classes}); got background or negative targets'
        )
    x = input.to(_compute_dtype(input))
    p = torch.sigmoid(x)
    positive = target.unsqueeze(1) == torch.arange(num_classes, device=input.device)
    scale = weight.to(x.dtype)[target].unsqueeze(1) if weight.numel() else None
    return p, positive, scale


def sigmoid_focal_loss_forward(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    output: torch.Tensor,
    gamma: float,
    alpha: float,
) -> None:
    """Element-wise loss ``(N, C)`` written into ``output``; ``target (N,)`` in ``[0, C]``,
    ``C`` meaning background."""
    with _no_autocast(input):
        p, positive, scale = _focal_terms(input, target, weight)
        tiny = torch.tensor(_FLT_MIN, dtype=p.dtype, device=p.device)
        term_p = (1 - p).pow(gamma) * torch.log(torch.maximum(p, tiny))
        term_n = p.pow(gamma) * torch.log(torch.maximum(1 - p, tiny))
        loss = torch.where(positive, -alpha * term_p, -(1 - alpha) * term_n)
        if scale is not None:
            loss = loss * scale
    output.copy_(loss)


def sigmoid_focal_loss_backward(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    grad_input: torch.Tensor,
    gamma: float,
    alpha: float,
) -> None:
    """d loss / d input ``(N, C)`` written into ``grad_input``."""
    with _no_autocast(input):
        p, positive, scale = _focal_terms(input, target, weight)
        tiny = torch.tensor(_FLT_MIN, dtype=p.dtype, device=p.device)
        term_p = (1 - p).pow(gamma) * (1 - p - gamma * p * torch.log(torch.maximum(p, tiny)))
        term_n = p.pow(gamma) * (gamma * (1 - p) * torch.log(torch.maximum(1 - p, tiny)) - p)
        grad = torch.where(positive, -alpha * term_p, -(1 - alpha) * term_n)
        if scale is not None:
            grad = grad * scale
    grad_input.copy_(grad)


# ---- every other operator that `import mmcv.ops` asks for ------------------------------------

NOT_PROVIDED = (
    'active_rotated_filter_backward',
    'active_rotated_filter_forward',
    'assign_score_withk_backward',
    'assign_score_withk_forward',
    'ball_query_forward',
    'bbox_overlaps',
    'bezier_align_backward',
    'bezier_align_forward',
    'bias_act',
    'border_align_backward',
    'border_align_forward',
    'box_iou_quadri',
    'box_iou_rotated',
    'carafe_backward',
    'carafe_forward',
    'carafe_naive_backward',
    'carafe_naive_forward',
    'chamfer_distance_backward',
    'chamfer_distance_forward',
    'contour_expand',
    'convex_giou',
    'convex_iou',
    'correlation_backward',
    'correlation_forward',
    'deform_conv_backward_input',
    'deform_conv_backward_parameters',
    'deform_conv_forward',
    'deform_roi_pool_backward',
    'deform_roi_pool_forward',
    'diff_iou_rotated_sort_vertices_forward',
    'dynamic_point_to_voxel_backward',
    'dynamic_point_to_voxel_forward',
    'dynamic_voxelize_forward',
    'filtered_lrelu',
    'filtered_lrelu_act_',
    'furthest_point_sampling_forward',
    'furthest_point_sampling_with_dist_forward',
    'fused_bias_leakyrelu',
    'fused_indice_conv_forward',
    'gather_points_backward',
    'gather_points_forward',
    'get_indice_pairs_2d_backward',
    'get_indice_pairs_2d_forward',
    'get_indice_pairs_3d_backward',
    'get_indice_pairs_3d_forward',
    'get_indice_pairs_4d_forward',
    'group_points_backward',
    'group_points_forward',
    'hard_voxelize_forward',
    'indice_conv_backward',
    'indice_conv_forward',
    'indice_maxpool_backward',
    'indice_maxpool_forward',
    'iou3d_boxes_overlap_bev_forward',
    'iou3d_nms3d_forward',
    'iou3d_nms3d_normal_forward',
    'knn_forward',
    'masked_col2im_forward',
    'masked_im2col_forward',
    'min_area_polygons',
    'modulated_deform_conv_backward',
    'modulated_deform_conv_forward',
    'ms_deform_attn_backward',
    'ms_deform_attn_forward',
    'nms_match',
    'nms_quadri',
    'nms_rotated',
    'pixel_group',
    'points_in_boxes_all_forward',
    'points_in_boxes_cpu_forward',
    'points_in_boxes_part_forward',
    'points_in_polygons_forward',
    'prroi_pool_backward',
    'prroi_pool_coor_backward',
    'prroi_pool_forward',
    'psamask_backward',
    'psamask_forward',
    'riroi_align_rotated_backward',
    'riroi_align_rotated_forward',
    'roi_align_rotated_backward',
    'roi_align_rotated_forward',
    'roi_pool_backward',
    'roi_pool_forward',
    'roiaware_pool3d_backward',
    'roiaware_pool3d_forward',
    'roipoint_pool3d_forward',
    'rotated_feature_align_backward',
    'rotated_feature_align_forward',
    'softmax_focal_loss_backward',
    'softmax_focal_loss_forward',
    'softnms',
    'stack_ball_query_forward',
    'stack_group_points_backward',
    'stack_group_points_forward',
    'sync_bn_backward_data',
    'sync_bn_backward_param',
    'sync_bn_forward_mean',
    'sync_bn_forward_output',
    'sync_bn_forward_var',
    'three_interpolate_backward',
    'three_interpolate_forward',
    'three_nn_forward',
    'tin_shift_backward',
    'tin_shift_forward',
    'upfirdn2d',
)


def _not_provided(name: str) -> Callable:
    def operator(*args, **kwargs):
        raise OperatorNotProvided(
            f'mmcv operator {name!r} is not provided by the pure-Python mmcv that hst_mm '
            f'installs (only nms, roi_align and sigmoid_focal_loss are); {BUILD_HINT}'
        )

    operator.__name__ = operator.__qualname__ = name
    return operator


globals().update({name: _not_provided(name) for name in NOT_PROVIDED})
