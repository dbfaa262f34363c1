"""The one box-pair geometry helper shared by every IoU-family loss.

Boxes are ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``; ``pred`` and
``target`` are paired element-wise (``Tensor[..., 4]`` each). ``eps`` is added to
denominators only (the union and the enclosing box's diagonal / sides), so the value
of every term is exact for well-formed boxes and finite for degenerate ones.
"""
from typing import NamedTuple, Optional

import torch
from torch import Tensor

__all__ = ['BoxPairGeometry', 'box_pair_geometry', 'center_offsets']


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
