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


def _class_weight_values(class_weight) -> Tensor:
    """A config's ``class_weight`` (a number, a sequence, or the tensor that mmdet's
    ``DETRHead`` writes into its ``loss_cls`` config) as a float32 tensor, checked once
    at construction: finite values >= 0."""
    if isinstance(class_weight, bool):
        raise TypeError('class_weight must be a number, a sequence of numbers or None, got bool')
    if isinstance(class_weight, Tensor):
        values = class_weight.detach().reshape(-1).tolist()
    elif isinstance(class_weight, (int, float)):
        values = [class_weight]
    else:
        try:
            values = [float(w) for w in class_weight]
        except TypeError:
            raise TypeError(f'class_weight must be a number, a sequence of numbers or None, '
                            f'got {type(class_weight).__name__}') from None
    if not values or any(not 0 <= v < float('inf') for v in values):
        raise ValueError(f'class_weight must hold finite values >= 0, got {values}')
    return torch.tensor([float(v) for v in values])


@MODELS.register_module()
class CrossEntropyLoss(ClassificationLoss):
    """Cross-entropy with mmdet's options and defaults.

    Args:
        use_sigmoid: one-vs-all binary cross-entropy (True) or softmax cross-entropy
            (False, default, as mmdet).
        use_mask: mmdet's instance-mask cross-entropy (``FCNMaskHead``'s ``loss_mask``):
            not provided, True raises (keep mmdet's class for mask losses).
        reduction, loss_weight: as every detloss loss.
        class_weight: per-class weights (a sequence, a tensor as ``DETRHead`` writes it,
            or one number for all). Softmax form (K values): each sample's loss times
            the weight of its label. Sigmoid form (C values): the weight of the
            *positive* term of column c (``pos_weight`` of
            ``binary_cross_entropy_with_logits``), as mmdet does.
        ignore_index: label whose samples get weight 0 (None, mmdet's default, means
            -100).
        avg_non_ignore: with ``reduction='mean'`` and no ``avg_factor``, average over
            the non-ignored elements only (default False averages over all, ignored
            ones counting as 0).
        activated: ``cls_score`` holds probabilities instead of logits (detloss's
            option; mmdet's class has none).

    Same values as mmdet's ``CrossEntropyLoss`` (``use_mask=False``), in every call
    form of :mod:`detloss_plugin.models.losses.cls_base`. Differences: ``avg_non_ignore``
    counts the valid elements on the device instead of calling ``.item()``; in softmax
    form a label outside ``[0, K)`` that is not ``ignore_index`` gives 0 instead of an
    error (checking would need a host synchronisation); no warning about
    ``avg_non_ignore``.
    """

    def __init__(self, use_sigmoid: bool = False, use_mask: bool = False,
                 reduction: str = 'mean', class_weight: Optional[Sequence[float]] = None,
                 ignore_index: Optional[int] = None, loss_weight: float = 1.0,
                 avg_non_ignore: bool = False, activated: bool = False) -> None:
        if use_mask:
            raise ValueError(
                'use_mask=True (the cross-entropy of instance masks, which indexes the '
                'mask of each RoI\'s class) is not provided by detloss: keep '
                "type='CrossEntropyLoss' (mmdet's class) for loss_mask")
        super().__init__(use_sigmoid, activated, ignore_index, reduction, loss_weight)
        self.use_mask = False
        if class_weight is not None:
            self.register_buffer('class_weight', _class_weight_values(class_weight),
                                 persistent=False)
        else:
            self.class_weight = None
        self.avg_non_ignore = bool(avg_non_ignore)

    def _class_weight(self, num: int) -> Optional[Tensor]:
        if self.class_weight is None:
            return None
        if self.class_weight.numel() == 1:  # one number for every class (mmdet broadcasts)
            return self.class_weight.expand(num)
        if self.class_weight.numel() != num:
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
            logits, targets, weight, shape = self.sigmoid_inputs(cls_score, label, weight,
                                                                 ignore_index)
            loss = F.sigmoid_cross_entropy(logits, targets, self._class_weight(logits.shape[1]))
            # the elements not ignored (mmdet's valid mask, one per element of the loss)
            valid = (label >= 0) & (label != ignore_index)
            same_shape = tuple(label.shape) == shape
            valid = valid.reshape(loss.shape if same_shape else (-1, 1)).expand_as(loss)
        else:
            logits, label, weight, shape = self.softmax_inputs(cls_score, label, weight)
            loss = F.softmax_cross_entropy(logits, label, self._class_weight(logits.shape[1]),
                                           ignore_index)
            valid = label != ignore_index
        reduction = reduction_override or self.reduction
        if avg_factor is None and self.avg_non_ignore and reduction == 'mean':
            avg_factor = valid.sum().to(loss.dtype)
        return self.reduce_as(shape, loss, weight, avg_factor, reduction_override)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f', ignore_index={self.ignore_index}, '
                f'avg_non_ignore={self.avg_non_ignore}')
