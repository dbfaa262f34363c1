"""Symmetric cross-entropy (``SymmetricCELoss``), softmax and sigmoid forms.

Call contract: :mod:`detloss_plugin.models.losses.cls_base`. The maths is in
:func:`detloss_plugin.functional.softmax_symmetric_ce` and
:func:`detloss_plugin.functional.sigmoid_symmetric_ce`.
"""
from detloss_plugin.functional import classification as F
from detloss_plugin.registry import MODELS
from .cls_base import ClassificationLoss

__all__ = ['SymmetricCELoss']


@MODELS.register_module()
class SymmetricCELoss(ClassificationLoss):
    """Symmetric cross-entropy ``alpha * CE + beta * RCE``, Wang et al., ICCV 2019,
    https://arxiv.org/abs/1908.06112 (reference: HanxunH/SCELoss-Reproduce).

    Args:
        use_sigmoid: softmax form, the paper's (False, default; RoI heads) or
            one-vs-all sigmoid form (True; dense heads, background = zero targets).
        alpha: weight of CE (0.1, the paper's CIFAR-10 value).
        beta: weight of the reverse CE (1.0).
        log_zero: the value A given to log 0 in RCE (-4, the paper's; the reference code
            effectively uses ln 1e-4 = -9.21).
        activated, ignore_index, reduction, loss_weight: see the call contract.

    With the paper's alpha = 0.1 the CE part is a tenth of mmdet's CE, so a detector
    switched from CE to SCE sees a different loss scale; the configs in
    ``configs/coco`` keep the paper's ratio and leave ``loss_weight`` at 1.
    """

    def __init__(self, use_sigmoid: bool = False, alpha: float = 0.1, beta: float = 1.0,
                 log_zero: float = F.SCE_LOG_ZERO, activated: bool = False,
                 ignore_index: int = -100, reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(use_sigmoid, activated, ignore_index, reduction, loss_weight)
        F._check_sce(alpha, beta, log_zero)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.log_zero = float(log_zero)

    def sigmoid_loss(self, logits, targets):
        return F.sigmoid_symmetric_ce(logits, targets, self.alpha, self.beta, self.log_zero)

    def softmax_loss(self, logits, labels):
        return F.softmax_symmetric_ce(logits, labels, self.alpha, self.beta, self.log_zero,
                                      self.ignore_index)

    def extra_repr(self) -> str:
        return (super().extra_repr()
                + f', alpha={self.alpha}, beta={self.beta}, log_zero={self.log_zero}')
