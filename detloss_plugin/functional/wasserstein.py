r"""Normalized Gaussian Wasserstein distance (NWD) as a loss and in greedy NMS.

A box :math:`(c_x, c_y, w, h)` is the 2-D Gaussian
:math:`\mathcal N((c_x, c_y), \mathrm{diag}(w^2/4, h^2/4))`; two boxes are compared by
the 2-Wasserstein distance of their Gaussians,

.. math::
    W_2^2 = \lVert c_1 - c_2 \rVert^2 + \frac{(w_1 - w_2)^2 + (h_1 - h_2)^2}{4},
    \qquad NWD = \exp\left(-\frac{\sqrt{W_2^2}}{C}\right),

with :math:`C` the dataset's mean absolute object size (12.8 px on AI-TOD). Unlike the
IoU, NWD is smooth and non-zero for disjoint boxes, and a one-pixel shift changes it
about as much for a 4-px box as for a 40-px one, which is the point for tiny objects.

Wang et al., "A Normalized Gaussian Wasserstein Distance for Tiny Object Detection",
2021, https://arxiv.org/abs/2110.13389; Xu et al., "Detecting tiny objects in aerial
images: A normalized Wasserstein distance and a new benchmark", ISPRS J. 2022,
https://arxiv.org/abs/2206.13996; reference code jwwangchn/NWD (mmdet 2.x). The geometry
(:func:`.box_geometry.wasserstein_sq`, :func:`.box_geometry.nwd`) is shared with the
assigners' calculators and matching costs.
"""
import math

import torch
from torch import Tensor

from ._checks import check_boxes, check_choice, check_positive, upcast
from .box_geometry import (NWD_CONSTANT, _nwd_from_distance, gaussian_embedding, nwd,
                           wasserstein_sq)
from .cluster_nms import _sorted
from .nms import _BLOCK_ELEMENTS, _greedy_fixed_point

__all__ = ['nwd_loss', 'nwd_nms', 'NWD_LOSS_MODES']

NWD_LOSS_MODES = ('exp', 'sqrt', 'log', 'norm_sqrt', 'w2')


def nwd_loss(pred: Tensor, target: Tensor, mode: str = 'exp',
             constant: float = NWD_CONSTANT, gamma: float = 1.0,
             eps: float = 1e-7) -> Tensor:
    r"""NWD loss, element-wise, in the reference's five forms (``mode``):

    .. math::
        \texttt{exp}: 1 - e^{-W_2 / C} \quad
        \texttt{sqrt}: W_2 \quad
        \texttt{log}: \ln(1 + W_2^2) \quad
        \texttt{norm\_sqrt}: 1 - \frac{1}{\gamma + W_2} \quad
        \texttt{w2}: W_2^2

    with :math:`W_2 = \sqrt{W_2^2}` (module docstring). ``'exp'`` is the paper's
    loss (1 - NWD, Eq. 7); the others are the reference code's alternatives
    (``wasserstein_loss``).

    Args:
        pred, target: ``Tensor[..., 4]`` boxes ``(x1, y1, x2, y2)``, same shape.
        mode: ``'exp'`` (default), ``'sqrt'``, ``'log'``, ``'norm_sqrt'`` or ``'w2'``.
        constant: :math:`C` of ``'exp'``, in the boxes' units (12.8, AI-TOD's mean
            object size in pixels; the ISPRS code: 12.7). Ignored by the other modes.
        gamma: :math:`\gamma` of ``'norm_sqrt'`` (1.0, the reference's), > 0.
        eps: :math:`W_2^2` is clamped at ``eps`` before the square root (finite, zero
            gradient for identical boxes).

    Returns:
        ``Tensor[...]``, the loss per box; half precision is computed in float32 and
        cast back.

    Departure: the reference adds ``eps`` to the squared centre distance (and to the
    widths and heights, where it cancels) instead of clamping.
    """
    check_boxes(pred, target)
    check_choice('mode', mode, NWD_LOSS_MODES)
    check_positive('constant', constant)
    check_positive('gamma', gamma)
    check_positive('eps', eps)
    if mode == 'exp':
        return 1 - nwd(pred, target, constant, eps)
    pred, target, dtype = upcast(pred, target)
    w2 = wasserstein_sq(pred, target)
    if mode == 'w2':
        loss = w2
    elif mode == 'log':
        loss = torch.log1p(w2)
    else:
        dist = w2.clamp(min=eps).sqrt()
        loss = dist if mode == 'sqrt' else 1 - 1 / (gamma + dist)
    return loss.to(dtype)


def _candidate_pairs(centre_x: Tensor, radius: float):
    """Pairs ``(a, b)``, ``a < b``, of positions in ``centre_x`` (sorted ascending) with
    ``centre_x[b] - centre_x[a] <= radius``, in chunks of at most ``_BLOCK_ELEMENTS``."""
    n = centre_x.shape[0]
    ends = torch.searchsorted(centre_x, centre_x + radius, right=True)
    # (NaN centres sort last and find no partner)
    counts = (ends - torch.arange(1, n + 1, device=centre_x.device)).clamp(min=0)
    cum = counts.cumsum(0)
    start = 0
    while start < n:
        # positions start..stop-1 hold at most _BLOCK_ELEMENTS pairs (at least one position)
        done = int(cum[start - 1]) if start else 0
        stop = int(torch.searchsorted(cum, done + _BLOCK_ELEMENTS, right=True))
        stop = min(n, max(stop, start + 1))
        c = counts[start:stop]
        a = torch.repeat_interleave(torch.arange(start, stop, device=centre_x.device), c)
        # b = a + 1 + (rank of the pair within a's run)
        first = torch.repeat_interleave(c.cumsum(0) - c, c)
        yield a, a + 1 + torch.arange(a.shape[0], device=a.device) - first
        start = stop


def _nwd_suppressing_pairs(boxes: Tensor, threshold: float, constant: float):
    """``(rows, cols)``: every pair ``i < j`` (boxes in score order) with
    ``NWD(B_i, B_j) > threshold``.

    NWD > t needs :math:`W_2 < C \ln(1/t)`, and :math:`W_2` is at least the centres'
    distance along x: only pairs whose centres are that close along x are evaluated
    (found by sorting the centres), so the cost follows the number of near pairs, not
    :math:`N^2`. The criterion itself is the exact ``nwd(...) > threshold``."""
    emb = gaussian_embedding(boxes)
    # a slightly wider window than C ln(1/t), so rounding cannot lose a pair
    radius = constant * math.log(1 / threshold) * (1 + 1e-6) + 1e-6
    order_x = torch.sort(emb[:, 0], stable=True).indices
    rows, cols = [], []
    for a, b in _candidate_pairs(emb[order_x, 0].contiguous(), radius):
        i, j = order_x[a], order_x[b]
        diff = emb[i] - emb[j]
        hit = _nwd_from_distance((diff * diff).sum(-1).sqrt(), constant, 1e-7) > threshold
        i, j = i[hit], j[hit]
        rows.append(torch.minimum(i, j))
        cols.append(torch.maximum(i, j))
    if not rows:
        empty = torch.empty(0, dtype=torch.int64, device=boxes.device)
        return empty, empty
    return torch.cat(rows), torch.cat(cols)


def nwd_nms(boxes: Tensor, scores: Tensor, iou_threshold: float = 0.85,
            constant: float = NWD_CONSTANT) -> Tensor:
    r"""Greedy NMS with NWD in place of the IoU: the highest-scoring remaining box
    suppresses every box whose NWD with it is strictly greater than ``iou_threshold``.

    The kept set is computed as the fixed point of ``keep[j] = not any(keep[i] for the
    suppressing pairs (i, j))``, which is exactly greedy NMS's result (Cluster-NMS's
    theorem; :mod:`.cluster_nms`, :mod:`.nms`), over the sparse list of suppressing
    pairs. Only pairs whose centres are closer than :math:`C \ln(1/t)` along x can
    suppress (0.85, C = 12.8: 2.1 px), so the cost follows the number of such pairs.

    Args:
        boxes: ``Tensor[N, 4]`` ``(x1, y1, x2, y2)``, any float dtype and device.
        scores: ``Tensor[N]``.
        iou_threshold: the NWD threshold, in [0, 1] (0.85, the paper's; the name is
            mmcv's, so ``test_cfg.nms`` keeps its key).
        constant: NWD's :math:`C` in the boxes' units (12.8).

    Returns:
        ``Tensor[K]`` int64 indices of the kept boxes by descending score (ties keep
        their input order).

    The reference repository declares a ``wasserstein_nms`` whose body is empty; this
    is a working version of what its configs ask for.
    """
    if not isinstance(boxes, Tensor) or not boxes.is_floating_point():
        raise TypeError(f'boxes must be a floating-point torch.Tensor, got '
                        f'{getattr(boxes, "dtype", type(boxes).__name__)}')
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f'boxes must have shape (N, 4) as (x1, y1, x2, y2), got '
                         f'{tuple(boxes.shape)}')
    if not isinstance(scores, Tensor) or scores.shape != boxes.shape[:1]:
        raise ValueError(f'scores must be a tensor of shape ({boxes.shape[0]},), got '
                         f'{tuple(getattr(scores, "shape", ()))}')
    if not isinstance(iou_threshold, (int, float)) or isinstance(iou_threshold, bool):
        raise TypeError(f'iou_threshold must be a number, got {type(iou_threshold).__name__}')
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f'iou_threshold (an NWD threshold) must be in [0, 1], got '
                         f'{iou_threshold}')
    check_positive('constant', constant)
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order, sorted_boxes = _sorted(boxes, scores)
    if iou_threshold == 0:   # every pair has NWD > 0: only the best box is kept
        return order[:1]
    rows, cols = _nwd_suppressing_pairs(sorted_boxes, float(iou_threshold), float(constant))
    keep = _greedy_fixed_point(sorted_boxes.shape[0], rows, cols, sorted_boxes.device)
    return order[keep]
