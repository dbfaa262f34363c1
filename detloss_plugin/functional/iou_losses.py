r"""IoU-family box-regression losses, element-wise.

Every function takes ``pred`` and ``target`` as ``Tensor[..., 4]`` boxes
``(x1, y1, x2, y2)`` with ``x1 <= x2``, ``y1 <= y2`` (heads with
``reg_decoded_bbox=True`` give absolute xyxy boxes), and returns the loss per box,
``Tensor[...]``, with no reduction. Half-precision inputs are computed in float32 and
the result is cast back. ``eps`` (default 1e-7) enters denominators and logs only.

One implementation each, plain torch over :func:`.box_geometry.box_pair_geometry`, on
every device: autograd gives the gradient (double backward, forward-mode AD and
``torch.func`` included) and ``torch.compile`` fuses the element-wise operators.

Notation: :math:`B, B^{gt}` the predicted and target boxes, :math:`C` the smallest box
enclosing both, :math:`\rho` the distance between their centres, :math:`c` the
diagonal of :math:`C`, :math:`w, h` widths and heights.
"""
import math

import torch
from torch import Tensor

from ._checks import check_boxes, check_choice, check_positive, upcast
from .box_geometry import box_pair_geometry

__all__ = ['iou_loss', 'giou_loss', 'diou_loss', 'ciou_loss', 'eiou_loss',
           'focal_eiou_loss']

IOU_MODES = ('linear', 'log')


def iou_loss(pred: Tensor, target: Tensor, mode: str = 'linear', eps: float = 1e-7) -> Tensor:
    r"""IoU loss: :math:`1 - IoU` (``mode='linear'``) or :math:`-\ln IoU`
    (``mode='log'``, UnitBox).

    Yu et al., "UnitBox: An Advanced Object Detection Network", ACM MM 2016,
    https://arxiv.org/abs/1608.01471 (the paper uses the ``log`` form).

    In ``log`` mode the IoU is clamped at ``eps`` before the log, as mmdet does: the
    value for disjoint boxes is :math:`-\ln\epsilon` (16.1 for 1e-7) and the gradient is
    zero there (the paper leaves IoU = 0 undefined).
    """
    check_boxes(pred, target)
    check_choice('mode', mode, IOU_MODES)
    pred, target, dtype = upcast(pred, target)
    iou = box_pair_geometry(pred, target, eps).iou
    if mode == 'linear':
        loss = 1 - iou
    else:
        loss = -iou.clamp(min=eps).log()
    return loss.to(dtype)


def giou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    r"""Generalized IoU loss :math:`1 - IoU + \frac{|C| - |B \cup B^{gt}|}{|C|}`.

    Rezatofighi et al., "Generalized Intersection over Union", CVPR 2019,
    https://arxiv.org/abs/1902.09630. ``eps`` is added to :math:`|C|`.
    """
    check_boxes(pred, target)
    pred, target, dtype = upcast(pred, target)
    g = box_pair_geometry(pred, target, eps, enclosing=True)
    enclose = g.enclose_w * g.enclose_h
    loss = 1 - g.iou + (enclose - g.union) / (enclose + eps)
    return loss.to(dtype)


def diou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    r"""Distance-IoU loss :math:`1 - IoU + \rho^2(b, b^{gt}) / c^2`.

    Zheng et al., "Distance-IoU Loss: Faster and Better Learning for Bounding Box
    Regression", AAAI 2020, https://arxiv.org/abs/1911.08287. ``eps`` is added to
    :math:`c^2`.
    """
    check_boxes(pred, target)
    pred, target, dtype = upcast(pred, target)
    g = box_pair_geometry(pred, target, eps, enclosing=True, centers=True)
    diag_sq = g.enclose_w.square() + g.enclose_h.square() + eps
    return (1 - g.iou + g.center_dist_sq / diag_sq).to(dtype)


def _aspect_term(g, authors_gradient: bool, eps: float) -> Tensor:
    r""":math:`v = \frac{4}{\pi^2}(\arctan\frac{w^{gt}}{h^{gt}} - \arctan\frac{w}{h})^2`
    with ``eps`` added to both heights."""
    atan_target = torch.atan(g.target_w / (g.target_h + eps))
    pred_h = g.pred_h + eps
    atan_pred = torch.atan(g.pred_w / pred_h)
    if authors_gradient:
        # d atan(w/h)/dw = h / (w^2 + h^2) and d/dh = -w / (w^2 + h^2). The DIoU
        # authors (darknet, MATLAB simulation) drop the 1 / (w^2 + h^2) factor. The
        # added term is exactly zero in value and has gradient (h, -w).
        w = g.pred_w
        atan_pred = atan_pred.detach() + (w * pred_h.detach() - pred_h * w.detach())
    return (4 / math.pi ** 2) * (atan_target - atan_pred).square()


def ciou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7, alpha_gate: bool = False,
              authors_gradient: bool = False) -> Tensor:
    r"""Complete-IoU loss :math:`1 - IoU + \rho^2/c^2 + \alpha v`, with
    :math:`v = \frac{4}{\pi^2}(\arctan\frac{w^{gt}}{h^{gt}} - \arctan\frac{w}{h})^2`
    and :math:`\alpha = \frac{v}{(1 - IoU) + v}`.

    Zheng et al., AAAI 2020, https://arxiv.org/abs/1911.08287 (default form), and
    Zheng et al., "Enhancing Geometric Factors in Model Learning and Inference for
    Object Detection and Instance Segmentation", IEEE TCYB 2021,
    https://arxiv.org/abs/2005.03572.

    :math:`\alpha` is a trade-off weight without gradient, as in the paper.

    Args:
        alpha_gate: the journal version's gate (also mmdet's): :math:`\alpha = 0` when
            IoU <= 0.5, so the aspect-ratio term only acts on overlapping boxes.
        authors_gradient: the DIoU authors' gradient of :math:`v`, which drops the
            :math:`1/(w^2 + h^2)` factor of :math:`\partial v/\partial w` and
            :math:`\partial v/\partial h` (their darknet and MATLAB code, argued in the
            paper to avoid exploding gradients for small boxes in [0, 1] units). The
            value is unchanged; only the gradient of :math:`v` differs.

    Departures: ``eps`` is added to both heights inside the arctans and to
    :math:`(1 - IoU) + v`; the paper has neither.
    """
    check_boxes(pred, target)
    pred, target, dtype = upcast(pred, target)
    g = box_pair_geometry(pred, target, eps, enclosing=True, centers=True)
    diag_sq = g.enclose_w.square() + g.enclose_h.square() + eps
    v = _aspect_term(g, authors_gradient, eps)
    # alpha is a weight, not differentiated (paper, Sec. 4.2); detached rather than
    # computed under no_grad, which would not stop forward-mode AD
    v_, iou_ = v.detach(), g.iou.detach()
    alpha = v_ / (1 - iou_ + v_ + eps)
    if alpha_gate:
        alpha = alpha * (iou_ > 0.5)
    return (1 - g.iou + g.center_dist_sq / diag_sq + alpha * v).to(dtype)


def _eiou(pred: Tensor, target: Tensor, eps: float):
    g = box_pair_geometry(pred, target, eps, enclosing=True, centers=True)
    cw_sq = g.enclose_w.square()
    ch_sq = g.enclose_h.square()
    loss = (1 - g.iou
            + g.center_dist_sq / (cw_sq + ch_sq + eps)
            + (g.pred_w - g.target_w).square() / (cw_sq + eps)
            + (g.pred_h - g.target_h).square() / (ch_sq + eps))
    return loss, g.iou


def eiou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    r"""Efficient-IoU loss

    .. math::
        L_{EIoU} = 1 - IoU + \frac{\rho^2(b, b^{gt})}{c^2}
                   + \frac{(w - w^{gt})^2}{C_w^2} + \frac{(h - h^{gt})^2}{C_h^2}

    with :math:`C_w, C_h` the width and height of the enclosing box.

    Zhang et al., "Focal and Efficient IOU Loss for Accurate Bounding Box Regression",
    Neurocomputing 2022, https://arxiv.org/abs/2101.08158. Not mmdet's ``EIoULoss``,
    which is the Extended-IoU loss of another paper. ``eps`` is added to
    :math:`c^2, C_w^2, C_h^2`.
    """
    check_boxes(pred, target)
    pred, target, dtype = upcast(pred, target)
    return _eiou(pred, target, eps)[0].to(dtype)


def focal_eiou_loss(pred: Tensor, target: Tensor, gamma: float = 0.5, eps: float = 1e-7,
                    detach_weight: bool = False) -> Tensor:
    r"""Focal-EIoU loss :math:`L = IoU^\gamma \cdot L_{EIoU}`, ``gamma`` = 0.5.

    Zhang et al., https://arxiv.org/abs/2101.08158, Eq. (13).

    The IoU is clamped at ``eps`` before the power, so the weight's gradient
    (:math:`\gamma IoU^{\gamma - 1}`, infinite at IoU = 0) stays finite; disjoint boxes
    get weight :math:`\epsilon^\gamma`, i.e. (almost) no loss, as in the paper.

    Args:
        gamma: focusing parameter (> 0 down-weights low-IoU boxes).
        detach_weight: stop the gradient through :math:`IoU^\gamma`. The paper's formula
            differentiates through it (default); much community code detaches it.
            Measured: with the weight differentiated, :math:`L` is minimised by driving
            the IoU to 0 (zero weight); the quick-start RetinaNet trained that way
            collapsed to mAP 0.000, and reached 0.489 with ``detach_weight=True``, which
            detloss's configs therefore set (README, "Which box loss?").
    """
    check_boxes(pred, target)
    check_positive('gamma', gamma, allow_zero=True)
    pred, target, dtype = upcast(pred, target)
    loss, iou = _eiou(pred, target, eps)
    weight = iou.clamp(min=eps).pow(gamma)
    if detach_weight:
        weight = weight.detach()
    return (weight * loss).to(dtype)
