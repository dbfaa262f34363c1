"""Ranking losses (``APLoss``, ``DRLoss``): one scalar for every anchor of the batch.

Call: ``loss(cls_score, labels, label_weights=None, avg_factor=None)`` with ``cls_score``
``Tensor[n, C]`` the logits of *every* anchor of the batch (all FPN levels and images),
``labels`` ``LongTensor[n]`` in ``0..C`` (``C`` = background) and ``label_weights``
``Tensor[n]`` (0 = ignored anchor). The maths is in
:mod:`detloss_plugin.functional.ranking`.

``reduction_override`` may be None, ``'mean'`` or ``'sum'`` (the same scalar); there is
no ``'none'`` (no per-element loss).

These are not per-level ``loss_cls`` drop-ins: mmdet's dense heads call ``loss_cls``
once per FPN level, which would rank each level separately. Use them through
``detloss_plugin.RankingRetinaHead``, which calls the loss once per batch. Building one
inside any other mmdet head raises a ``ValueError`` that names the head to use.
"""
import sys
from typing import Optional, Union

from torch import Tensor, nn

from detloss_plugin.functional import ranking as R
from detloss_plugin.functional._checks import check_positive
from detloss_plugin.registry import MODELS

__all__ = ['APLoss', 'DRLoss', 'RankingLoss']

_RANKING_HEAD = 'detloss_plugin.RankingRetinaHead'


def _owner_head():
    """The head whose ``__init__`` is building this loss, if any: mmdet's heads build
    ``loss_cls`` inside their constructor, so it is the nearest caller frame whose
    ``self`` looks like a detection head (duck typing: no mmdet import here)."""
    frame = sys._getframe(2)
    for _ in range(40):
        if frame is None:
            return None
        owner = frame.f_locals.get('self')
        if frame.f_code.co_name == '__init__' and isinstance(owner, nn.Module) and (
                hasattr(owner, 'loss_by_feat') or hasattr(owner, 'loss_and_target')):
            return owner
        frame = frame.f_back
    return None


class RankingLoss(nn.Module):
    """Base of the ranking losses: ``loss_weight`` and the head check."""

    #: heads check this to accept the loss (and mmdet's heads read ``use_sigmoid``)
    is_ranking_loss = True
    use_sigmoid = True

    def __init__(self, loss_weight: float = 1.0, use_sigmoid: bool = True) -> None:
        super().__init__()
        if use_sigmoid is not True:
            raise ValueError(f'{type(self).__name__} ranks sigmoid (one-vs-all) scores: '
                             f'use_sigmoid must be True, got {use_sigmoid!r}')
        owner = _owner_head()
        if owner is not None and not getattr(owner, 'accepts_ranking_loss', False):
            raise ValueError(
                f'{type(self).__name__} ranks every anchor of the batch at once, but '
                f'{type(owner).__name__} calls loss_cls once per FPN level (or per RoI '
                f'batch): use bbox_head=dict(type={_RANKING_HEAD!r}, ...) (a RetinaHead '
                f'that calls the ranking loss once for the batch)')
        check_positive('loss_weight', loss_weight, allow_zero=True)
        self.loss_weight = float(loss_weight)

    def _check_call(self, reduction_override: Optional[str], kwargs: dict) -> None:
        # mmdet's call contract: a reduction can be asked for; a ranking loss has no
        # per-element form, so only the batch's scalar ('mean' / 'sum') exists
        if reduction_override not in (None, 'mean', 'sum'):
            raise ValueError(f'{type(self).__name__} returns one scalar for the batch: '
                             f'reduction_override must be None, "mean" or "sum", got '
                             f'{reduction_override!r}')
        if kwargs:
            raise TypeError(f'{type(self).__name__}.forward got unexpected arguments '
                            f'{sorted(kwargs)}')

    def extra_repr(self) -> str:
        return f'loss_weight={self.loss_weight}'


@MODELS.register_module()
class APLoss(RankingLoss):
    """AP-loss (Chen et al., CVPR 2019, https://arxiv.org/abs/1904.06373) with the
    paper's error-driven update; see :func:`detloss_plugin.functional.ap_loss`.

    Args:
        delta: half-width of the piecewise-linear step (1.0, paper and reference).
        loss_weight: multiplies the value and the update.
        use_sigmoid: must be True (accepted because mmdet's heads read it from the
            config dict to choose C output channels).

    ``forward(cls_score, labels, label_weights=None, avg_factor=None)``: with
    ``avg_factor=None`` the reference's value and update (normalised by the number of
    positives of the batch); a given ``avg_factor`` replaces that normaliser.
    """

    def __init__(self, delta: float = 1.0, loss_weight: float = 1.0,
                 use_sigmoid: bool = True) -> None:
        super().__init__(loss_weight, use_sigmoid)
        check_positive('delta', delta)
        self.delta = float(delta)

    def forward(self, cls_score: Tensor, labels: Tensor, label_weights: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None,
                reduction_override: Optional[str] = None, **kwargs) -> Tensor:
        self._check_call(reduction_override, kwargs)
        return self.loss_weight * R.ap_loss(cls_score, labels, label_weights, self.delta,
                                            avg_factor)

    def extra_repr(self) -> str:
        return f'delta={self.delta}, ' + super().extra_repr()


@MODELS.register_module()
class DRLoss(RankingLoss):
    """DR loss (Qian et al., CVPR 2020, https://arxiv.org/abs/1907.10156), the sigmoid
    form of idstcv/DR_loss; see :func:`detloss_plugin.functional.dr_loss`.

    Args:
        pos_lambda: temperature of the positives' distribution (1.0).
        neg_lambda: temperature of the negatives' distribution (``0.1 / ln 3.5``).
        L: smoothness of the logistic hinge (6.0).
        tau: scale of the loss (4.0).
        margin: ranking margin (0.5).
        loss_weight: multiplies the loss.
        use_sigmoid: must be True (see ``APLoss``).

    ``forward(cls_score, labels, label_weights=None, avg_factor=None)``: with
    ``avg_factor=None`` the reference's scalar for the batch; a given ``avg_factor``
    divides it.
    """

    def __init__(self, pos_lambda: float = 1.0, neg_lambda: float = R.DR_NEG_LAMBDA,
                 L: float = 6.0, tau: float = 4.0, margin: float = 0.5,
                 loss_weight: float = 1.0, use_sigmoid: bool = True) -> None:
        super().__init__(loss_weight, use_sigmoid)
        for name, value in (('pos_lambda', pos_lambda), ('neg_lambda', neg_lambda),
                            ('L', L), ('tau', tau)):
            check_positive(name, value)
        if not isinstance(margin, (int, float)) or isinstance(margin, bool):
            raise TypeError(f'margin must be a number, got {type(margin).__name__}')
        self.pos_lambda = float(pos_lambda)
        self.neg_lambda = float(neg_lambda)
        self.L = float(L)
        self.tau = float(tau)
        self.margin = float(margin)

    def forward(self, cls_score: Tensor, labels: Tensor, label_weights: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None,
                reduction_override: Optional[str] = None, **kwargs) -> Tensor:
        self._check_call(reduction_override, kwargs)
        return self.loss_weight * R.dr_loss(cls_score, labels, label_weights, self.pos_lambda,
                                            self.neg_lambda, self.L, self.tau, self.margin,
                                            avg_factor)

    def extra_repr(self) -> str:
        return (f'pos_lambda={self.pos_lambda}, neg_lambda={self.neg_lambda:.6g}, L={self.L}, '
                f'tau={self.tau}, margin={self.margin}, ' + super().extra_repr())
