"""GHM-C (``GHMC``, a ``loss_cls``) and GHM-R (``GHMR``, a ``loss_bbox``).

The maths is in :mod:`detloss_plugin.functional.ghm`: Li et al., "Gradient Harmonized
Single-stage Detector", AAAI 2019, https://arxiv.org/abs/1811.05181; reference code
libuyu/GHM_Detection.

State. With ``momentum > 0`` the moving average of the region counts is the buffer
``acc_sum`` (``Tensor[bins]``, float32): it is in ``state_dict()``, so mmengine's
checkpoints save it and ``--resume`` / ``load_from`` restore it. It is updated in
training mode only (``module.train()``); in eval mode the loss uses the updated value
without storing it.

Scope of the statistic. The density is computed over everything passed in one call.
mmdet's dense heads call ``loss_cls`` / ``loss_bbox`` once per FPN level, so the
density is per level (for the whole batch of images at that level), exactly as in the
authors' code, which also calls its GHM losses per level; with momentum, one moving
average is shared by all levels, as there.

Multi-GPU. Data-parallel training splits the batch across ranks, while the paper's
density is a statistic of the whole batch. With ``sync=True`` (default) and
``torch.distributed`` initialised with several ranks, the region counts and the number
of valid examples are summed over ranks with one ``all_reduce`` per call (``bins + 1``
int64 numbers, no host synchronisation); every rank then computes the same weights and
keeps the same moving average, and each rank divides its sum by
``N_global / world_size``, so that DDP's gradient averaging yields the gradient of the
single-process loss over the whole batch. ``sync=False`` gives mmdet's behaviour: each
rank uses its own counts (and DDP's buffer broadcast overwrites the other ranks' moving
averages with rank 0's at every forward).
"""
from typing import Optional, Union

import torch
from torch import Tensor

from detloss_plugin.functional import ghm as G
from detloss_plugin.functional._checks import check_positive
from detloss_plugin.registry import MODELS
from .cls_base import ClassificationLoss
from .utils import BaseLoss, box_weight

__all__ = ['GHMC', 'GHMR']


def _check_ghm(bins: int, momentum: float) -> None:
    G.ghm_edges(bins, 1.0)  # validates bins
    G.check_momentum(momentum)


class _GHMState:
    """The moving-average buffer and the reduction shared by GHM-C and GHM-R."""

    def _init_state(self, bins: int, momentum: float, sync: bool) -> None:
        _check_ghm(bins, momentum)
        self.bins = bins
        self.momentum = float(momentum)
        self.sync = bool(sync)
        self.register_buffer('acc_sum', torch.zeros(bins, dtype=torch.float32))

    def _store(self, new_acc: Optional[Tensor]) -> None:
        if new_acc is not None and self.training:
            with torch.no_grad():
                self.acc_sum.copy_(new_acc)

    def _ghm_reduce(self, loss: Tensor, total: Tensor, reduction_override: Optional[str]
                    ) -> Tensor:
        """``'mean'``: the paper's ``sum(beta * L) / N``; ``'sum'``: ``sum(beta * L)``;
        ``'none'``: ``beta * L`` per element. The head's ``avg_factor`` is not used."""
        reduction = reduction_override or self.reduction
        if reduction == 'mean':
            return self.reduce(loss, None, total, 'mean')
        return self.reduce(loss, None, None, reduction_override)

    def _ghm_repr(self) -> str:
        return f', bins={self.bins}, momentum={self.momentum}, sync={self.sync}'


@MODELS.register_module()
class GHMC(_GHMState, ClassificationLoss):
    """Gradient-harmonised binary cross-entropy (sigmoid form only).

    Args:
        bins: number of unit regions of the gradient norm (10: mmdet's and the
            reference's default; the released RetinaNet config uses 30).
        momentum: moving average of the region counts, in [0, 1) (0: mmdet's and the
            reference's class default; the paper and mmdet's config use 0.75).
        sync: sum the counts over ranks under ``torch.distributed`` (see the module
            docstring).
        use_sigmoid: must be True.
        activated, ignore_index, reduction, loss_weight: see the call contract in
            :mod:`detloss_plugin.models.losses.cls_base`.

    An element is valid when its weight (the head's ``label_weights``) is > 0; the
    weight's value is otherwise not used, as in the paper and in mmdet. The head's
    ``avg_factor`` is ignored: GHM-C normalises by the number of valid elements.

    Differences from mmdet's ``GHMC``: vectorised (no ``.item()`` and no Python loop
    over bins); counts synchronised across ranks by default; ``acc_sum`` always exists
    (zeros) and is updated in training mode only; ``reduction='sum'`` returns the
    unnormalised sum (mmdet raises); ignored labels (``ignore_index``) are supported.
    Same values and gradients otherwise.
    """
    supports_softmax = False

    def __init__(self, bins: int = 10, momentum: float = 0.0, use_sigmoid: bool = True,
                 loss_weight: float = 1.0, reduction: str = 'mean', activated: bool = False,
                 sync: bool = True, ignore_index: int = -100) -> None:
        ClassificationLoss.__init__(self, use_sigmoid, activated, ignore_index, reduction,
                                    loss_weight)
        self._init_state(bins, momentum, sync)

    def forward(self, cls_score: Tensor, label: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None,
                reduction_override: Optional[str] = None, **kwargs) -> Tensor:
        logits, targets, weight, shape = self.sigmoid_inputs(cls_score, label, weight)
        valid = (weight > 0).expand_as(logits)
        loss, total, new_acc = G.ghmc_loss(
            logits, targets, valid, self.bins, self.momentum,
            self.acc_sum if self.momentum > 0 else None, self.sync)
        self._store(new_acc)
        out = self._ghm_reduce(loss, total, reduction_override)
        return out.reshape(shape) if (reduction_override or self.reduction) == 'none' else out

    def extra_repr(self) -> str:
        return super().extra_repr() + self._ghm_repr()


@MODELS.register_module()
class GHMR(_GHMState, BaseLoss):
    """Gradient-harmonised authentic smooth L1 for box regression (``loss_bbox`` on
    the coder's deltas, ``reg_decoded_bbox=False``).

    ``forward(pred, target, weight=None, avg_factor=None, reduction_override=None)``
    with ``pred``, ``target`` ``Tensor[N, 4]`` and ``weight`` ``Tensor[N, 4]`` or
    ``Tensor[N]``; an element is valid when its weight is > 0. The head's
    ``avg_factor`` is ignored (GHM-R normalises by the number of valid elements).

    Args:
        mu: ASL1 parameter (0.02, paper).
        bins: number of unit regions (10).
        momentum: in [0, 1) (0, mmdet's class default; mmdet's config uses 0.7).
        sync: see the module docstring.

    Differences from mmdet's ``GHMR``: vectorised; counts synchronised across ranks;
    :math:`N` is the number of valid elements (mmdet sums the weights, which is the same
    for 0/1 weights); ``'sum'`` returns the unnormalised sum (mmdet raises).
    """

    def __init__(self, mu: float = 0.02, bins: int = 10, momentum: float = 0.0,
                 loss_weight: float = 1.0, reduction: str = 'mean', sync: bool = True) -> None:
        BaseLoss.__init__(self, reduction, loss_weight)
        check_positive('mu', mu)
        self.mu = float(mu)
        self._init_state(bins, momentum, sync)

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None,
                reduction_override: Optional[str] = None, **kwargs) -> Tensor:
        if pred.dtype in (torch.float16, torch.bfloat16):
            pred, target = pred.float(), target.float()
        weight = box_weight(weight, pred, per_box=False) if pred.dim() == 2 else weight
        valid = (torch.ones_like(pred, dtype=torch.bool) if weight is None
                 else (weight > 0).expand_as(pred))
        loss, total, new_acc = G.ghmr_loss(
            pred, target, valid, self.mu, self.bins, self.momentum,
            self.acc_sum if self.momentum > 0 else None, self.sync)
        self._store(new_acc)
        return self._ghm_reduce(loss, total, reduction_override)

    def extra_repr(self) -> str:
        return super().extra_repr() + f', mu={self.mu}' + self._ghm_repr()
