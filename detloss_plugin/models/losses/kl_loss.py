"""Registered KL loss (``loss_bbox`` of :class:`~detloss_plugin.KLBBoxHead`).

Call contract: mmdet's, with the log-variance as second argument:
``forward(pred, pred_log_var, target, weight=None, avg_factor=None,
reduction_override=None)``; ``pred``, ``pred_log_var``, ``target`` ``Tensor[n, 4]``;
``weight`` ``Tensor[n]`` or ``Tensor[n, 4]``. Returns ``Tensor[n, 4]`` for
``reduction='none'``, else a scalar. The maths is in
:func:`detloss_plugin.functional.kl_loss`.
"""
from typing import Optional, Union

from torch import Tensor

from detloss_plugin.functional import kl_loss
from detloss_plugin.functional._checks import check_positive
from detloss_plugin.registry import MODELS
from .utils import BaseLoss, box_weight

__all__ = ['KLLoss']


@MODELS.register_module()
class KLLoss(BaseLoss):
    r"""KL loss :math:`e^{-\alpha}\,\mathrm{SmoothL1}_\beta(t - p) + \alpha/2` of He et
    al. (CVPR 2019), with :math:`\alpha = \log\sigma^2` predicted per coordinate.

    Args:
        beta: Smooth L1 threshold, a finite number >= 0; 1.0 (the paper).
        loss_weight: 1.0 (the reference does not weight it).
        reduction: ``'mean'``; with ``avg_factor`` = the number of sampled RoIs (what
            mmdet's RoI heads pass) the result is the sum over positive RoIs and their
            four coordinates divided by the number of RoIs: the reference's
            normalisation (mean over RoIs, sum over coordinates).
    """

    def __init__(self, beta: float = 1.0, loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__(reduction=reduction, loss_weight=loss_weight)
        check_positive('beta', beta, allow_zero=True)
        self.beta = beta

    def forward(self, pred: Tensor, pred_log_var: Tensor, target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None,
                reduction_override: Optional[str] = None, **kwargs) -> Tensor:
        loss = kl_loss(pred, pred_log_var, target, self.beta)
        if weight is not None and pred.dim() >= 1:
            weight = box_weight(weight, pred, per_box=False)
        return self.reduce(loss, weight, avg_factor, reduction_override)

    def extra_repr(self) -> str:
        return f'beta={self.beta}, ' + super().extra_repr()
