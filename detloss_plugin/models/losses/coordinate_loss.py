"""Registered coordinate-wise regression losses (``loss_bbox`` on box deltas or boxes).

Call contract (mmdet's): ``forward(pred, target, weight=None, avg_factor=None,
reduction_override=None)``; ``pred``, ``target`` of any equal shape (``Tensor[n, 4]``
box deltas, YOLOv3's ``Tensor[B, N, 2]`` offsets); ``weight`` of that shape, one value
per row (``Tensor[n]``) or any shape that broadcasts to it (``Tensor[B, N, 1]``); see
:func:`detloss_plugin.models.losses.utils.broadcast_weight`. Returns the element-wise
loss (the shape of ``pred``) for ``reduction='none'``, else a scalar; half-precision input gives a float32 loss
(computed and reduced in float32: an error of 1e4 squared is 1e8, beyond float16).
The maths is in
:mod:`detloss_plugin.functional.coordinate_losses`.
"""
import math
from typing import Optional, Union

from torch import Tensor

from detloss_plugin.functional import coordinate_losses as F
from detloss_plugin.functional._checks import check_positive
from detloss_plugin.registry import MODELS
from .utils import BaseLoss, box_weight, float32_inputs

__all__ = ['L1Loss', 'MSELoss', 'SmoothL1Loss', 'FocalL1Loss']


class _CoordinateLoss(BaseLoss):

    def element_loss(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None,
                reduction_override: Optional[str] = None, **kwargs) -> Tensor:
        # half precision: the element-wise loss is computed and reduced in float32
        loss = self.element_loss(*float32_inputs(pred, target))
        return self.reduce(loss, box_weight(weight, pred, per_box=False), avg_factor,
                           reduction_override)


@MODELS.register_module()
class L1Loss(_CoordinateLoss):
    """``|pred - target|``; see :func:`detloss_plugin.functional.l1_loss`."""

    def element_loss(self, pred, target):
        return F.l1_loss(pred, target)


@MODELS.register_module()
class MSELoss(_CoordinateLoss):
    """L2 loss (pred - target)^2; see :func:`detloss_plugin.functional.mse_loss`."""

    def element_loss(self, pred, target):
        return F.mse_loss(pred, target)


@MODELS.register_module()
class SmoothL1Loss(_CoordinateLoss):
    """Smooth L1 with ``beta`` (default 1.0, Fast R-CNN); see
    :func:`detloss_plugin.functional.smooth_l1_loss`."""

    def __init__(self, beta: float = 1.0, reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        check_positive('beta', beta, allow_zero=True)
        self.beta = beta

    def element_loss(self, pred, target):
        return F.smooth_l1_loss(pred, target, self.beta)


@MODELS.register_module()
class FocalL1Loss(_CoordinateLoss):
    """Focal L1 loss of Zhang et al.; see :func:`detloss_plugin.functional.focal_l1_loss`."""

    def __init__(self, beta: float = math.exp(-1), alpha: Optional[float] = None,
                 reduction: str = 'mean', loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.beta = beta
        self.alpha = alpha
        F.focal_l1_loss(Tensor([0.0]), Tensor([0.0]), beta, alpha)  # validates options

    def element_loss(self, pred, target):
        return F.focal_l1_loss(pred, target, self.beta, self.alpha)
