"""Ranking losses (``APLoss``, ``DRLoss``, ``RankSortLoss``, ``ALRPLoss``): one value for
every anchor of the batch.

Call: ``loss(cls_score, labels, label_weights=None, avg_factor=None)`` with ``cls_score``
``Tensor[n, C]`` the logits of *every* anchor of the batch (all FPN levels and images),
``labels`` ``LongTensor[n]`` in ``0..C`` (``C`` = background) and ``label_weights``
``Tensor[n]`` (0 = ignored anchor). The maths is in
:mod:`detloss_plugin.functional.ranking`.

``reduction_override`` may be None, ``'mean'`` or ``'sum'`` (the same scalar); there is
no ``'none'`` (no per-element loss).

These are not per-level ``loss_cls`` drop-ins: mmdet's dense heads call ``loss_cls``
once per FPN level, which would rank each level separately. The contract is explicit:
a head that calls the loss once for the whole batch (``RankingRetinaHead``,
``RankSortATSSHead``, ``ALRPRetinaHead``) declares it with :meth:`RankingLoss.attach`
when it builds the loss; a ranking loss that no head attached refuses to run, with a
``ValueError`` that names the heads to use. Code that calls the module itself on a
whole batch attaches it once: ``APLoss().attach('my code')``.
"""
from typing import Optional, Tuple, Union

from torch import Tensor, nn

from detloss_plugin.functional import rank_sort as RS
from detloss_plugin.functional import ranking as R
from detloss_plugin.functional._checks import check_finite, check_positive
from detloss_plugin.registry import MODELS

__all__ = ['APLoss', 'DRLoss', 'RankSortLoss', 'ALRPLoss', 'RankingLoss']

_RANKING_HEADS = ('detloss_plugin.RankingRetinaHead', 'detloss_plugin.ALRPRetinaHead',
                  'detloss_plugin.RankSortATSSHead')


class RankingLoss(nn.Module):
    """Base of the ranking losses: ``loss_weight`` and the head check."""

    #: heads check this to accept the loss (and mmdet's heads read ``use_sigmoid``)
    is_ranking_loss = True
    use_sigmoid = True
    #: the head made for this loss's call (named in errors, checked by the heads)
    head = 'detloss_plugin.RankingRetinaHead'

    def __init__(self, loss_weight: float = 1.0, use_sigmoid: bool = True) -> None:
        super().__init__()
        if use_sigmoid is not True:
            raise ValueError(f'{type(self).__name__} ranks sigmoid (one-vs-all) scores: '
                             f'use_sigmoid must be True, got {use_sigmoid!r}')
        #: who calls this loss once per batch (set by :meth:`attach`); None: nobody
        self.attached_to: Optional[str] = None
        check_positive('loss_weight', loss_weight, allow_zero=True)
        self.loss_weight = float(loss_weight)

    def attach(self, caller) -> 'RankingLoss':
        """Declare that ``caller`` (a head, or a name) calls this loss once with every
        anchor of the batch. Returns the loss."""
        self.attached_to = caller if isinstance(caller, str) else type(caller).__name__
        return self

    def _check_call(self, reduction_override: Optional[str], kwargs: dict) -> None:
        if self.attached_to is None:
            raise ValueError(
                f'{type(self).__name__} ranks every anchor of the batch at once, but no '
                f'head declared that it calls it so (mmdet\'s heads call loss_cls once per '
                f'FPN level or RoI batch): use bbox_head=dict(type=...) with one of '
                f'{", ".join(_RANKING_HEADS)}; code that calls it on a whole batch itself '
                f'calls loss.attach("name") first')
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
        check_finite('margin', margin)
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


@MODELS.register_module()
class RankSortLoss(RankingLoss):
    """Rank & Sort loss (Oksuz et al., ICCV 2021, https://arxiv.org/abs/2107.11669);
    see :func:`detloss_plugin.functional.rank_sort_loss`.

    Args:
        delta: half-width of the piecewise-linear step (0.5, paper and reference).
        loss_weight: multiplies both outputs and their updates.
        use_sigmoid: must be True (see ``APLoss``).

    ``forward(logits, targets)`` -> ``(ranking_loss, sorting_loss)``: ``logits`` and
    ``targets`` ``Tensor[n, C]``, targets the IoU at the positives, 0 at the
    negatives, -1 at ignored entries. :class:`~detloss_plugin.RankSortATSSHead` builds
    the targets and logs the two outputs as ``loss_rank`` and ``loss_sort``.
    """

    head = ('detloss_plugin.RankSortATSSHead, detloss_plugin.RankSortRPNHead or '
            'detloss_plugin.RankSortBBoxHead')

    # read by RankSortBBoxHead (mmdet's RoI box heads): num_classes sigmoid outputs
    def get_cls_channels(self, num_classes: int) -> int:
        return num_classes

    def get_activation(self, cls_score: Tensor) -> Tensor:
        return cls_score.sigmoid()

    def __init__(self, delta: float = 0.5, loss_weight: float = 1.0,
                 use_sigmoid: bool = True) -> None:
        super().__init__(loss_weight, use_sigmoid)
        check_positive('delta', delta)
        self.delta = float(delta)

    def forward(self, logits: Tensor, targets: Tensor,
                reduction_override: Optional[str] = None, **kwargs) -> Tuple[Tensor, Tensor]:
        self._check_call(reduction_override, kwargs)
        ranking, sorting = RS.rank_sort_loss(logits, targets, self.delta)
        return self.loss_weight * ranking, self.loss_weight * sorting

    def extra_repr(self) -> str:
        return f'delta={self.delta}, ' + super().extra_repr()


@MODELS.register_module()
class ALRPLoss(RankingLoss):
    """aLRP loss (Oksuz et al., NeurIPS 2020, https://arxiv.org/abs/2009.13592); see
    :func:`detloss_plugin.functional.alrp_loss`.

    Args:
        delta: half-width of the piecewise-linear step (1.0, paper and reference).
        loss_weight: multiplies both outputs (the head adds the self-balance weight of
            the localisation output).
        use_sigmoid: must be True (see ``APLoss``).

    ``forward(cls_score, labels, loc_losses, label_weights=None)`` ->
    ``(classification_loss, localisation_loss)``, inputs as ``APLoss`` plus each
    anchor's localisation loss ``Tensor[n]`` (read at the positives).
    """

    head = 'detloss_plugin.ALRPRetinaHead'

    def __init__(self, delta: float = 1.0, loss_weight: float = 1.0,
                 use_sigmoid: bool = True) -> None:
        super().__init__(loss_weight, use_sigmoid)
        check_positive('delta', delta)
        self.delta = float(delta)

    def forward(self, cls_score: Tensor, labels: Tensor, loc_losses: Tensor,
                label_weights: Optional[Tensor] = None,
                reduction_override: Optional[str] = None, **kwargs) -> Tuple[Tensor, Tensor]:
        self._check_call(reduction_override, kwargs)
        cls, loc = RS.alrp_loss(cls_score, labels, loc_losses, label_weights, self.delta)
        return self.loss_weight * cls, self.loss_weight * loc

    def extra_repr(self) -> str:
        return f'delta={self.delta}, ' + super().extra_repr()
