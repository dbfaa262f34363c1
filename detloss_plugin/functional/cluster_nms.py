r"""Cluster-DIoU-NMS in matrix form, and its weighted variant.

Zheng et al., "Enhancing Geometric Factors in Model Learning and Inference for Object
Detection and Instance Segmentation", IEEE TCYB 2021, https://arxiv.org/abs/2005.03572
(Cluster-NMS, Sec. IV); reference code Zzh-tju/CIoU, ``layers/functions/detection.py``
(``cluster_diounms``, ``cc_cluster_SPM_dist_weighted_nms``).

With the boxes sorted by descending score, let :math:`X` be the upper-triangular
boolean matrix :math:`X_{ij} = [i < j] \wedge [DIoU(B_i, B_j) > \varepsilon]`, where
:math:`DIoU = IoU - (\rho^2/c^2)^\beta` is the criterion of :func:`.nms.diou_nms`.
Cluster-NMS iterates

.. math::
    k^{(0)} = \mathbf{1}, \qquad
    k^{(t)}_j = \neg \bigvee_i \left(k^{(t-1)}_i \wedge X_{ij}\right)

(the paper's :math:`B = \mathrm{diag}(k) X`, :math:`k_j = [\max_i B_{ij} \le \varepsilon]`)
until :math:`k` stops changing. The first iteration is Fast NMS; the fixed point is
exactly the set greedy DIoU-NMS keeps (the paper's Theorem), reached after as many
iterations as the longest chain of suppressions, with matrix operations only.

Cost: :math:`X` is a dense ``N x N`` boolean matrix (100 MB for 10,000 boxes); the
DIoU values are computed in row blocks of bounded size. :func:`.nms.diou_nms` computes
the same set with a C loop (CPU) or sparse suppressing pairs (other devices), which is
faster and lighter for large ``N`` (docs/benchmarks.md); the matrix form is the paper's
algorithm and the base of the weighted variant.

Departures from the reference: ``beta`` defaults to 1.0, like :func:`.nms.diou_nms`
and the paper's SSD / Faster R-CNN setting (the reference's ``diou`` hard-codes
``D ** 0.9``); no ``top_k`` (mmdet's ``nms_pre`` does that) and no cap of 200
iterations (the reference stops there, which can leave the result short of the fixed
point); the suppression test works on booleans, so ``iou_threshold`` may be negative.
"""
from typing import Tuple

import torch
from torch import Tensor

from ._checks import check_finite, check_positive
from .box_geometry import box_pair_geometry
from .nms import _BLOCK_ELEMENTS, _check_nms_args, _diou_block, _pair_parts

__all__ = ['cluster_diou_nms', 'weighted_cluster_diou_nms']


def _check_args(boxes: Tensor, scores: Tensor, iou_threshold: float, beta: float,
                offset: float) -> None:
    _check_nms_args(boxes, scores, iou_threshold, beta, offset, 'torch')
    # NaN or Inf would silently suppress nothing (or everything)
    check_finite('iou_threshold', iou_threshold)


def _sorted(boxes: Tensor, scores: Tensor):
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    if sorted_boxes.dtype in (torch.float16, torch.bfloat16):
        sorted_boxes = sorted_boxes.float()
    return order, sorted_boxes


def _suppression_matrix(boxes: Tensor, iou_threshold: float, beta: float,
                        offset: float) -> Tensor:
    """``X``: ``Tensor[N, N]`` bool, ``X[i, j]`` when ``i < j`` and box i's DIoU with
    box j exceeds the threshold (boxes in score order)."""
    n = boxes.shape[0]
    parts = _pair_parts(boxes, offset)
    matrix = torch.zeros(n, n, dtype=torch.bool, device=boxes.device)
    block = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, n, block):  # row blocks bound the float temporaries
        r = slice(start, min(n, start + block))
        hit = _diou_block(parts, r, slice(start, n), beta, offset) > iou_threshold
        matrix[r, start:] = torch.triu(hit, diagonal=1)
    return matrix


def _cluster_keep(matrix: Tensor) -> Tensor:
    """The fixed point of ``keep[j] = not any(keep[i] and X[i, j])``, from all ones."""
    keep = ~matrix.any(0)  # iteration 1 (all rows active): Fast NMS
    while True:
        new_keep = ~matrix[keep].any(0)
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep


def cluster_diou_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, beta: float = 1.0,
                     offset: float = 0) -> Tensor:
    """Cluster-DIoU-NMS of one set of boxes: the boxes greedy DIoU-NMS keeps, computed
    in the paper's matrix form (module docstring).

    Args:
        boxes: ``Tensor[N, 4]`` boxes ``(x1, y1, x2, y2)``, any float dtype and device.
        scores: ``Tensor[N]``.
        iou_threshold: a box is suppressed when ``IoU - (rho^2 / c^2) ** beta`` with a
            higher-scoring kept box is strictly greater than this; a finite number
            (negative values are allowed here, not through mmcv's ``batched_nms``:
            :mod:`detloss_plugin.ops.cluster_nms`).
        beta: exponent of the distance penalty, a finite number > 0 (1.0; the
            reference: 0.9).
        offset: 0, or 1 for the legacy ``x2 - x1 + 1`` width convention (as mmcv).

    Returns:
        ``Tensor[K]`` int64 indices of the kept boxes, by descending score (ties keep
        their input order); equal to ``diou_nms(boxes, scores, iou_threshold, beta,
        offset)``.
    """
    _check_args(boxes, scores, iou_threshold, beta, offset)
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order, sorted_boxes = _sorted(boxes, scores)
    matrix = _suppression_matrix(sorted_boxes, float(iou_threshold), float(beta), offset)
    return order[_cluster_keep(matrix)]


def weighted_cluster_diou_nms(boxes: Tensor, scores: Tensor, iou_threshold: float,
                              beta: float = 1.0, weight_threshold: float = 0.8,
                              offset: float = 0) -> Tuple[Tensor, Tensor]:
    r"""Weighted Cluster-DIoU-NMS: the boxes of :func:`cluster_diou_nms`, each replaced
    by a score- and IoU-weighted average of its cluster.

    For a kept box :math:`i`, the cluster is :math:`i` itself and every lower-scoring
    box :math:`j` with :math:`IoU(B_i, B_j) > ` ``weight_threshold``; the merged box is

    .. math::
        \hat B_i = \frac{s_i B_i + \sum_j s_j IoU(B_i, B_j) B_j}
                        {s_i + \sum_j s_j IoU(B_i, B_j)}

    (coordinate-wise), as the reference's weighted Cluster-NMS computes it (weights
    from the plain IoU matrix, threshold 0.8). Scores are not changed.

    Args:
        scores: ``Tensor[N]``, >= 0 (they are the weights of the average; a negative
            score would move the merged box out of the hull of its cluster, and is an
            error: one host synchronisation). Pass probabilities, not logits.
        weight_threshold: IoU above which a lower-scoring box joins the average, in
            [0, 1] (0.8, the reference's).
        Others: as :func:`cluster_diou_nms`.

    Returns:
        ``(keep, merged)``: ``Tensor[K]`` int64 indices of the kept boxes by descending
        score, and ``Tensor[K, 4]`` their merged boxes (dtype of ``boxes``).

    Departures: the reference builds the weighted variant on plain-IoU Cluster-NMS with
    Matrix-NMS-style score penalties (``cc_cluster_SPM_dist_weighted_nms``); here the
    kept set is Cluster-DIoU-NMS's, scores are untouched, and only the box averaging is
    taken from it.
    """
    _check_args(boxes, scores, iou_threshold, beta, offset)
    check_positive('weight_threshold', weight_threshold, allow_zero=True)
    if weight_threshold > 1:
        raise ValueError(f'weight_threshold must be in [0, 1], got {weight_threshold}')
    if boxes.shape[0] == 0:
        return (torch.empty(0, dtype=torch.int64, device=boxes.device),
                boxes.new_zeros(0, 4))
    if (scores < 0).any():  # one host synchronisation (inference)
        raise ValueError(f'scores must be >= 0 for weighted_cluster_diou_nms (they weight '
                         f'the average of each cluster), got a minimum of '
                         f'{scores.min().item()}')
    order, sorted_boxes = _sorted(boxes, scores)
    matrix = _suppression_matrix(sorted_boxes, float(iou_threshold), float(beta), offset)
    keep = _cluster_keep(matrix)
    rows = keep.nonzero().squeeze(1)
    # IoU of each kept box with every box; the legacy offset widens x2, y2 by it
    widened = sorted_boxes + sorted_boxes.new_tensor([0, 0, offset, offset])
    iou = box_pair_geometry(widened[rows, None], widened[None, :], eps=0.0).iou
    n = sorted_boxes.shape[0]
    later = torch.arange(n, device=rows.device)[None, :] > rows[:, None]
    s = scores[order].to(sorted_boxes.dtype)
    member = later & (iou > weight_threshold)
    weights = torch.where(member, iou, torch.zeros_like(iou)) * s[None, :]
    weights[torch.arange(rows.numel(), device=rows.device), rows] = s[rows]
    total = weights.sum(1, keepdim=True)
    merged = weights @ sorted_boxes / total.clamp(min=torch.finfo(total.dtype).tiny)
    # a kept box whose weights are all zero (score 0, empty cluster) stays as it is
    merged = torch.where(total > 0, merged, sorted_boxes[rows])
    return order[rows], merged.to(boxes.dtype)
