"""Focal loss (``FocalLoss``), sigmoid (RetinaNet) and softmax (multi-class).

Call contract: :mod:`detloss_plugin.models.losses.cls_base`. The maths is in
:func:`detloss_plugin.functional.sigmoid_focal_loss` and
:func:`detloss_plugin.functional.softmax_focal_loss`.
"""
from typing import Sequence, Union

import torch
from torch import Tensor

from detloss_plugin.functional import classification as F
from detloss_plugin.registry import MODELS
from .cls_base import ClassificationLoss

__all__ = ['FocalLoss']


@MODELS.register_module()
class FocalLoss(ClassificationLoss):
    """Focal loss, Lin et al., ICCV 2017, https://arxiv.org/abs/1708.02002.

    Args:
        use_sigmoid: RetinaNet's one-vs-all form (True, default) or the multi-class
            softmax form (False).
        gamma: focusing parameter (2.0).
        alpha: ``'auto'`` (default): 0.25 in sigmoid form (RetinaNet), no weighting in
            softmax form (hedgefair/Focal-Loss-Pytorch's default ``alpha=0.25`` means
            the per-class weights 0.25 for its background class 0 and 0.75 for the
            others: with mmdet's background last, pass ``[0.75] * C + [0.25]``). A
            number: in sigmoid form the weight of positives (``1 - alpha`` for
            negatives), -1 or None for none; in softmax form one weight for every
            class. A sequence: per-class values (sigmoid: ``alpha_c`` for the
            positives of column c; softmax: the weight of each sample's label, one
            value per column, background included).
        activated: ``cls_score`` holds probabilities.
        ignore_index, reduction, loss_weight: see the call contract.

    Every call of mmdet's heads is accepted (:mod:`detloss_plugin.models.losses.cls_base`:
    integer labels or targets of the score's shape, weights of the loss's shape, per row,
    broadcastable or flattened as FSAF passes them) and gives the value of mmdet's
    sigmoid form. Differences from mmdet's ``FocalLoss``: one code path on CPU and GPU
    (mmdet calls an mmcv CUDA kernel on GPU and a Python formula on CPU); a softmax form
    and per-class alpha; ignored labels get weight 0 (mmdet's CPU path fails on negative
    labels).
    """

    def __init__(self, use_sigmoid: bool = True, gamma: float = 2.0,
                 alpha: Union[str, float, Sequence[float], None] = 'auto',
                 reduction: str = 'mean', loss_weight: float = 1.0, activated: bool = False,
                 ignore_index: int = -100) -> None:
        super().__init__(use_sigmoid, activated, ignore_index, reduction, loss_weight)
        if alpha == 'auto':
            alpha = 0.25 if self.use_sigmoid else None
        F.check_alpha(alpha if isinstance(alpha, (int, float, type(None))) else list(alpha),
                      unit_interval=self.use_sigmoid)
        F._check_gamma(gamma)
        self.gamma = float(gamma)
        if alpha is None or isinstance(alpha, (int, float)):
            self.alpha = alpha
        else:
            self.register_buffer('alpha', torch.tensor([float(a) for a in alpha]),
                                 persistent=False)

    def _alpha(self, num: int):
        if isinstance(self.alpha, Tensor) and self.alpha.numel() != num:
            raise ValueError(f'alpha has {self.alpha.numel()} values but cls_score has {num} '
                             f'columns')
        return self.alpha

    def sigmoid_loss(self, logits, targets):
        return F.sigmoid_focal_loss(logits, targets, self._alpha(logits.shape[1]), self.gamma)

    def softmax_loss(self, logits, labels):
        return F.softmax_focal_loss(logits, labels, self._alpha(logits.shape[1]), self.gamma,
                                    self.ignore_index)

    def extra_repr(self) -> str:
        alpha = self.alpha.tolist() if isinstance(self.alpha, Tensor) else self.alpha
        return super().extra_repr() + f', gamma={self.gamma}, alpha={alpha}'
