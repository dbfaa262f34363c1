"""Registered NWD loss (``loss_bbox`` of heads with ``reg_decoded_bbox=True``).

Call contract as the IoU-family modules (:mod:`.iou_loss`): ``forward(pred, target,
weight=None, avg_factor=None, reduction_override=None)`` with absolute ``(x1, y1, x2,
y2)`` boxes ``Tensor[n, 4]``. The maths, modes and defaults are in
:func:`detloss_plugin.functional.nwd_loss`.
"""
from detloss_plugin.functional import wasserstein as W
from detloss_plugin.functional._checks import check_choice, check_positive
from detloss_plugin.registry import MODELS
from .iou_loss import _BoxLoss

__all__ = ['NWDLoss']


@MODELS.register_module()
class NWDLoss(_BoxLoss):
    """Normalized Gaussian Wasserstein distance loss (Wang et al. 2021).

    Args:
        mode: ``'exp'`` (1 - NWD, the paper's; default), ``'sqrt'``, ``'log'``,
            ``'norm_sqrt'`` or ``'w2'`` (the reference code's alternatives).
        constant: NWD's normalising constant C in pixels (12.8: AI-TOD's mean object
            size). Set it to the mean absolute size (sqrt(w h)) of your objects.
        gamma: ``'norm_sqrt'``'s offset (1.0).
        eps, reduction, loss_weight: as every detloss box loss. The reference trains
            the RPN with ``loss_weight=10.0``.
    """

    def __init__(self, mode: str = 'exp', constant: float = W.NWD_CONSTANT,
                 gamma: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        check_choice('mode', mode, W.NWD_LOSS_MODES)
        check_positive('constant', constant)
        check_positive('gamma', gamma)
        self.mode = mode
        self.constant = float(constant)
        self.gamma = float(gamma)

    def box_loss(self, pred, target):
        return W.nwd_loss(pred, target, self.mode, self.constant, self.gamma, self.eps)
