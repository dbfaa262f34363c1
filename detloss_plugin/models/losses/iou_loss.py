"""Registered IoU-family losses (``loss_bbox`` of heads with ``reg_decoded_bbox=True``).

Call contract (mmdet's): ``forward(pred, target, weight=None, avg_factor=None,
reduction_override=None)`` with ``pred``, ``target`` ``Tensor[n, 4]`` absolute
``(x1, y1, x2, y2)`` boxes and ``weight`` ``Tensor[n]`` or ``Tensor[n, 4]`` (averaged
over the coordinates). Returns ``Tensor[n]`` for ``reduction='none'``, else a scalar;
half-precision boxes give a float32 loss (computed and reduced in float32).
The maths, defaults and papers are in :mod:`detloss_plugin.functional.iou_losses`.
"""
from typing import Optional, Union

from torch import Tensor

from detloss_plugin.functional import iou_losses as F
from detloss_plugin.functional._checks import check_choice, check_positive
from detloss_plugin.registry import MODELS
from .utils import BaseLoss, box_weight, float32_inputs

__all__ = ['IoULoss', 'GIoULoss', 'DIoULoss', 'CIoULoss', 'EfficientIoULoss',
           'FocalEIoULoss']


class _BoxLoss(BaseLoss):
    """Per-box loss on xyxy boxes; subclasses define ``box_loss(pred, target)``."""

    def __init__(self, eps: float = 1e-7, reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        check_positive('eps', eps)
        self.eps = eps

    def box_loss(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None,
                reduction_override: Optional[str] = None, **kwargs) -> Tensor:
        # half precision: the element-wise loss is computed and reduced in float32
        loss = self.box_loss(*float32_inputs(pred, target))
        return self.reduce(loss, box_weight(weight, pred, per_box=True), avg_factor,
                           reduction_override)


@MODELS.register_module()
class IoULoss(_BoxLoss):
    """IoU loss, ``mode='linear'`` (1 - IoU, default) or ``'log'`` (-ln IoU, UnitBox).

    See :func:`detloss_plugin.functional.iou_loss`. mmdet's ``IoULoss`` defaults to
    ``'log'`` with eps 1e-6; detloss defaults to ``'linear'`` with eps 1e-7.
    """

    def __init__(self, mode: str = 'linear', **kwargs) -> None:
        super().__init__(**kwargs)
        check_choice('mode', mode, F.IOU_MODES)
        self.mode = mode

    def box_loss(self, pred, target):
        return F.iou_loss(pred, target, self.mode, self.eps)


@MODELS.register_module()
class GIoULoss(_BoxLoss):
    """Generalized IoU loss; see :func:`detloss_plugin.functional.giou_loss`."""

    def box_loss(self, pred, target):
        return F.giou_loss(pred, target, self.eps)


@MODELS.register_module()
class DIoULoss(_BoxLoss):
    """Distance-IoU loss; see :func:`detloss_plugin.functional.diou_loss`."""

    def box_loss(self, pred, target):
        return F.diou_loss(pred, target, self.eps)


@MODELS.register_module()
class CIoULoss(_BoxLoss):
    """Complete-IoU loss; see :func:`detloss_plugin.functional.ciou_loss`.

    Default: the AAAI 2020 form (alpha always on, true gradient). ``alpha_gate=True``
    is the journal / mmdet form (alpha = 0 when IoU <= 0.5); ``authors_gradient=True``
    is the DIoU authors' gradient of v without the 1 / (w^2 + h^2) factor.
    """

    def __init__(self, alpha_gate: bool = False, authors_gradient: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.alpha_gate = bool(alpha_gate)
        self.authors_gradient = bool(authors_gradient)

    def box_loss(self, pred, target):
        return F.ciou_loss(pred, target, self.eps, self.alpha_gate, self.authors_gradient)


@MODELS.register_module()
class EfficientIoULoss(_BoxLoss):
    """Efficient-IoU loss of Zhang et al. (not mmdet's Extended-IoU ``EIoULoss``);
    see :func:`detloss_plugin.functional.eiou_loss`."""

    def box_loss(self, pred, target):
        return F.eiou_loss(pred, target, self.eps)


@MODELS.register_module()
class FocalEIoULoss(_BoxLoss):
    """Focal-EIoU loss IoU^gamma * L_EIoU, gamma = 0.5; see
    :func:`detloss_plugin.functional.focal_eiou_loss`."""

    def __init__(self, gamma: float = 0.5, detach_weight: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        check_positive('gamma', gamma, allow_zero=True)
        self.gamma = gamma
        self.detach_weight = bool(detach_weight)

    def box_loss(self, pred, target):
        return F.focal_eiou_loss(pred, target, self.gamma, self.eps, self.detach_weight)
