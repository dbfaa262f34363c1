r"""The one box-pair geometry helper shared by every IoU-family loss, and the
similarity measures built on it (aligned and pairwise).

Boxes are ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``; ``pred`` and
``target`` are paired element-wise (``Tensor[..., 4]`` each). ``eps`` is added to
denominators only (the union and the enclosing box's diagonal / sides), so the value
of every term is exact for well-formed boxes and finite for degenerate ones.

Similarities (:func:`aligned_similarity` for paired boxes, :func:`pairwise_similarity`
for the ``N x M`` matrix that assigners, matchers and NMS need), one per
``mode`` in :data:`SIMILARITY_MODES`:

- ``'iou'``: :math:`IoU = |B_1 \cap B_2| / |B_1 \cup B_2|`, in [0, 1];
- ``'iof'``: :math:`|B_1 \cap B_2| / |B_1|` (intersection over the first box, as
  mmdet's ``bbox_overlaps``), in [0, 1];
- ``'giou'``, ``'diou'``, ``'ciou'``, ``'siou'``, ``'eiou'`` (Efficient-IoU): one minus
  the loss of the same name in :mod:`.iou_losses` / :mod:`.iou_variants`, i.e. the IoU
  minus that loss's penalty, so every formula, ``eps`` placement and default is the
  loss's (CIoU's :math:`\alpha` has no gradient; ``alpha_gate`` and SIoU's ``theta``
  are passed through). Ranges: GIoU and DIoU in (-1, 1], CIoU in (-1.5, 1], SIoU in
  (-1.16, 1], EIoU in (-3, 1];
- ``'nwd'``: the normalized Gaussian Wasserstein distance :func:`nwd`, in (0, 1].

The pairwise form evaluates the aligned one on the broadcast pair grid (no second copy
of any formula); it is checked against a Python loop over pairs and against the aligned
form on the diagonal (tests/unit/test_box_geometry_pairwise.py). For the non-IoU modes the
value is computed as ``1 - loss``: in float32 this rounds to about 6e-8 absolute.
"""
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from ._checks import check_boxes, check_choice, check_positive, upcast

__all__ = ['BoxPairGeometry', 'box_pair_geometry', 'center_offsets', 'gaussian_embedding',
           'wasserstein_sq',
           'pairwise_wasserstein', 'nwd', 'aligned_similarity', 'pairwise_similarity', 'similarity_range',
           'SIMILARITY_MODES', 'NWD_CONSTANT']

#: The modes of :func:`pairwise_similarity` and :func:`aligned_similarity`.
SIMILARITY_MODES = ('iou', 'iof', 'giou', 'diou', 'ciou', 'siou', 'eiou', 'nwd')
NWD_CONSTANT = 12.8   # AI-TOD's mean absolute object size (Wang et al. 2021)

# lower end of each mode's range (the upper end is 1): (x - low) / (1 - low) maps a
# similarity into [0, 1] keeping its order
_LOWER_BOUND = {'iou': 0.0, 'iof': 0.0, 'nwd': 0.0, 'giou': -1.0, 'diou': -1.0,
                'ciou': -1.5, 'siou': -1.16, 'eiou': -3.0}


class BoxPairGeometry(NamedTuple):
    """Element-wise geometry of paired boxes; every field has shape ``(...)``.

    Fields that were not asked for are ``None``.
    """
    inter: Tensor                    # intersection area
    union: Tensor                    # union area (without eps)
    iou: Tensor                      # inter / (union + eps)
    pred_w: Tensor
    pred_h: Tensor
    target_w: Tensor
    target_h: Tensor
    enclose_w: Optional[Tensor]      # width of the smallest enclosing box
    enclose_h: Optional[Tensor]
    center_dist_sq: Optional[Tensor]  # rho^2: squared distance of the two centres


def box_pair_geometry(pred: Tensor, target: Tensor, eps: float = 1e-7,
                      enclosing: bool = False, centers: bool = False) -> BoxPairGeometry:
    """Intersection-over-union and, on request, the enclosing box and centre distance.

    Args:
        pred, target: ``Tensor[..., 4]`` boxes ``(x1, y1, x2, y2)``, same shape.
        eps: added to the union.
        enclosing: also return the width and height of the smallest enclosing box.
        centers: also return the squared distance between the box centres.
    """
    px1, py1, px2, py2 = pred.unbind(-1)
    tx1, ty1, tx2, ty2 = target.unbind(-1)
    pw, ph = px2 - px1, py2 - py1
    tw, th = tx2 - tx1, ty2 - ty1

    inter_w = (torch.minimum(px2, tx2) - torch.maximum(px1, tx1)).clamp(min=0)
    inter_h = (torch.minimum(py2, ty2) - torch.maximum(py1, ty1)).clamp(min=0)
    inter = inter_w * inter_h
    union = pw * ph + tw * th - inter
    iou = inter / (union + eps)

    enclose_w = enclose_h = center_dist_sq = None
    if enclosing:
        enclose_w = torch.maximum(px2, tx2) - torch.minimum(px1, tx1)
        enclose_h = torch.maximum(py2, ty2) - torch.minimum(py1, ty1)
    if centers:
        # 2 * (centre difference), squared and divided by 4 once.
        dx = (px1 + px2) - (tx1 + tx2)
        dy = (py1 + py2) - (ty1 + ty2)
        center_dist_sq = (dx * dx + dy * dy) * 0.25
    return BoxPairGeometry(inter, union, iou, pw, ph, tw, th, enclose_w, enclose_h, center_dist_sq)


def center_offsets(pred: Tensor, target: Tensor):
    """``(dx, dy)``, each ``Tensor[...]``: the target's centre minus the prediction's.

    For losses that need the signed offsets along each axis, not only
    ``center_dist_sq = dx^2 + dy^2`` (SIoU's angle and distance costs).
    """
    px1, py1, px2, py2 = pred.unbind(-1)
    tx1, ty1, tx2, ty2 = target.unbind(-1)
    return ((tx1 + tx2) - (px1 + px2)) * 0.5, ((ty1 + ty2) - (py1 + py2)) * 0.5


def gaussian_embedding(boxes: Tensor) -> Tensor:
    r"""``(c_x, c_y, w / 2, h / 2)``, ``Tensor[..., 4]``: the box as the 2-D Gaussian
    :math:`\mathcal N((c_x, c_y), \mathrm{diag}(w^2/4, h^2/4))`, in coordinates where
    the squared 2-Wasserstein distance of two boxes is the squared Euclidean distance
    of their embeddings (:func:`wasserstein_sq`)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) * 0.5, (y1 + y2) * 0.5, (x2 - x1) * 0.5,
                        (y2 - y1) * 0.5], dim=-1)


def wasserstein_sq(pred: Tensor, target: Tensor) -> Tensor:
    r"""Squared 2-Wasserstein distance between the boxes as 2-D Gaussians
    (:func:`gaussian_embedding`):

    .. math::
        W_2^2 = \lVert c_1 - c_2 \rVert^2 + \frac{(w_1 - w_2)^2 + (h_1 - h_2)^2}{4}

    ``pred`` and ``target``: ``Tensor[..., 4]`` of broadcastable shapes; returns the
    broadcast shape without the last dimension.
    """
    diff = gaussian_embedding(pred) - gaussian_embedding(target)
    return (diff * diff).sum(-1)


def pairwise_wasserstein(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    r"""``Tensor[..., N, M]``: the 2-Wasserstein distance :math:`W_2` (not squared) of
    every pair of ``boxes1`` ``Tensor[..., N, 4]`` and ``boxes2`` ``Tensor[..., M, 4]``,
    as the Euclidean distance of their :func:`gaussian_embedding` (``torch.cdist``
    without the matrix-product shortcut, whose cancellation would cost a fraction of a
    pixel at image coordinates). Same dtype rules as :func:`nwd`."""
    return torch.cdist(gaussian_embedding(boxes1), gaussian_embedding(boxes2),
                       compute_mode='donot_use_mm_for_euclid_dist')


def _nwd_from_distance(dist: Tensor, constant: float, eps: float) -> Tensor:
    """``exp(-max(W, sqrt(eps)) / C)``: :func:`nwd` from a distance instead of its
    square (the same clamp)."""
    return torch.exp(-dist.clamp(min=eps ** 0.5) / constant)


def nwd(pred: Tensor, target: Tensor, constant: float = NWD_CONSTANT,
        eps: float = 1e-7) -> Tensor:
    r"""Normalized Gaussian Wasserstein distance
    :math:`NWD = \exp(-\sqrt{W_2^2} / C)` (:func:`wasserstein_sq`), in (0, 1].

    Wang et al., "A Normalized Gaussian Wasserstein Distance for Tiny Object Detection",
    2021, https://arxiv.org/abs/2110.13389; Xu et al., ISPRS J. 2022,
    https://arxiv.org/abs/2206.13996 (reference code jwwangchn/NWD).

    Args:
        pred, target: ``Tensor[..., 4]`` boxes of broadcastable shapes.
        constant: :math:`C`, in the boxes' units: the dataset's mean absolute object
            size (12.8 px on AI-TOD, the paper's; the ISPRS code uses 12.7).
        eps: :math:`W_2^2` is clamped at ``eps`` before the square root, so the
            gradient is finite (zero) for identical boxes; the value then differs by at
            most :math:`\sqrt{\epsilon}/C`.

    Returns:
        ``Tensor[...]`` of the broadcast shape. Half precision is computed in float32.

    Departure: the reference adds ``eps`` to the squared centre distance and to every
    width and height (the latter cancel in the differences) instead of the clamp.
    """
    check_positive('constant', constant)
    pred, target, dtype = upcast(pred, target)
    w2 = wasserstein_sq(pred, target)
    return _nwd_from_distance(w2.clamp(min=eps).sqrt(), constant, eps).to(dtype)


def similarity_range(mode: str):
    """``(low, 1)``: the range of ``aligned_similarity(..., mode)``'s values."""
    check_choice('mode', mode, SIMILARITY_MODES)
    return _LOWER_BOUND[mode], 1.0


def aligned_similarity(boxes1: Tensor, boxes2: Tensor, mode: str = 'iou',
                       eps: float = 1e-7, normalize: bool = False,
                       constant: float = NWD_CONSTANT, theta: float = 4.0,
                       alpha_gate: bool = False) -> Tensor:
    r"""Similarity of paired boxes, ``mode`` one of :data:`SIMILARITY_MODES` (module
    docstring).

    Args:
        boxes1, boxes2: ``Tensor[..., 4]`` of the same shape.
        mode: ``'iou'``, ``'iof'``, ``'giou'``, ``'diou'``, ``'ciou'``, ``'siou'``,
            ``'eiou'`` (Efficient-IoU) or ``'nwd'``.
        eps: as the losses' (``1e-7``).
        normalize: map the value linearly from its range ``(low, 1]``
            (:func:`similarity_range`) onto [0, 1]: :math:`(x - low) / (1 - low)`;
            for GIoU and DIoU that is :math:`(1 + x) / 2`. Order-preserving; no-op for
            IoU, IoF and NWD.
        constant: NWD's :math:`C` (12.8).
        theta: SIoU's shape-cost exponent (4).
        alpha_gate: CIoU's journal gate (alpha = 0 when IoU <= 0.5).

    Returns:
        ``Tensor[...]`` (the shape of ``boxes1`` without the last dimension), in the
        dtype of ``boxes1`` (half precision is computed in float32).
    """
    check_boxes(boxes1, boxes2)
    return _similarity(boxes1, boxes2, mode, eps, normalize, constant, theta, alpha_gate)


def _similarity(boxes1: Tensor, boxes2: Tensor, mode: str, eps: float, normalize: bool,
                constant: float, theta: float, alpha_gate: bool) -> Tensor:
    """:func:`aligned_similarity` without the shape check: ``'iou'``, ``'iof'`` and
    ``'nwd'`` accept broadcastable shapes; the loss-based modes need equal ones."""
    from . import iou_losses as L, iou_variants as V  # they import this module
    check_choice('mode', mode, SIMILARITY_MODES)
    boxes1, boxes2, dtype = upcast(boxes1, boxes2)
    if mode == 'iou':
        value = box_pair_geometry(boxes1, boxes2, eps).iou
    elif mode == 'iof':
        g = box_pair_geometry(boxes1, boxes2, eps)
        value = g.inter / (g.pred_w * g.pred_h + eps)
    elif mode == 'nwd':
        value = nwd(boxes1, boxes2, constant, eps)
    else:
        loss = {
            'giou': lambda: L.giou_loss(boxes1, boxes2, eps),
            'diou': lambda: L.diou_loss(boxes1, boxes2, eps),
            'ciou': lambda: L.ciou_loss(boxes1, boxes2, eps, alpha_gate=alpha_gate),
            'siou': lambda: V.siou_loss(boxes1, boxes2, theta, eps),
            'eiou': lambda: L.eiou_loss(boxes1, boxes2, eps),
        }[mode]()
        value = 1 - loss
    if normalize and _LOWER_BOUND[mode] != 0:
        low = _LOWER_BOUND[mode]
        value = (value - low) / (1 - low)
    return value.to(dtype)


def pairwise_similarity(boxes1: Tensor, boxes2: Tensor, mode: str = 'iou',
                        eps: float = 1e-7, **options) -> Tensor:
    r"""The ``N x M`` similarity matrix: ``out[..., i, j] = aligned_similarity(
    boxes1[..., i, :], boxes2[..., j, :], mode, eps, **options)``.

    Args:
        boxes1: ``Tensor[..., N, 4]``; boxes2: ``Tensor[..., M, 4]`` (same leading
            batch dimensions, if any).
        mode, eps, options: as :func:`aligned_similarity` (``normalize``, ``constant``,
            ``theta``, ``alpha_gate``).

    Returns:
        ``Tensor[..., N, M]`` in the dtype of ``boxes1``; differentiable with respect to
        both inputs. Memory: a few ``N x M`` float32 temporaries (about 15 for CIoU).
    """
    for name, boxes in (('boxes1', boxes1), ('boxes2', boxes2)):
        if not isinstance(boxes, Tensor):
            raise TypeError(f'{name} must be a torch.Tensor, got {type(boxes).__name__}')
        if boxes.dim() < 2 or boxes.shape[-1] != 4:
            raise ValueError(f'{name} must have shape (..., N, 4) as (x1, y1, x2, y2), got '
                             f'{tuple(boxes.shape)}')
    if boxes1.shape[:-2] != boxes2.shape[:-2]:
        raise ValueError(f'boxes1 and boxes2 must have the same batch dimensions, got '
                         f'{tuple(boxes1.shape)} and {tuple(boxes2.shape)}')
    check_choice('mode', mode, SIMILARITY_MODES)
    rows, cols = boxes1.unsqueeze(-2), boxes2.unsqueeze(-3)
    if mode not in ('iou', 'iof', 'nwd'):   # the losses take boxes of equal shapes
        grid = boxes1.shape[:-1] + boxes2.shape[-2:-1] + (4,)
        rows, cols = rows.expand(grid), cols.expand(grid)
    options = dict(dict(normalize=False, constant=NWD_CONSTANT, theta=4.0,
                        alpha_gate=False), **options)
    unknown = set(options) - {'normalize', 'constant', 'theta', 'alpha_gate'}
    if unknown:
        raise TypeError(f'pairwise_similarity got unknown options {sorted(unknown)}; '
                        f'allowed: normalize, constant, theta, alpha_gate')
    if mode == 'nwd':   # one cdist instead of N x M x 4 differences
        check_positive('constant', options['constant'])
        b1, b2, dtype = upcast(boxes1, boxes2)
        return _nwd_from_distance(pairwise_wasserstein(b1, b2), options['constant'],
                                  eps).to(dtype)
    return _similarity(rows, cols, mode, eps, **options)
