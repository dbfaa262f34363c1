"""Seesaw loss (``SeesawLoss``) for RoI heads, with mmdet's objectness channels.

Wang et al., "Seesaw Loss for Long-Tailed Instance Segmentation", CVPR 2021,
https://arxiv.org/abs/2008.10032. The maths is in
:func:`detloss_plugin.functional.seesaw_ce_loss`.

Not a drop-in replacement of cross-entropy: the classifier has ``C + 2`` outputs (C
class logits, then an objectness pair ``[object, background]``). mmdet's ``BBoxHead``
asks the loss for them: it reads ``custom_cls_channels`` / ``custom_activation`` /
``custom_accuracy`` and calls ``get_cls_channels(num_classes)`` (channel count),
``get_activation(cls_score)`` (``C + 1`` scores for inference: class softmax times the
object probability, then the background probability) and
``get_accuracy(cls_score, labels)`` (logged accuracies).
"""
from typing import Dict, Optional, Tuple, Union

import torch
import torch.distributed as dist
from torch import Tensor

from detloss_plugin.functional import classification as F
from detloss_plugin.functional._checks import check_positive
from detloss_plugin.registry import MODELS
from .cls_base import ClassificationLoss

__all__ = ['SeesawLoss']


def _top1_accuracy(scores: Tensor, labels: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Top-1 accuracy in percent over the rows where ``mask`` holds (all rows if None);
    0 when there are none (mmdet's ``accuracy`` convention). No host synchronisation."""
    correct = (scores.argmax(dim=-1) == labels).to(scores.dtype)
    if mask is None:
        mask = torch.ones_like(correct)
    else:
        mask = mask.to(scores.dtype)
    return 100.0 * (correct * mask).sum() / mask.sum().clamp(min=1)


@MODELS.register_module()
class SeesawLoss(ClassificationLoss):
    """Seesaw loss: seesaw cross-entropy on the positive RoIs' class logits plus a
    softmax cross-entropy on the objectness pair of every RoI.

    Args:
        use_sigmoid: must be False (softmax only, as in the paper).
        p: mitigation exponent (0.8).
        q: compensation exponent (2.0).
        num_classes: number of foreground classes C (1203, LVIS v1, as mmdet; the head's
            ``num_classes`` must match).
        eps: lower bound of the true class's score in the compensation factor (1e-2).
        return_dict: return ``dict(loss_cls_objectness=..., loss_cls_classes=...)``
            (default, both keys contain ``'loss'`` so mmdet sums them) or their sum.
        sync: under ``torch.distributed`` with several ranks, add every rank's label
            counts to ``cum_samples`` (one ``all_reduce`` of ``C + 1`` numbers per call),
            so that the cumulative class counts are those of the whole training set
            seen so far, identical on every rank. mmdet counts per rank (and DDP's
            buffer broadcast then keeps rank 0's).
        reduction, loss_weight: as every detloss loss.

    State: ``cum_samples`` (``Tensor[C + 1]``, float32, background last) is a buffer,
    saved in checkpoints; it is updated in training mode only, before the loss is
    computed (so the current batch counts, as in mmdet).

    Differences from mmdet's ``SeesawLoss``: no ``.item()`` / Python loop over labels
    (``index_add``), no boolean indexing of the positives (masking instead: same value);
    with ``reduction='none'`` the class term is ``Tensor[N]`` with zeros on background
    rows (mmdet returns only the positive rows); without positives the class term is
    an exact zero with the graph kept.
    """
    supports_sigmoid = False
    custom_cls_channels = True
    custom_activation = True
    custom_accuracy = True

    def __init__(self, use_sigmoid: bool = False, p: float = 0.8, q: float = 2.0,
                 num_classes: int = 1203, eps: float = 1e-2, reduction: str = 'mean',
                 loss_weight: float = 1.0, return_dict: bool = True, sync: bool = True) -> None:
        super().__init__(use_sigmoid, False, -100, reduction, loss_weight)
        check_positive('p', p, allow_zero=True)
        check_positive('q', q, allow_zero=True)
        check_positive('eps', eps)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f'num_classes must be a positive integer, got {num_classes!r}')
        self.p = float(p)
        self.q = float(q)
        self.num_classes = num_classes
        self.eps = float(eps)
        self.return_dict = bool(return_dict)
        self.sync = bool(sync)
        self.register_buffer('cum_samples', torch.zeros(num_classes + 1, dtype=torch.float32))

    # -- the head's questions ---------------------------------------------------------
    def get_cls_channels(self, num_classes: int) -> int:
        if num_classes != self.num_classes:
            raise ValueError(f'num_classes of the head ({num_classes}) must equal SeesawLoss\'s '
                             f'num_classes ({self.num_classes})')
        return num_classes + 2

    def _split(self, cls_score: Tensor) -> Tuple[Tensor, Tensor]:
        if cls_score.shape[-1] != self.num_classes + 2:
            raise ValueError(f'cls_score must have num_classes + 2 = {self.num_classes + 2} '
                             f'columns, got shape {tuple(cls_score.shape)}')
        return cls_score[..., :-2], cls_score[..., -2:]

    def get_activation(self, cls_score: Tensor) -> Tensor:
        """``Tensor[..., C + 1]``: class softmax times the object probability, then the
        background probability."""
        classes, objectness = self._split(cls_score)
        score_classes = classes.softmax(-1)
        score_obj = objectness.softmax(-1)
        return torch.cat([score_classes * score_obj[..., :1], score_obj[..., 1:]], dim=-1)

    def get_accuracy(self, cls_score: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        """``acc_objectness`` over all RoIs and ``acc_classes`` over the positives, in %."""
        classes, objectness = self._split(cls_score)
        pos = (labels >= 0) & (labels < self.num_classes)
        obj_labels = (labels == self.num_classes).long()
        return dict(acc_objectness=_top1_accuracy(objectness, obj_labels),
                    acc_classes=_top1_accuracy(classes, labels, pos))

    # -- the loss ---------------------------------------------------------------------
    def _class_counts(self, labels: Tensor) -> Tensor:
        """``cum_samples`` including this batch; stored in training mode."""
        batch = torch.zeros_like(self.cum_samples)
        index = labels.clamp(0, self.num_classes)
        batch.index_add_(0, index, torch.ones_like(index, dtype=batch.dtype))
        if self.sync and dist.is_available() and dist.is_initialized() \
                and dist.get_world_size() > 1:
            dist.all_reduce(batch)
        if self.training:
            with torch.no_grad():
                self.cum_samples.add_(batch)
            return self.cum_samples
        return self.cum_samples + batch

    def forward(self, cls_score: Tensor, label: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None,
                reduction_override: Optional[str] = None, **kwargs
                ) -> Union[Tensor, Dict[str, Tensor]]:
        if cls_score.dim() != 2:
            raise ValueError(f'cls_score must have shape (N, num_classes + 2), got '
                             f'{tuple(cls_score.shape)}')
        logits, label, weight, _ = self.softmax_inputs(cls_score, label, weight)
        classes, objectness = self._split(logits)
        if weight is None:
            weight = torch.ones_like(label, dtype=logits.dtype)
        cum = self._class_counts(label)
        num = self.num_classes
        pos = ((label >= 0) & (label < num)).to(logits.dtype)
        cls_loss = F.seesaw_ce_loss(classes, label.clamp(0, num - 1), cum[:num], self.p,
                                    self.q, self.eps)
        cls_loss = torch.where(pos > 0, cls_loss, torch.zeros_like(cls_loss))
        reduction = reduction_override or self.reduction
        cls_avg = avg_factor
        if cls_avg is None and reduction == 'mean':
            cls_avg = pos.sum()  # mmdet: mean over the positive rows
        loss_classes = self.reduce(cls_loss, weight * pos, cls_avg, reduction_override)
        obj_labels = (label == num).long()
        obj_loss = F.softmax_cross_entropy(objectness, obj_labels)
        loss_objectness = self.reduce(obj_loss, weight, avg_factor, reduction_override)
        if self.return_dict:
            return dict(loss_cls_objectness=loss_objectness, loss_cls_classes=loss_classes)
        return loss_classes + loss_objectness

    def extra_repr(self) -> str:
        return (super().extra_repr() + f', num_classes={self.num_classes}, p={self.p}, '
                f'q={self.q}, eps={self.eps}')
