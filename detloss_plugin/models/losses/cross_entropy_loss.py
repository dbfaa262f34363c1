"""Cross-entropy (``CrossEntropyLoss``), sigmoid and softmax, for ``loss_cls``.

Call contract: :mod:`detloss_plugin.models.losses.cls_base`. The maths is in
:func:`detloss_plugin.functional.sigmoid_cross_entropy` and
:func:`detloss_plugin.functional.softmax_cross_entropy`.
"""
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from detloss_plugin.functional import classification as F
from detloss_plugin.registry import MODELS
from .cls_base import ClassificationLoss

__all__ = ['CrossEntropyLoss']


@MODELS.register_module()
class CrossEntropyLoss(ClassificationLoss):
    """Cross-entropy with mmdet's options.

    Args:
        use_sigmoid: one-vs-all binary cross-entropy (True) or softmax cross-entropy
            (False, default, as mmdet).
        activated: ``cls_score`` holds probabilities instead of logits.
        class_weight: per-class weights. Softmax form (K values): each sample's loss
            times the weight of its label. Sigmoid form (C values): the weight of the
            *positive* term of column c (``pos_weight`` of
            ``binary_cross_entropy_with_logits``), as mmdet does.
        ignore_index: label whose samples get weight 0 (default -100).
        avg_non_ignore: with ``reduction='mean'`` and no ``avg_factor``, average over
            the non-ignored elements only (mmdet's option; default False averages over
            all, ignored ones counting as 0).
        reduction, loss_weight: as every detloss loss.

    Same values as mmdet's ``CrossEntropyLoss`` (``use_mask=False``). Differences:
    no ``use_mask`` (instance masks are out of scope); ``avg_non_ignore`` counts the
    valid elements on the device instead of calling ``.item()``; in softmax form a
    label outside ``[0, K)`` that is not ``ignore_index`` gives 0 instead of an error
    (checking would need a host synchronisation); no warning about ``avg_non_ignore``.
    """

    def __init__(self, use_sigmoid: bool = False, activated: bool = False,
                 class_weight: Optional[Sequence[float]] = None,
                 ignore_index: Optional[int] = -100,
                 avg_non_ignore: bool = False, reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(use_sigmoid, activated, ignore_index, reduction, loss_weight)
        if class_weight is not None:
            F.check_alpha(list(class_weight), unit_interval=False)
            self.register_buffer('class_weight',
                                 torch.tensor([float(w) for w in class_weight]),
                                 persistent=False)
        else:
            self.class_weight = None
        self.avg_non_ignore = bool(avg_non_ignore)

    def _class_weight(self, num: int) -> Optional[Tensor]:
        if self.class_weight is not None and self.class_weight.numel() != num:
            raise ValueError(f'class_weight has {self.class_weight.numel()} values but '
                             f'cls_score has {num} columns')
        return self.class_weight

    def forward(self, cls_score: Tensor, label: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None,
                reduction_override: Optional[str] = None, ignore_index: Optional[int] = None,
                **kwargs) -> Tensor:
        """``ignore_index`` overrides the module's for this call (mmdet's argument)."""
        if ignore_index is None:
            ignore_index = self.ignore_index
        if self.use_sigmoid:
            logits, targets, weight = self.sigmoid_inputs(cls_score, label, weight,
                                                          ignore_index)
            loss = F.sigmoid_cross_entropy(logits, targets, self._class_weight(logits.shape[1]))
            if label.dim() == 1:
                valid = ((label >= 0) & (label != ignore_index)).unsqueeze(1).expand_as(loss)
            else:
                valid = torch.ones_like(loss, dtype=torch.bool)
        else:
            logits, label, weight = self.softmax_inputs(cls_score, label, weight)
            loss = F.softmax_cross_entropy(logits, label, self._class_weight(logits.shape[1]),
                                           ignore_index)
            valid = label != ignore_index
        reduction = reduction_override or self.reduction
        if avg_factor is None and self.avg_non_ignore and reduction == 'mean':
            avg_factor = valid.sum().to(loss.dtype)
        return self.reduce(loss, weight, avg_factor, reduction_override)

    def extra_repr(self) -> str:
        return super().extra_repr() + f', ignore_index={self.ignore_index}'
