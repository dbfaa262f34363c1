"""``ALRPRetinaHead``: RetinaNet trained with aLRP loss, and the hook that updates its
self-balance weight once per epoch.

aLRP loss (Oksuz et al., NeurIPS 2020, https://arxiv.org/abs/2009.13592) ranks every
(anchor, class) entry of the batch like AP-loss, and its localisation component weights
each positive's box loss by the ranking. The head gathers every level and image as
``RankingRetinaHead`` does, computes the box loss of every positive (decoded boxes; GIoU
in the reference), and returns ``loss_cls`` (the classification component) and
``loss_bbox`` (the localisation component times the self-balance weight).
"""
from typing import List, Optional

import torch
from mmengine.hooks import Hook
from torch import Tensor

from mmdet.utils import InstanceList, OptInstanceList

from detloss_plugin.functional._checks import check_positive
from detloss_plugin.registry import HOOKS, MODELS
from .ranking_retina_head import RankingRetinaHead

__all__ = ['ALRPRetinaHead', 'ALRPSelfBalanceHook', 'positive_box_losses']


def positive_box_losses(head, b, pos: Tensor):
    """``(losses, pred, target)``: ``head.loss_bbox`` of every positive (``[P]``,
    reduction ``'none'``) on decoded boxes ``[P, 4]``, from the gathered batch ``b``
    (``anchors``, ``bbox_pred``, ``bbox_targets`` ``[M, 4]``, boxes when
    ``head.reg_decoded_bbox``, else deltas)."""
    pred, target = b.bbox_pred[pos], b.bbox_targets[pos]
    if not head.reg_decoded_bbox:
        anchors = b.anchors[pos]
        pred = head.bbox_coder.decode(anchors, pred)
        target = head.bbox_coder.decode(anchors, target)
    per_box = head.loss_bbox(pred, target, reduction_override='none')
    if per_box.dim() != 1:
        raise ValueError(f'{type(head).__name__} needs a loss_bbox that returns one loss '
                         f'per box with reduction "none" (an IoU loss: GIoULoss in the '
                         f'reference), got shape {tuple(per_box.shape)} from '
                         f'{type(head.loss_bbox).__name__}')
    return per_box, pred, target


@MODELS.register_module()
class ALRPRetinaHead(RankingRetinaHead):
    """A ``RetinaHead`` trained with aLRP loss.

    Args:
        loss_cls: ``dict(type='detloss_plugin.ALRPLoss')`` (default; ``delta`` 1.0).
        loss_bbox: a box loss giving one value per box with ``reduction_override=
            'none'`` on decoded boxes (the reference: ``GIoULoss``); its ``loss_weight``
            is left as configured (1.0 in the reference), the balance comes from the
            self-balance weight.
        sb_init: the initial self-balance weight (50, the reference's).
        everything else: as ``RetinaHead``.

    Losses: ``loss_cls`` = :math:`L_{cls}` and ``loss_bbox`` =
    :math:`w_{SB} L_{loc}` (see :func:`detloss_plugin.functional.alrp_loss`). The
    self-balance weight :math:`w_{SB}` is updated by :class:`ALRPSelfBalanceHook` once
    per epoch (``len(train_dataloader)`` iterations) to
    :math:`(\\bar L_{cls} + \\bar L_{loc}) / \\bar L_{loc}`, the means over the epoch's
    iterations (the reference: the same every 7330 or 3665 iterations, hard-coded). It
    is a buffer of the head, saved in checkpoints. Without the hook it stays at
    ``sb_init``.
    """

    ranking_losses = 'detloss_plugin.ALRPLoss'

    def __init__(self, *args, loss_cls: Optional[dict] = None, sb_init: float = 50.0,
                 **kwargs) -> None:
        loss_cls = dict(type='detloss_plugin.ALRPLoss') if loss_cls is None else loss_cls
        super().__init__(*args, loss_cls=loss_cls, **kwargs)
        check_positive('sb_init', sb_init)
        self.register_buffer('sb_weight', torch.tensor(float(sb_init)))
        # the epoch's sums of the two components (detached, on the device: no sync)
        self.register_buffer('sb_sums', torch.zeros(2), persistent=False)

    def loss_by_feat(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        b = self.gather_batch(cls_scores, bbox_preds, batch_gt_instances, batch_img_metas,
                              batch_gt_instances_ignore)
        pos = ((b.labels < self.num_classes) & (b.label_weights > 0)).nonzero().squeeze(1)
        per_box = positive_box_losses(self, b, pos)[0]
        loc = per_box.new_zeros(b.labels.shape[0]).index_put((pos,), per_box)
        loss_cls, loss_loc = self.loss_cls(b.cls_score, b.labels, loc, b.label_weights)
        if self.training:
            self.sb_sums += torch.stack([loss_cls.detach(), loss_loc.detach()]).float()
        return dict(loss_cls=loss_cls, loss_bbox=loss_loc * self.sb_weight)

    @torch.no_grad()
    def update_self_balance(self) -> None:
        """:math:`w_{SB} = (\\sum L_{cls} + \\sum L_{loc}) / \\sum L_{loc}` over the
        iterations since the last update (kept when there was no localisation loss)."""
        cls_sum, loc_sum = self.sb_sums[0], self.sb_sums[1]
        new = (cls_sum + loc_sum) / loc_sum.clamp_min(torch.finfo(torch.float32).tiny)
        self.sb_weight.copy_(torch.where(loc_sum > 0, new, self.sb_weight.float()))
        self.sb_sums.zero_()


@HOOKS.register_module()
class ALRPSelfBalanceHook(Hook):
    """Updates the self-balance weight of every ``ALRPRetinaHead`` of the model once per
    epoch: every ``period`` training iterations, ``len(runner.train_dataloader)`` by
    default (so an iteration-based schedule updates at the same rhythm as an
    epoch-based one).

    ``custom_hooks = [dict(type='detloss_plugin.ALRPSelfBalanceHook')]``.
    """

    priority = 'NORMAL'

    def __init__(self, period: Optional[int] = None) -> None:
        if period is not None and (not isinstance(period, int) or isinstance(period, bool)
                                   or period < 1):
            raise ValueError(f'period must be None or an int >= 1, got {period!r}')
        self.period = period

    def before_train(self, runner) -> None:
        if self.period is None:
            self.period = max(1, len(runner.train_dataloader))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if (runner.iter + 1) % self.period:
            return
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        for module in model.modules():
            if isinstance(module, ALRPRetinaHead):
                module.update_self_balance()
