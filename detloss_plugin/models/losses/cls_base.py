"""Shared call contract of detloss's classification losses (mmdet's ``loss_cls``).

``forward(cls_score, label, weight=None, avg_factor=None, reduction_override=None)``
accepts every call mmdet's heads make:

- **sigmoid** (``use_sigmoid=True``): ``cls_score`` of any shape ``(..., C)``:
  ``Tensor[N, C]`` (RetinaNet, FCOS, ATSS, RPN), ``Tensor[N]`` (the centerness / IoU
  branches of FCOS, ATSS, DDOD), ``Tensor[B, N, C]`` (YOLOv3), ``Tensor[N, 9, 28, 28]``
  (Grid R-CNN's heatmaps). ``label`` is either

  * of the shape of ``cls_score``: binary or soft targets, integer or float (SABL's 0/1
    bucket labels, centerness targets), used as they are, as mmdet does when the two
    have the same number of dimensions; or
  * of shape ``cls_score.shape[:-1]``: integer class labels, background ``= C`` (any
    label outside ``[0, C)`` is a row of zero targets), expanded to one-hot.

  ``reduction='none'`` returns the shape of ``cls_score``.
- **softmax** (``use_sigmoid=False``): ``cls_score`` ``Tensor[N, K]`` (RoI heads, with a
  background column) or ``Tensor[N, K, d1, ...]`` with ``label`` ``Tensor[N, d1, ...]``
  (HTC's semantic head), as ``torch.nn.functional.cross_entropy``.
  ``reduction='none'`` returns the shape of ``label``.

``weight``: any shape mmdet accepts, see
:func:`detloss_plugin.models.losses.utils.broadcast_weight` (the loss's shape, one value
per row, a shape that broadcasts, or the loss's shape flattened as FSAF passes it).

A label equal to ``ignore_index`` (default -100), or negative, gets weight 0 (in
softmax form: ``ignore_index`` only), as mmdet's ``CrossEntropyLoss``. Reductions follow
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
from .utils import BaseLoss, broadcast_weight

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
            logits, targets, weight, shape = self.sigmoid_inputs(cls_score, label, weight)
            loss = self.sigmoid_loss(logits, targets)
        else:
            logits, label, weight, shape = self.softmax_inputs(cls_score, label, weight)
            loss = self.softmax_loss(logits, label)
        return self.reduce_as(shape, loss, weight, avg_factor, reduction_override)

    def reduce_as(self, shape: Tuple[int, ...], loss: Tensor, weight: Optional[Tensor],
                  avg_factor: Optional[Union[float, Tensor]] = None,
                  reduction_override: Optional[str] = None) -> Tensor:
        """:meth:`reduce` the flat loss; ``reduction='none'`` gives it back in ``shape``
        (that of ``cls_score`` in sigmoid form, of ``label`` in softmax form)."""
        out = self.reduce(loss, weight, avg_factor, reduction_override)
        return out.reshape(shape) if (reduction_override or self.reduction) == 'none' else out

    # -- inputs -------------------------------------------------------------------
    def _logits(self, cls_score: Tensor, min_dim: int) -> Tensor:
        if not isinstance(cls_score, Tensor) or not cls_score.is_floating_point():
            raise TypeError(f'cls_score must be a floating-point tensor, got '
                            f'{getattr(cls_score, "dtype", type(cls_score).__name__)}')
        if cls_score.dim() < min_dim:
            form = '(N, C) or (N, C, d1, ...)' if min_dim == 2 else '(..., C) or (N,)'
            raise ValueError(f'cls_score must have shape {form}, got {tuple(cls_score.shape)}')
        if cls_score.dtype in (torch.float16, torch.bfloat16):
            cls_score = cls_score.float()
        return cls_score

    def sigmoid_inputs(self, cls_score: Tensor, label: Tensor, weight: Optional[Tensor],
                       ignore_index: Optional[int] = None
                       ) -> Tuple[Tensor, Tensor, Tensor, Tuple[int, ...]]:
        """``(logits (M, C), targets (M, C), weight (M, 1) or (M, C), shape)``: the
        score flattened to rows of its last dimension (a 1-D score is one column),
        ignored elements folded into the weight, and the shape of ``cls_score``."""
        if ignore_index is None:
            ignore_index = self.ignore_index
        cls_score = self._logits(cls_score, 1)
        shape = tuple(cls_score.shape)
        columns = shape[-1] if len(shape) > 1 else 1
        logits = cls_score.reshape(-1, columns)
        if self.activated:
            logits = probs_to_logits(logits, True)
        if not isinstance(label, Tensor):
            raise TypeError(f'label must be a torch.Tensor, got {type(label).__name__}')
        valid = (label >= 0) & (label != ignore_index)
        if tuple(label.shape) == shape:
            # binary or soft targets of the score's shape, used as they are
            targets = label.reshape(-1, columns).to(logits.dtype)
            valid = valid.reshape(-1, columns)
        elif len(shape) > 1 and tuple(label.shape) == shape[:-1] \
                and not label.is_floating_point():
            targets = labels_to_one_hot(label.reshape(-1), columns, logits.dtype)
            valid = valid.reshape(-1, 1)
        else:
            raise ValueError(
                f'label must be integer class labels of shape {shape[:-1]} or targets of '
                f'the shape of cls_score {shape}, got '
                f'{label.dtype} of shape {tuple(label.shape)}')
        keep = valid.to(logits.dtype)
        weight = self._flat_weight(weight, shape, columns)
        return logits, targets, keep if weight is None else weight * keep, shape

    def softmax_inputs(self, cls_score: Tensor, label: Tensor, weight: Optional[Tensor]
                       ) -> Tuple[Tensor, Tensor, Optional[Tensor], Tuple[int, ...]]:
        """``(logits (M, K), labels (M,), weight (M,) or None, label shape)``, the class
        dimension (dim 1) moved last and the rest flattened."""
        cls_score = self._logits(cls_score, 2)
        shape = (cls_score.shape[0],) + tuple(cls_score.shape[2:])
        if not isinstance(label, Tensor) or label.is_floating_point() \
                or tuple(label.shape) != shape:
            raise ValueError(
                f'label must be an integer tensor of shape {shape} for cls_score of shape '
                f'{tuple(cls_score.shape)} (or, in sigmoid form, targets of the shape of '
                f'cls_score), got {getattr(label, "dtype", type(label).__name__)} of shape '
                f'{tuple(getattr(label, "shape", ()))}')
        logits = cls_score.movedim(1, -1).reshape(-1, cls_score.shape[1])
        if self.activated:
            logits = probs_to_logits(logits, False)
        weight = self._flat_weight(weight, shape, 1)
        return logits, label.reshape(-1), None if weight is None else weight.reshape(-1), shape

    @staticmethod
    def _flat_weight(weight: Optional[Tensor], shape: Tuple[int, ...], columns: int
                     ) -> Optional[Tensor]:
        """The head's weight for a loss of ``shape``, as rows of ``columns``:
        ``(M, 1)`` when it is one value per row, ``(M, columns)`` otherwise."""
        weight = broadcast_weight(weight, shape)
        if weight is None:
            return None
        weight = weight.float() if weight.dtype != torch.float64 else weight
        if len(shape) > 1 and weight.dim() == len(shape) and weight.shape[-1] == 1 \
                and tuple(weight.shape[:-1]) == shape[:-1]:
            return weight.reshape(-1, 1)
        return weight.expand(shape).reshape(-1, columns)

    def extra_repr(self) -> str:
        return (f'use_sigmoid={self.use_sigmoid}, activated={self.activated}, '
                + super().extra_repr())
