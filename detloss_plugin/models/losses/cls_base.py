"""Shared call contract of detloss's classification losses (mmdet's ``loss_cls``).

``forward(cls_score, label, weight=None, avg_factor=None, reduction_override=None)``:

- **sigmoid** (``use_sigmoid=True``; RetinaNet, FCOS, ATSS, RPN): ``cls_score``
  ``Tensor[N, C]``; ``label`` ``Tensor[N]`` integers with background ``= C`` (any label
  outside ``[0, C)`` is a background row of zero targets), or ``Tensor[N, C]`` float
  targets already one-hot. ``weight`` ``Tensor[N]`` (per sample) or ``Tensor[N, C]``.
  ``reduction='none'`` returns ``Tensor[N, C]``.
- **softmax** (``use_sigmoid=False``; RoI heads, whose ``cls_score`` has a background
  column, ``Tensor[N, C + 1]``): ``label`` ``Tensor[N]``; ``weight`` ``Tensor[N]``;
  ``'none'`` returns ``Tensor[N]``.

In both forms a label equal to ``ignore_index`` (default -100; in sigmoid form any
negative label too, as mmdet's ``CrossEntropyLoss``) gets weight 0. Reductions follow
mmdet: ``'mean'`` with ``avg_factor`` divides the weighted sum by ``avg_factor``
(RetinaNet passes the number of positives), without it takes the mean over all
elements. ``activated=True`` means ``cls_score`` holds probabilities (sigmoid or
softmax outputs) instead of logits; see
:func:`detloss_plugin.functional.classification.probs_to_logits`.

Dense heads choose their number of output channels from ``use_sigmoid`` **in the config
dict** (``C`` with it, ``C + 1`` without; mmdet reads it with a default of False), not
from the built loss: always write ``use_sigmoid`` in configs.

Half-precision scores are computed and reduced in float32 and the loss is returned in
float32 (a sum over ~10^5 anchors overflows float16).
"""
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from detloss_plugin.functional.classification import labels_to_one_hot, probs_to_logits
from .utils import BaseLoss

__all__ = ['ClassificationLoss']


class ClassificationLoss(BaseLoss):
    """Base of the classification losses: input handling for both forms. Subclasses
    implement :meth:`sigmoid_loss` and/or :meth:`softmax_loss`, or ``forward``."""

    #: whether the loss has a softmax form (GHM-C does not)
    supports_softmax = True
    #: whether the loss has a sigmoid form (seesaw does not)
    supports_sigmoid = True

    def __init__(self, use_sigmoid: bool = True, activated: bool = False,
                 ignore_index: Optional[int] = -100, reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        use_sigmoid = bool(use_sigmoid)
        if use_sigmoid and not self.supports_sigmoid:
            raise ValueError(f'{type(self).__name__} has no sigmoid form: use_sigmoid must be '
                             f'False, got True')
        if not use_sigmoid and not self.supports_softmax:
            raise ValueError(f'{type(self).__name__} has no softmax form: use_sigmoid must be '
                             f'True, got False')
        if ignore_index is None:  # mmdet's spelling of the default
            ignore_index = -100
        if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
            raise TypeError(f'ignore_index must be an int, got {type(ignore_index).__name__}')
        self.use_sigmoid = use_sigmoid
        self.activated = bool(activated)
        self.ignore_index = ignore_index

    # -- the loss -----------------------------------------------------------------
    def sigmoid_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Element-wise loss ``Tensor[N, C]`` of the sigmoid form."""
        raise NotImplementedError

    def softmax_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Per-sample loss ``Tensor[N]`` of the softmax form."""
        raise NotImplementedError

    def forward(self, cls_score: Tensor, label: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None,
                reduction_override: Optional[str] = None, **kwargs) -> Tensor:
        if self.use_sigmoid:
            logits, targets, weight = self.sigmoid_inputs(cls_score, label, weight)
            loss = self.sigmoid_loss(logits, targets)
        else:
            logits, label, weight = self.softmax_inputs(cls_score, label, weight)
            loss = self.softmax_loss(logits, label)
        return self.reduce(loss, weight, avg_factor, reduction_override)

    # -- inputs -------------------------------------------------------------------
    def _logits(self, cls_score: Tensor) -> Tensor:
        if not isinstance(cls_score, Tensor) or not cls_score.is_floating_point():
            raise TypeError(f'cls_score must be a floating-point tensor, got '
                            f'{getattr(cls_score, "dtype", type(cls_score).__name__)}')
        if cls_score.dim() != 2:
            raise ValueError(f'cls_score must have shape (N, num_columns), got '
                             f'{tuple(cls_score.shape)}')
        if cls_score.dtype in (torch.float16, torch.bfloat16):
            cls_score = cls_score.float()
        if self.activated:
            cls_score = probs_to_logits(cls_score, self.use_sigmoid)
        return cls_score

    def sigmoid_inputs(self, cls_score: Tensor, label: Tensor, weight: Optional[Tensor],
                       ignore_index: Optional[int] = None
                       ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """``(logits (N, C), targets (N, C), weight (N, 1) / (N, C) or None)``; ignored
        rows are folded into the weight."""
        if ignore_index is None:
            ignore_index = self.ignore_index
        logits = self._logits(cls_score)
        n, c = logits.shape
        if (isinstance(label, Tensor) and label.shape == logits.shape
                and label.is_floating_point()):
            targets = label.to(logits.dtype)
        else:
            self._check_label(label, n)
            targets = labels_to_one_hot(label, c, logits.dtype)
            keep = ((label >= 0) & (label != ignore_index)).to(logits.dtype).unsqueeze(1)
            weight = keep if weight is None else self._row_weight(weight, n, c) * keep
        if weight is not None:
            weight = self._row_weight(weight, n, c)
        return logits, targets, weight

    def softmax_inputs(self, cls_score: Tensor, label: Tensor, weight: Optional[Tensor]
                       ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """``(logits (N, K), labels (N,), weight (N,) or None)``."""
        logits = self._logits(cls_score)
        self._check_label(label, logits.shape[0])
        if weight is not None:
            if not isinstance(weight, Tensor):
                raise TypeError(f'weight must be a torch.Tensor or None, got '
                                f'{type(weight).__name__}')
            if weight.shape != label.shape:
                raise ValueError(f'weight must have shape {tuple(label.shape)} in softmax form, '
                                 f'got {tuple(weight.shape)}')
            weight = weight.to(logits.dtype)
        return logits, label, weight

    @staticmethod
    def _check_label(label, n: int) -> None:
        if not isinstance(label, Tensor) or label.is_floating_point() or label.shape != (n,):
            raise ValueError(
                f'label must be an integer tensor of shape ({n},) (or float targets of the '
                f'shape of cls_score in sigmoid form), got '
                f'{getattr(label, "dtype", type(label).__name__)} of shape '
                f'{tuple(getattr(label, "shape", ()))}')

    @staticmethod
    def _row_weight(weight: Tensor, n: int, c: int) -> Tensor:
        if not isinstance(weight, Tensor):
            raise TypeError(f'weight must be a torch.Tensor or None, got {type(weight).__name__}')
        if weight.shape in ((n,),):
            return weight.unsqueeze(1)
        if weight.shape in ((n, 1), (n, c)):
            return weight
        raise ValueError(f'weight must have shape ({n},), ({n}, 1) or ({n}, {c}), got '
                         f'{tuple(weight.shape)}')

    def extra_repr(self) -> str:
        return (f'use_sigmoid={self.use_sigmoid}, activated={self.activated}, '
                + super().extra_repr())
